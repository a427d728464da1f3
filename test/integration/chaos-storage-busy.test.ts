/**
 * Storage chaos, a busy database: another process holds SQLite's write lock on state_5.sqlite
 * (`BEGIN IMMEDIATE` on the WAL database the broker made) while the built CLI writes. A write
 * either waits out the lock within its busy timeout and succeeds, or answers with a clear
 * SQLITE_BUSY error and leaves nothing half-written; reads go on meanwhile; after the release the
 * same write works. (remote-control-faults.test.ts covers a lock taken before the enrollment table
 * exists; here the lock lands on the writes themselves.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chaosRounds, ChaosTally, eventually } from '../helpers/chaos.js';
import { createKey } from '../helpers/device-keys.js';
import { useLocalBackend } from '../helpers/local-backend.js';
import { loginWithTokens, statusReached, tempHome, type StatusParams } from '../helpers/remote-control.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  assertBindingsIntact,
  hasStateTable,
  holdWriteLock,
  InFlight,
  readPersistedState,
  signParams,
  SOFTHSM_KEY,
  startStorageBroker,
  tallied,
} from '../helpers/storage-chaos.js';

const backend = useLocalBackend();

/** How long the key store waits out a lock (BUSY_WAIT_MS in src/device-key/key-store.ts). */
const KEY_STORE_BUSY_MS = 5_000;

test('device keys under a held write lock: a short hold is waited out, a long one fails clearly', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const home = tempHome(t);
  const tally = new ChaosTally('storage busy: device keys');
  const broker = await startStorageBroker(t, backend, home);
  const key = await createKey(broker, SOFTHSM_KEY);

  const inFlight = new InFlight(broker, tally);
  const bound = [key.keyId];
  const createWaits: number[] = [];
  const signWaits: number[] = [];
  for (let round = 0; round < chaosRounds(); round++) {
    // Held for 1 s: create waits, then stores its binding; signing and local requests go on meanwhile.
    const short = holdWriteLock(t, home);
    tally.faults++;
    const started = Date.now();
    const waiting = inFlight.send('device/key/create', SOFTHSM_KEY);
    setTimeout(() => short.release(), 1_000);
    assert.ok((await tallied(tally, broker, 'account/read', {})).result, 'local requests go on');
    const waited = (await waiting)!;
    const createMs = Date.now() - started;
    assert.ok(waited.result, `create after a 1 s hold: ${JSON.stringify(waited.error)}`);
    assert.ok(createMs >= 1_000 && createMs < 1_000 + KEY_STORE_BUSY_MS, `create waited ${createMs} ms`);

    // Held past the busy timeout: create fails with the reason; the new key is not left bound.
    const long = holdWriteLock(t, home);
    tally.faults++;
    const refusing = inFlight.send('device/key/create', SOFTHSM_KEY);
    // Signing needs no write: it is answered, though it may queue behind the blocked create (measured).
    const signStarted = Date.now();
    const signed = await tallied(tally, broker, 'device/key/sign', signParams(key.keyId));
    const signMs = Date.now() - signStarted;
    assert.ok(signed.result, `signing goes on: ${JSON.stringify(signed.error)}`);
    // Generous: before the key store waited in timer slices, the sign queued behind the whole wait.
    assert.ok(signMs < KEY_STORE_BUSY_MS / 2, `a sign took ${signMs} ms behind a create waiting on the lock`);
    const refused = (await refusing)!;
    long.release();
    assert.equal(refused.error?.code, -32603, JSON.stringify(refused));
    assert.equal(
      refused.error.message,
      'device key platform error: cannot store the device key binding: database is locked (SQLITE_BUSY)',
    );
    const after = await tallied(tally, broker, 'device/key/create', SOFTHSM_KEY);
    assert.ok(after.result, JSON.stringify(after.error));
    for (const made of [waited, after]) bound.push((made.result as { keyId: string }).keyId);
    const state = readPersistedState(home);
    assertBindingsIntact(state, bound);
    assert.equal(state.bindings.length, bound.length, 'no binding for a refused key');
    createWaits.push(createMs);
    signWaits.push(signMs);
  }
  tally.report(
    t,
    `create waited ${createWaits.join('/')} ms for a 1000 ms hold; a sign sent during a ${KEY_STORE_BUSY_MS} ms+ hold took ${signWaits.join('/')} ms`,
  );
  tally.assertNoneLost();
});

