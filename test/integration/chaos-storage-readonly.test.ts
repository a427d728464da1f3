/**
 * Storage chaos, a read-only CODEX_HOME under a running broker (the built CLI on a tmpfs):
 * - remounted read-only before Gatehouse opened anything there for writing (Linux refuses a
 *   read-only remount while a file is open for writing): saving an API key, creating a device key
 *   and enrolling answer with clear errors, the broker serves the rest, and after the remount
 *   read-write the same requests succeed;
 * - made immutable (`chattr +i`) once the database is open: new files cannot be made (auth.json's
 *   atomic write fails cleanly and the old file stays), writes through the open database go on.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { chaosRounds, ChaosTally } from '../helpers/chaos.js';
import { createKey } from '../helpers/device-keys.js';
import { useLocalBackend } from '../helpers/local-backend.js';
import { loginWithTokens, statusReached } from '../helpers/remote-control.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  assertBindingsIntact,
  leftoverTemporaries,
  readPersistedState,
  SOFTHSM_KEY,
  startStorageBroker,
  tallied,
} from '../helpers/storage-chaos.js';
import { Tmpfs, reportModes } from '../helpers/tmpfs.js';

const backend = useLocalBackend();

const API_KEY = 'sk-chaos-readonly-0123456789abcdef';
const OTHER_KEY = 'sk-chaos-immutable-fedcba987654321';

test('CODEX_HOME remounted read-only, then read-write: clear errors, then everything works', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const fs = Tmpfs.mount(t, 8192);
  const home = fs.path;
  const tally = new ChaosTally('storage read-only');
  const broker = await startStorageBroker(t, backend, home);
  fs.readOnly();

  const apiKey = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: API_KEY });
  assert.deepEqual(apiKey.error, { code: -32603, message: 'failed to save api key: EROFS' });
  assert.equal(existsSync(join(home, 'auth.json')), false);
  const created = await tallied(tally, broker, 'device/key/create', SOFTHSM_KEY);
  assert.equal(created.error?.code, -32603, JSON.stringify(created));
  assert.match(created.error.message, /EROFS|read-only/i);
  assert.ok((await tallied(tally, broker, 'account/read', {})).result, 'the broker serves');
  await loginWithTokens(broker);
  const enable = await tallied(tally, broker, 'remoteControl/enable');
  assert.equal(enable.error?.code, -32603, JSON.stringify(enable));
  assert.match(
    enable.error.message,
    /^cannot open the remote control enrollments in \S+state_5\.sqlite: .*EROFS/,
  );
  for (const text of [broker.stdoutText, broker.stderrText]) assert.ok(!text.includes(API_KEY));

  fs.writable();
  const enabled = await tallied(tally, broker, 'remoteControl/enable');
  assert.ok(enabled.result, JSON.stringify(enabled.error));
  await statusReached(broker, 'connected');
  const key = await createKey(broker, SOFTHSM_KEY);
  assert.ok((await tallied(tally, broker, 'account/logout')).result);
  const saved = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: API_KEY });
  assert.ok(saved.result, JSON.stringify(saved.error));
  const authText = readFileSync(join(home, 'auth.json'), 'utf8');
  assert.equal(JSON.parse(authText).OPENAI_API_KEY, API_KEY);

  // Now the database is open for writing: Linux refuses to remount read-only (EBUSY).
  let remount = 'remounted';

  try {
    fs.readOnly();
    fs.writable();
  } catch (e) {
    remount = (e as Error).message.split('\n')[0]!;
  }
  assert.match(remount, /busy/i, 'a read-only remount under open files is refused');

  // Immutable folder and auth.json: no new file can be made, writes through open files go on.
  const keys = [key.keyId];
  const outcomes = new Set<string>();
  for (let round = 0; round < chaosRounds(); round++) {
    const authNow = readFileSync(join(home, 'auth.json'), 'utf8');
    const [from, to] = round % 2 === 0 ? [API_KEY, OTHER_KEY] : [OTHER_KEY, API_KEY];
    assert.equal(JSON.parse(authNow).OPENAI_API_KEY, from);
    fs.immutable([home, join(home, 'auth.json')], true);
    const refused = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: to });
    assert.deepEqual(refused.error, { code: -32603, message: 'failed to save api key: EPERM' });
    assert.equal(readFileSync(join(home, 'auth.json'), 'utf8'), authNow, 'auth.json unchanged');
    const during = await tallied(tally, broker, 'device/key/create', SOFTHSM_KEY);
    outcomes.add(during.result ? 'created' : `error ${during.error?.message}`);
    if (during.result) keys.push((during.result as { keyId: string }).keyId);
    fs.immutable([home, join(home, 'auth.json')], false);
    const later = await tallied(tally, broker, 'account/login/start', { type: 'apiKey', apiKey: to });
    assert.ok(later.result, JSON.stringify(later.error));
    assert.deepEqual(leftoverTemporaries(home), [], 'no temporary file left');
  }

  const state = readPersistedState(home);
  assertBindingsIntact(state, keys);
  assert.equal(state.bindings.length, keys.length);
  assert.equal(state.enrollments.length, 1);
  broker.closeStdin();
  assert.equal((await broker.waitExit(10_000)).code, 0);

  tally.faults = fs.faults;
  tally.report(
    t,
    `device/key/create with CODEX_HOME immutable: ${[...outcomes].join(', ')}; ro remount under open files: ${remount}`,
  );
  tally.assertNoneLost();
  reportModes(t, home);
});
