/**
 * device/key/* through the built CLI over stdio: codex's validation and errors with no provider,
 * real keys in SoftHSM2 (zero configuration: Gatehouse makes its own token under CODEX_HOME) and in
 * a TPM (swtpm), signatures checked with openssl, keys surviving restarts, and a TPM that goes away.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TestClient, type RpcMessage } from '../helpers/app-server-process.js';
import { connectionPayload, enrollmentPayload, payloadRuleCases } from '../helpers/device-key-cases.js';
import { createKey, errorOf, opensslVerify, signWith } from '../helpers/device-keys.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { startSwtpm, swtpmMissing } from '../helpers/swtpm.js';

const NO_PROVIDERS = ['-c', 'gatehouse.device_key_tpm=off', '-c', 'gatehouse.device_key_pkcs11_module=off'];
const SOFTHSM_ONLY = ['-c', 'gatehouse.device_key_tpm=off'];
const IDS = { accountUserId: 'account-user-1', clientId: 'cli_123' };
const UNKNOWN_KEY = `dk_tpm_${Buffer.alloc(32, 1).toString('base64url')}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A CODEX_HOME that outlives the processes using it (removed when the test ends). */
function sharedHome(t: { after(fn: () => Promise<void>): void }): string {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-dk-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  return home;
}

async function started(t: { after(fn: () => Promise<void>): void }, args: string[], codexHome?: string) {
  const client = TestClient.spawn({ args, ...(codexHome ? { codexHome } : {}), readTimeoutMs: 15_000 });
  t.after(() => client.dispose());
  const init = await client.initialize();
  assert.ok(init.result, JSON.stringify(init.error));
  return client;
}

test('without a provider: codex 0.129.0 answers, the same with or without experimentalApi', async (t) => {
  const client = TestClient.spawn({ args: NO_PROVIDERS });
  t.after(() => client.dispose());
  await client.initialize({ experimentalApi: false });
  for (const policy of [undefined, null, 'hardware_only', 'allow_os_protected_nonextractable']) {
    const reply = await client.request('device/key/create', { ...IDS, protectionPolicy: policy });
    assert.deepEqual(errorOf(reply), {
      code: -32600,
      message: 'hardware-backed device keys are not available on this platform',
    });
  }
  assert.deepEqual(errorOf(await client.request('device/key/public', { keyId: UNKNOWN_KEY })), {
    code: -32600,
    message: 'device key not found',
  });
  const sign = await client.request('device/key/sign', {
    keyId: UNKNOWN_KEY,
    payload: connectionPayload(nowSeconds()),
  });
  assert.deepEqual(errorOf(sign), { code: -32600, message: 'device key not found' });
});

test('params errors are serde errors, checked before the provider', async (t) => {
  const client = await started(t, NO_PROVIDERS);
  const cases: [string, unknown, string][] = [
    ['device/key/create', { accountUserId: 'a' }, 'Invalid request: missing field `clientId`'],
    [
      'device/key/create',
      { ...IDS, protectionPolicy: 'hardwareOnly' },
      'Invalid request: unknown variant `hardwareOnly`, expected `hardware_only` or `allow_os_protected_nonextractable`',
    ],
    [
      'device/key/create',
      { accountUserId: '', clientId: 'c' },
      'invalid device key payload: accountUserId must not be empty',
    ],
    [
      'device/key/create',
      { accountUserId: 'a', clientId: '' },
      'invalid device key payload: clientId must not be empty',
    ],
    [
      'device/key/sign',
      { keyId: UNKNOWN_KEY, payload: { type: 'arbitraryBytes', bytes: 'AAAA' } },
      'Invalid request: unknown variant `arbitraryBytes`, expected `remoteControlClientConnection` or `remoteControlClientEnrollment`',
    ],
    [
      'device/key/sign',
      { keyId: UNKNOWN_KEY, payload: { ...connectionPayload(nowSeconds()), scopes: undefined } },
      'Invalid request: missing field `scopes`',
    ],
    [
      'device/key/sign',
      {
        keyId: UNKNOWN_KEY,
        payload: { ...connectionPayload(nowSeconds()), audience: 'remote_control_client_enrollment' },
      },
      'Invalid request: unknown variant `remote_control_client_enrollment`, expected `remote_control_client_websocket`',
    ],
    [
      'device/key/public',
      { keyId: 'not-a-device-key' },
      'invalid device key payload: keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes',
    ],
    [
      'device/key/sign',
      { keyId: 'dk_tpm_', payload: connectionPayload(0) },
      'invalid device key payload: keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes',
    ],
  ];
  for (const [method, params, message] of cases) {
    const reply = await client.request(method, params);
    assert.deepEqual(errorOf(reply), { code: -32600, message }, `${method} ${JSON.stringify(params)}`);
  }
});

