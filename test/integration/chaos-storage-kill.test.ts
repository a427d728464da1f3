/**
 * Storage chaos, SIGKILL: the built CLI is killed at seeded random points while it enrolls for
 * remote control and creates device keys, then restarted on the same CODEX_HOME. After every
 * kill the state database opens with `PRAGMA integrity_check` = ok (its write-ahead log replayed),
 * every device key whose create was answered is still bound, the enrollment the broker last
 * confirmed is still there with its preference, and the restarted broker reconnects with it (or
 * enrolls again) and serves requests. Requests in flight at the kill end with the connection.
 *
 * Short form (npm test): 4 kills, each kind once, in seeded order (CHAOS_SEED, default 24389).
 * Long form, every storage scenario repeated (here 25 times, so 100 kills):
 *   CHAOS_ROUNDS=25 CHAOS_SEED=$RANDOM node --import tsx --test test/integration/chaos-storage-*.test.ts
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import type { TestClient } from '../helpers/app-server-process.js';
import { chaosRounds, ChaosTally, eventually } from '../helpers/chaos.js';
import { createKey, signWith } from '../helpers/device-keys.js';
import { useLocalBackend } from '../helpers/local-backend.js';
import { loginWithTokens, statusReached, tempHome } from '../helpers/remote-control.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  assertBindingsIntact,
  InFlight,
  readAfterCrash,
  readPersistedState,
  signParams,
  SOFTHSM_KEY,
  startStorageBroker,
  stateDb,
  walBytes,
  type EnrollmentRow,
} from '../helpers/storage-chaos.js';
import { widerThanPrivate } from '../helpers/file-modes.js';
import { reportModes } from '../helpers/tmpfs.js';

const backend = useLocalBackend();

const KILLS = ['connected', 'creating keys', 'enroll in flight', 'enrollment row just written'] as const;
type Kill = (typeof KILLS)[number];

/** mulberry32: small, seeded, good enough to pick kill points reproducibly. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function seedFromEnv(): number {
  const text = process.env.CHAOS_SEED ?? '24389';
  const seed = Number(text);
  if (!Number.isInteger(seed)) throw new Error(`CHAOS_SEED must be an integer, not ${JSON.stringify(text)}`);
  return seed;
}

/** What the test knows must have survived: keys whose create was answered, the confirmed enrollment. */
interface Expected {
  keys: Set<string>;
  /** undefined: none confirmed yet, or a re-enrollment was cut short (the row may be gone). */
  enrollment?: { environmentId: string; enabled: 1 | null };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function rowOf(home: string): EnrollmentRow | undefined {
  return existsSync(stateDb(home)) ? readPersistedState(home).enrollments[0] : undefined;
}

/** The backend forgets the stored server, so the broker must enroll (and store) a new one. */
function forgetCurrentServer(environmentId: string | undefined): boolean {
  const server = backend.remoteControl.servers().find((s) => s.environmentId === environmentId);
  return server ? backend.remoteControl.forget(server.serverId) : false;
}

test('SIGKILL at seeded points while enrolling and creating keys: state intact after each restart', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const seed = seedFromEnv();
  const random = seeded(seed);
  const between = (low: number, high: number) => Math.floor(low + random() * (high - low));
  const plan: Kill[] = [];
  for (let round = 0; round < chaosRounds(); round++) {
    plan.push(...[...KILLS].sort(() => random() - 0.5));
  }
  const home = tempHome(t);
  const tally = new ChaosTally('storage SIGKILL');
  const expected: Expected = { keys: new Set() };
  /** Every environment the backend ever issued to this home: a stored row must name one of them. */
  const issued = new Set<string>();
  const walAtKill: number[] = [];
  let closedByKill = 0;
  let orphanBindings = 0;
  let reconnectedWithStored = 0;
  const wideAfterKill = new Set<string>();

  const verifyAndStart = async (generation: number): Promise<TestClient> => {
    if (generation > 0) {
      const state = readAfterCrash(home);
      assertBindingsIntact(state, expected.keys);
      orphanBindings = state.bindings.length - expected.keys.size;
      assert.ok(state.enrollments.length <= 1);
      const row = state.enrollments[0];
      if (row)
        assert.ok(
          issued.has(row.environment_id),
          `a stored environment the backend issued: ${row.environment_id}`,
        );
      if (expected.enrollment) {
        assert.equal(
          row?.environment_id,
          expected.enrollment.environmentId,
          'the confirmed enrollment survived',
        );
        if (expected.enrollment.enabled === 1)
          assert.equal(row.remote_control_enabled, 1, 'and its preference');
      }
    }
    const broker = await startStorageBroker(t, backend, home);
    await loginWithTokens(broker);
    if (expected.enrollment?.enabled === 1) {
      // Enabled before the kill: the restarted broker reconnects on its own, with the stored server.
      const connected = await statusReached(broker, 'connected');
      assert.equal(connected.environmentId, expected.enrollment.environmentId);
      reconnectedWithStored++;
    }
    for (const keyId of expected.keys) {
      const reply = await broker.request('device/key/public', { keyId });
      assert.ok(reply.result, `key ${keyId} after the restart: ${JSON.stringify(reply.error)}`);
    }
    return broker;
  };

  const enableAndConfirm = async (broker: TestClient): Promise<string> => {
    const reply = await broker.request('remoteControl/enable');
    tally.sent++;
    assert.ok(reply.result, JSON.stringify(reply.error));
    tally.succeeded++;
    const status = (reply.result as { status: string; environmentId: string | null }).status;
    const environmentId =
      status === 'connected'
        ? (reply.result as { environmentId: string }).environmentId
        : (await statusReached(broker, 'connected')).environmentId!;
    issued.add(environmentId);
    expected.enrollment = { environmentId, enabled: 1 };
    return environmentId;
  };

  for (const [generation, kill] of plan.entries()) {
    const broker = await verifyAndStart(generation);
    const inFlight = new InFlight(broker, tally);
    const created = (answer: Promise<{ result?: unknown } | undefined>) =>
      void answer.then((m) => m?.result && expected.keys.add((m.result as { keyId: string }).keyId));

    switch (kill) {
      case 'connected': {
        await enableAndConfirm(broker);
        expected.keys.add((await createKey(broker, SOFTHSM_KEY)).keyId);
        tally.sent++;
        tally.succeeded++;
        break;
      }
      case 'creating keys': {
        for (let i = between(1, 4); i > 0; i--) created(inFlight.send('device/key/create', SOFTHSM_KEY));
        for (const keyId of [...expected.keys].slice(-1))
          void inFlight.send('device/key/sign', signParams(keyId));
        await sleep(between(0, 150));
        break;
      }
      case 'enroll in flight': {
        const delayMs = between(100, 500);
        backend.faults.add({ route: 'remote.enroll', action: { kind: 'slow', delayMs } });
        tally.faults++;
        if (forgetCurrentServer(rowOf(home)?.environment_id)) tally.faults++;
        expected.enrollment = undefined;
        void inFlight.send('remoteControl/enable');
        await sleep(between(0, delayMs + 100));
        break;
      }
      case 'enrollment row just written': {
        // From an enabled, connected enrollment: the backend forgets the server, the socket's 404
        // makes the broker delete the row and enroll again; the new row must keep the preference.
        if (expected.enrollment?.enabled !== 1) await enableAndConfirm(broker);
        const stored = rowOf(home);
        const before = stored?.server_id;
        if (forgetCurrentServer(stored?.environment_id)) tally.faults++;
        expected.enrollment = undefined;
        let written: EnrollmentRow | undefined;
        const seen = await eventually(() => {
          written = rowOf(home);
          return written !== undefined && written.server_id !== before;
        }, 10_000);
        assert.ok(seen, 'the new enrollment row appeared');
        issued.add(written!.environment_id);
        // Committed before the kill, so it must survive it, preference included (carried over).
        expected.enrollment = { environmentId: written!.environment_id, enabled: 1 };
        break;
      }
    }
    const inFlightAtKill = inFlight.count;
    broker.signal('SIGKILL');
    tally.faults++;
    assert.equal((await broker.waitExit(10_000)).signal, 'SIGKILL');
    backend.faults.clear();
    closedByKill += inFlight.closedByExit;
    assert.equal(
      inFlight.closedByExit,
      inFlightAtKill,
      'every request not answered ended with the connection',
    );
    walAtKill.push(walBytes(home));
    // The -wal and -shm files exist only now (a clean stop removes them): their modes too.
    for (const entry of widerThanPrivate(home)) wideAfterKill.add(entry);
    // Servers enrolled up to the kill, whether or not the test saw them confirmed.
    for (const s of backend.remoteControl.servers()) issued.add(s.environmentId);
    t.diagnostic(
      `kill ${generation + 1} (${kill}): ${inFlightAtKill} in flight, wal ${walAtKill.at(-1)} bytes`,
    );
  }

  // The last restart: verified like the others, then used, then stopped cleanly.
  const last = await verifyAndStart(plan.length);
  if (!expected.enrollment || expected.enrollment.enabled !== 1) await enableAndConfirm(last);
  const key = await createKey(last, SOFTHSM_KEY);
  expected.keys.add(key.keyId);
  await signWith(last, key.keyId, signParams(key.keyId).payload);
  last.closeStdin();
  assert.equal((await last.waitExit(10_000)).code, 0);
  assert.equal(walBytes(home), 0, 'a clean stop checkpoints the log into the database file');
  assertBindingsIntact(readPersistedState(home), expected.keys);

  assert.ok(
    walAtKill.some((bytes) => bytes > 0),
    'at least one kill left committed frames in the WAL to replay',
  );
  tally.report(
    t,
    `seed ${seed}, ${plan.length} kills, ${closedByKill} requests closed by SIGKILL in flight, ` +
      `WAL at kill ${walAtKill.join('/')} bytes, ${reconnectedWithStored} reconnects with the stored enrollment, ` +
      `${expected.keys.size} keys bound, ${orphanBindings} bindings of keys whose create was cut off`,
  );
  assert.equal(tally.lost, 0);
  assert.equal(
    tally.succeeded + tally.failedCount + closedByKill,
    tally.sent,
    'every request answered or closed',
  );
  reportModes(t, home);
  t.diagnostic(
    `right after the kills (with -wal, -shm): ${[...wideAfterKill].join(', ') || 'none'} not private`,
  );
});
