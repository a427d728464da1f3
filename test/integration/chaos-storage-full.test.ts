/**
 * Storage chaos, a full disk: CODEX_HOME on a small tmpfs, filled to the last byte while the built
 * CLI runs. Saving an API key, creating a device key and enrolling for remote control each answer
 * with a clear error that names the cause and holds no secret; auth.json keeps its old content
 * (never truncated, no temporary file left); reads go on; the broker keeps serving. Once space
 * is back the same operations succeed and what was stored before is intact.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { chaosRounds, ChaosTally } from '../helpers/chaos.js';
import { createKey, signWith } from '../helpers/device-keys.js';
import { useLocalBackend } from '../helpers/local-backend.js';
import { loginWithTokens, statusReached, type StatusParams } from '../helpers/remote-control.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  assertBindingsIntact,
  leftoverTemporaries,
  readPersistedState,
  signParams,
  SOFTHSM_KEY,
  startStorageBroker,
  tallied,
} from '../helpers/storage-chaos.js';
import { Tmpfs, reportModes } from '../helpers/tmpfs.js';

const backend = useLocalBackend();

const FIRST_KEY = 'sk-chaos-first-0123456789abcdef';
const SECOND_KEY = 'sk-chaos-second-fedcba9876543210';

function authFileText(home: string): string {
  return readFileSync(join(home, 'auth.json'), 'utf8');
}

test('a full CODEX_HOME: clear errors, nothing truncated, reads go on, all works once space is back', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const fs = Tmpfs.mount(t, 4096);
  const home = fs.path;
  const tally = new ChaosTally('storage full disk');

  // Before: an API key in auth.json, a device key, and an enrollment (enabled) in the database.
  const first = await startStorageBroker(t, backend, home);
  const saved = await tallied(tally, first, 'account/login/start', { type: 'apiKey', apiKey: FIRST_KEY });
  assert.ok(saved.result, JSON.stringify(saved.error));
  const key = await createKey(first, SOFTHSM_KEY);
  await loginWithTokens(first);
  assert.ok((await tallied(tally, first, 'remoteControl/enable')).result);
  const enrolled = await statusReached(first, 'connected');
  first.closeStdin();
  await first.waitExit(10_000);
  const authBefore = authFileText(home);

  // A second run on the same home: the API key is restored from auth.json; signing opens the database.
  const broker = await startStorageBroker(t, backend, home);
  await signWith(broker, key.keyId, signParams(key.keyId).payload);
  const filled = fs.fill();
  assert.equal(fs.freeBytes, 0, 'the file system is full');

  // 1. auth.json: ENOSPC while the temporary file is written; the old file stays whole.
  const apiKey = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: SECOND_KEY });
  assert.deepEqual(apiKey.error, { code: -32603, message: 'failed to save api key: ENOSPC' });
  assert.equal(authFileText(home), authBefore, 'auth.json unchanged');
  assert.deepEqual(leftoverTemporaries(home), []);
  const account = await tallied(tally, broker, 'account/read', {});
  assert.deepEqual(
    (account.result as { account: unknown }).account,
    { type: 'apiKey' },
    'still the first key',
  );

  // 2. A device key: the token or the binding cannot be stored; no half-made key is left bound.
  const created = await tallied(tally, broker, 'device/key/create', SOFTHSM_KEY);
  assert.equal(created.error?.code, -32603, JSON.stringify(created));
  assert.match(
    created.error.message,
    /^device key platform error: .*; no space left on the file system of \S+ \(ENOSPC\)$/,
  );
  assertBindingsIntact(readPersistedState(home), [key.keyId]);
  assert.equal(readPersistedState(home).bindings.length, 1, 'no binding for the key that failed');
  const signed = await tallied(tally, broker, 'device/key/sign', signParams(key.keyId));
  assert.ok(signed.result, `signing needs no space: ${JSON.stringify(signed.error)}`);

  // 3. Remote control: the backend no longer knows the server, so it must enroll again and store it.
  const server = backend.remoteControl.servers().find((s) => s.environmentId === enrolled.environmentId);
  backend.remoteControl.forget(server!.serverId);
  await loginWithTokens(broker);
  // The login lets the saved preference reconnect on its own: the new enrollment cannot be stored.
  const full = /state_5\.sqlite: database or disk is full \(SQLITE_FULL\)/;
  await broker.waitForStderr(/remote control: attempt failed/, 10_000);
  assert.match(broker.stderrText, full);
  // An enable then either tries again (and fails the same way) or finds the attempt's backoff.
  const enable = await tallied(tally, broker, 'remoteControl/enable');
  if (enable.error) {
    assert.equal(enable.error.code, -32603, JSON.stringify(enable));
    assert.match(enable.error.message, full);
  } else {
    assert.equal((enable.result as StatusParams).status, 'errored', JSON.stringify(enable));
  }
  const status = await tallied(tally, broker, 'remoteControl/status/read');
  assert.notEqual((status.result as StatusParams).status, 'connected');
  assert.ok((await tallied(tally, broker, 'account/read', {})).result, 'the broker still serves');

  for (const text of [broker.stdoutText, broker.stderrText]) {
    assert.ok(!text.includes(SECOND_KEY) && !text.includes(FIRST_KEY), 'no API key in output');
  }

  // Space again: the same operations succeed; what was stored before is intact.
  fs.unfill();
  const stateWhileFull = readPersistedState(home);
  assertBindingsIntact(stateWhileFull, [key.keyId]);
  assert.equal(stateWhileFull.enrollments.length, 1);
  assert.equal(
    stateWhileFull.enrollments[0]!.environment_id,
    enrolled.environmentId,
    'old row not half-replaced',
  );
  const again = await tallied(tally, broker, 'remoteControl/enable');
  assert.ok(again.result, JSON.stringify(again.error));
  const reconnected = await statusReached(broker, 'connected');
  assert.notEqual(reconnected.environmentId, enrolled.environmentId);
  const second = await createKey(broker, SOFTHSM_KEY);
  await signWith(broker, second.keyId, signParams(second.keyId).payload);
  assert.ok((await tallied(tally, broker, 'account/logout')).result);
  const resaved = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: SECOND_KEY });
  assert.ok(resaved.result, JSON.stringify(resaved.error));
  assert.equal(JSON.parse(authFileText(home)).OPENAI_API_KEY, SECOND_KEY);
  assert.equal(statSync(join(home, 'auth.json')).mode & 0o777, 0o600);

  const bound = [key.keyId, second.keyId];
  const after = readPersistedState(home);
  assertBindingsIntact(after, bound);
  assert.deepEqual(
    after.enrollments.map((row) => [row.environment_id, row.remote_control_enabled]),
    [[reconnected.environmentId, 1]],
  );
  // The long form fills and frees the disk again and again under the same broker.
  for (let round = 1; round < chaosRounds(); round++) {
    const authNow = authFileText(home);
    fs.fill();
    const full = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: FIRST_KEY });
    assert.deepEqual(full.error, { code: -32603, message: 'failed to save api key: ENOSPC' });
    assert.equal(authFileText(home), authNow);
    assert.equal((await tallied(tally, broker, 'device/key/create', SOFTHSM_KEY)).error?.code, -32603);
    assert.ok((await tallied(tally, broker, 'device/key/sign', signParams(second.keyId))).result);
    fs.unfill();
    const made = await tallied(tally, broker, 'device/key/create', SOFTHSM_KEY);
    assert.ok(made.result, JSON.stringify(made.error));
    bound.push((made.result as { keyId: string }).keyId);
  }
  assertBindingsIntact(readPersistedState(home), bound);
  assert.deepEqual(leftoverTemporaries(home), []);
  broker.closeStdin();
  assert.equal((await broker.waitExit(10_000)).code, 0);

  // A broker started on a disk that is already full: the database cannot even be opened for
  // reading (WAL needs its -shm index); the first sign fails clearly, the next one after space
  // is freed opens it afresh.
  fs.fill();
  const late = await startStorageBroker(t, backend, home);
  const refused = await tallied(tally, late, 'device/key/sign', signParams(key.keyId));
  assert.equal(refused.error?.code, -32603, JSON.stringify(refused));
  assert.match(
    refused.error.message,
    /^device key platform error: cannot open \S+state_5\.sqlite: .*no space left on the file system of \S+ \(ENOSPC\)$/,
  );
  assert.ok((await tallied(tally, late, 'account/read', {})).result, 'the broker serves');
  fs.unfill();
  const signedLater = await tallied(tally, late, 'device/key/sign', signParams(key.keyId));
  assert.ok(signedLater.result, JSON.stringify(signedLater.error));
  late.closeStdin();
  await late.waitExit(10_000);

  tally.faults = fs.faults + 1; // and the backend forgetting the server
  tally.report(t, `filler ${filled} bytes`);
  tally.assertNoneLost();
  reportModes(t, home);
});