test('every payload rule through the CLI, in order, before the binding lookup', async (t) => {
  const client = await started(t, NO_PROVIDERS);
  for (let attempt = 0; ; attempt++) {
    const now = nowSeconds();
    const cases = payloadRuleCases(now);
    const replies: RpcMessage[] = [];
    for (const { payload } of cases) {
      replies.push(await client.request('device/key/sign', { keyId: UNKNOWN_KEY, payload }));
    }
    // The expiry edges are exact to the second: if the clock ticked meanwhile, run them again.
    if (nowSeconds() !== now && attempt < 3) continue;
    cases.forEach(({ label, message }, i) => {
      const expected =
        message === undefined ? 'device key not found' : `invalid device key payload: ${message}`;
      assert.deepEqual(errorOf(replies[i]!), { code: -32600, message: expected }, label);
    });
    return;
  }
});

test('a seeded binding is checked before the provider: mismatch, then not found', async (t) => {
  const client = await started(t, NO_PROVIDERS);
  // The key store creates the table on first use.
  await client.request('device/key/public', { keyId: UNKNOWN_KEY });
  const db = new Database(join(client.codexHome, 'state_5.sqlite'));
  db.prepare(
    'INSERT INTO device_key_bindings (key_id, account_user_id, client_id, created_at, updated_at) VALUES (?, ?, ?, 0, 0)',
  ).run(UNKNOWN_KEY, IDS.accountUserId, IDS.clientId);
  db.close();
  const other = await client.request('device/key/sign', {
    keyId: UNKNOWN_KEY,
    payload: connectionPayload(nowSeconds(), {}, { accountUserId: 'someone-else', clientId: IDS.clientId }),
  });
  assert.deepEqual(errorOf(other), {
    code: -32600,
    message: 'invalid device key payload: payload accountUserId/clientId does not match device key binding',
  });
  const bound = await client.request('device/key/sign', {
    keyId: UNKNOWN_KEY,
    payload: connectionPayload(nowSeconds()),
  });
  assert.deepEqual(errorOf(bound), { code: -32600, message: 'device key not found' });
});