/** Runs `step` while another connection holds the write lock, released whatever happens. */
async function underLock<T>(
  t: { after(fn: () => void): void },
  home: string,
  tally: ChaosTally,
  step: () => Promise<T>,
): Promise<T> {
  const lock = holdWriteLock(t, home);
  tally.faults++;
  try {
    return await step();
  } finally {
    lock.release();
  }
}

test('remote control under a held write lock: enrollment, enable and disable fail clearly, then work', async (t) => {
  const home = tempHome(t);
  const tally = new ChaosTally('storage busy: remote control');
  const broker = await startStorageBroker(t, backend, home);
  await loginWithTokens(broker);

  // The lock lands while the backend is still answering the enroll: storing the new row fails.
  backend.faults.add({ route: 'remote.enroll', action: { kind: 'slow', delayMs: 600 } });
  tally.faults++;
  const enabling = tallied(tally, broker, 'remoteControl/enable');
  assert.ok(
    await eventually(() => hasStateTable(home, 'remote_control_enrollments'), 5_000),
    'the enrollment table is made before enrolling',
  );
  const lock = holdWriteLock(t, home);
  tally.faults++;
  const enable = await enabling;
  lock.release();
  assert.equal(enable.error?.code, -32603, JSON.stringify(enable));
  assert.match(
    enable.error.message,
    /^cannot write the remote control enrollment in \S+state_5\.sqlite: database is locked \(SQLITE_BUSY\)$/,
  );
  assert.deepEqual(readPersistedState(home).enrollments, [], 'nothing half-written');
  const status = await tallied(tally, broker, 'remoteControl/status/read');
  assert.equal((status.result as StatusParams).status, 'disabled');
  assert.ok((await tallied(tally, broker, 'account/read', {})).result);

  for (let round = 0; round < chaosRounds(); round++) {
    const again = await tallied(tally, broker, 'remoteControl/enable');
    assert.ok(again.result, JSON.stringify(again.error));
    const connected = await statusReached(broker, 'connected');
    assert.deepEqual(
      readPersistedState(home).enrollments.map((r) => [r.environment_id, r.remote_control_enabled]),
      [[connected.environmentId, 1]],
    );

    // Disable while locked: answered with the reason; the stored preference stays as it was.
    const disable = await underLock(t, home, tally, () => tallied(tally, broker, 'remoteControl/disable'));
    assert.equal(disable.error?.code, -32603, JSON.stringify(disable));
    assert.match(disable.error.message, /database is locked \(SQLITE_BUSY\)$/);
    assert.equal(readPersistedState(home).enrollments[0]!.remote_control_enabled, 1);
    const disabled = await tallied(tally, broker, 'remoteControl/disable');
    assert.ok(disabled.result, JSON.stringify(disabled.error));
    assert.equal(readPersistedState(home).enrollments[0]!.remote_control_enabled, 0);

    // Enable while locked: the preference cannot be stored, so the enable is undone and says why.
    const refused = await underLock(t, home, tally, () => tallied(tally, broker, 'remoteControl/enable'));
    assert.equal(refused.error?.code, -32603, JSON.stringify(refused));
    assert.match(refused.error.message, /database is locked \(SQLITE_BUSY\)$/);
    assert.equal(readPersistedState(home).enrollments[0]!.remote_control_enabled, 0);
    const settled = await eventually(async () => {
      const read = await tallied(tally, broker, 'remoteControl/status/read');
      return (read.result as StatusParams).status === 'disabled';
    }, 5_000);
    assert.ok(settled, 'the refused enable left remote control disabled');
  }
  tally.report(t);
  tally.assertNoneLost();
});