test('SoftHSM2, zero configuration: policy, real keys, openssl verification, restart, bindings', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const home = sharedHome(t);
  const client = await started(t, SOFTHSM_ONLY, home);

  assert.deepEqual(errorOf(await client.request('device/key/create', IDS)), {
    code: -32600,
    message:
      'hardware-backed device keys are not available; set protectionPolicy to allow_os_protected_nonextractable to allow key protection class os_protected_nonextractable',
  });
  const key = await createKey(client, { ...IDS, protectionPolicy: 'allow_os_protected_nonextractable' });
  assert.match(key.keyId, /^dk_osn_[A-Za-z0-9_-]{43}$/);
  assert.equal(key.protectionClass, 'os_protected_nonextractable');
  assert.equal(key.algorithm, 'ecdsa_p256_sha256');
  assert.equal(Buffer.from(key.publicKeySpkiDerBase64, 'base64').length, 91);
  assert.deepEqual((await client.request('device/key/public', { keyId: key.keyId })).result, key);

  for (const payload of [connectionPayload(nowSeconds()), enrollmentPayload(nowSeconds())]) {
    const signature = await signWith(client, key.keyId, payload);
    assert.equal(await opensslVerify(key.publicKeySpkiDerBase64, signature), 'Verified OK');
  }
  const mismatch = await client.request('device/key/sign', {
    keyId: key.keyId,
    payload: connectionPayload(nowSeconds(), {}, { accountUserId: IDS.accountUserId, clientId: 'cli_other' }),
  });
  assert.equal(
    errorOf(mismatch).message,
    'invalid device key payload: payload accountUserId/clientId does not match device key binding',
  );

  // Gatehouse's own token and PINs live under CODEX_HOME, private to the user.
  const pins = join(home, 'device-keys', 'pkcs11-pins.json');
  assert.equal(statSync(pins).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, 'device-keys')).mode & 0o777, 0o700);
  assert.ok(readdirSync(join(home, 'device-keys', 'softhsm2', 'tokens')).length > 0, 'a token folder');
  assert.equal(statSync(join(home, 'state_5.sqlite')).mode & 0o777, 0o600);
  const { soPin, userPin } = JSON.parse(readFileSync(pins, 'utf8')) as Record<string, string>;
  for (const pin of [soPin!, userPin!])
    assert.ok(!client.stderrText.includes(pin) && !client.stdoutText.includes(pin));

  // A new process on the same CODEX_HOME signs with the same key.
  await client.dispose();
  const again = await started(t, SOFTHSM_ONLY, home);
  assert.deepEqual((await again.request('device/key/public', { keyId: key.keyId })).result, key);
  const later = await signWith(again, key.keyId, connectionPayload(nowSeconds()));
  assert.equal(await opensslVerify(key.publicKeySpkiDerBase64, later), 'Verified OK');
  const row = new Database(join(home, 'state_5.sqlite'), { readonly: true })
    .prepare('SELECT account_user_id, client_id FROM device_key_bindings WHERE key_id = ?')
    .get(key.keyId);
  assert.deepEqual(row, { account_user_id: IDS.accountUserId, client_id: IDS.clientId });
});

test('TPM (swtpm): hardware_only keys, openssl verification, the TPM going away and coming back', async (t) => {
  if (skippedFor(t, swtpmMissing())) return;
  const tpm = await startSwtpm();
  t.after(() => tpm.dispose());
  // Zero configuration: the TCTI comes from the environment, as tpm2-tools reads it.
  const spawnWithTpm = (codexHome?: string) => {
    const client = TestClient.spawn({
      args: ['-c', 'gatehouse.device_key_pkcs11_module=off'],
      env: { TPM2TOOLS_TCTI: tpm.tcti },
      ...(codexHome ? { codexHome } : {}),
      readTimeoutMs: 15_000,
    });
    t.after(() => client.dispose());
    return client;
  };
  const home = sharedHome(t);
  const client = spawnWithTpm(home);
  await client.initialize();
  const key = await createKey(client, IDS);
  assert.match(key.keyId, /^dk_tpm_[A-Za-z0-9_-]{43}$/);
  assert.equal(key.protectionClass, 'hardware_tpm');
  const signature = await signWith(client, key.keyId, connectionPayload(nowSeconds()));
  assert.equal(await opensslVerify(key.publicKeySpkiDerBase64, signature), 'Verified OK');

  await tpm.stop();
  const down = await client.request('device/key/sign', {
    keyId: key.keyId,
    payload: connectionPayload(nowSeconds()),
  });
  assert.equal(errorOf(down).code, -32603);
  assert.match(errorOf(down).message, /^device key platform error: TPM unavailable/);
  assert.equal((await client.request('account/read', {})).error, undefined, 'the broker still serves');
  await tpm.start();
  const back = await signWith(client, key.keyId, enrollmentPayload(nowSeconds()));
  assert.equal(await opensslVerify(key.publicKeySpkiDerBase64, back), 'Verified OK');

  await client.dispose();
  const again = spawnWithTpm(home);
  await again.initialize();
  const afterRestart = await signWith(again, key.keyId, connectionPayload(nowSeconds()));
  assert.equal(await opensslVerify(key.publicKeySpkiDerBase64, afterRestart), 'Verified OK');
});
