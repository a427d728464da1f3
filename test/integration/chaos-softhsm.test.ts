/**
 * Chaos, PKCS#11: the SoftHSM2 token's storage taken away while many device/key/sign requests
 * are in flight through the built CLI, as a user meets it when the token folder is moved or
 * deleted (and later restored from a backup), or sits on a disk that goes away.
 *
 * Every sign is answered, with a signature or a clear -32603 naming the token as unavailable
 * (never "device key not found", which would tell the host its key is gone for good). SoftHSM2
 * keeps a token whose folder vanished invalid for the life of the process, even once the folder
 * is back, so the same process keeps giving that error, which says to restart; after a restart on
 * the same CODEX_HOME the same key signs again and device/key/public returns the same public key.
 * `CHAOS_ROUNDS=N` repeats it N times (a new process each round).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestClient } from '../helpers/app-server-process.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  ChaosTally,
  chaosRounds,
  within,
  processCaller,
  startInFlight,
  signingWith,
} from '../helpers/chaos.js';

const IN_FLIGHT = 200;
const ANSWER_BOUND_MS = 30_000;
const TOKEN_UNAVAILABLE =
  'device key platform error: PKCS#11 token "gatehouse" is unavailable (PKCS#11 C_GetTokenInfo failed: CKR_GENERAL_ERROR); if its storage was moved or deleted, restore it and restart Gatehouse';

test('the SoftHSM2 token folder moved away mid-sign: every sign answered clearly; after a restart the same key signs', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-chaos-softhsm-'));
  t.after(async () => {
    await TestClient.disposeAll();
    await rm(home, { recursive: true, force: true });
  });
  // Gatehouse keeps its own SoftHSM2 configuration under CODEX_HOME when none is set.
  const env = { SOFTHSM2_CONF: undefined };
  const args = ['-c', 'gatehouse.device_key_tpm="off"'];
  const tokens = join(home, 'device-keys', 'softhsm2', 'tokens');
  const tally = new ChaosTally('SoftHSM2 token folder gone');

  const start = async () => {
    const client = TestClient.spawn({ codexHome: home, args, env, logLevel: 'warn', readTimeoutMs: 10_000 });
    const call = processCaller(client);
    const init = await call('initialize', { clientInfo: { name: 'chaos', version: '1' } });
    assert.ok(init.result, JSON.stringify(init.error));
    return { client, call };
  };
  let server = await start();
  const created = await server.call('device/key/create', {
    accountUserId: 'account-user-1',
    clientId: 'cli_123',
    protectionPolicy: 'allow_os_protected_nonextractable',
  });
  const key = created.result;
  assert.ok(key, JSON.stringify(created.error));
  const [tokenFolder, ...others] = readdirSync(tokens);
  assert.ok(tokenFolder && others.length === 0, 'one token');
  /** Counts each answer: a signature must verify, an error must say the token is unavailable. */
  const { sign, check: check } = signingWith(
    (method, params) => server.call(method, params),
    key,
    tally,
    (error) => {
      assert.deepEqual(error, { code: -32603, message: TOKEN_UNAVAILABLE });
      return TOKEN_UNAVAILABLE;
    },
    ANSWER_BOUND_MS,
  );

  for (let round = 0; round < chaosRounds(); round++) {
    const signs = startInFlight(IN_FLIGHT, sign);
    await within(signs.reached(5), ANSWER_BOUND_MS, 'signing got going');
    tally.faults++;
    const away = join(home, 'token-away');
    renameSync(join(tokens, tokenFolder), away);
    await check(signs.calls);
    renameSync(away, join(tokens, tokenFolder));
    // The folder is back, but this process's SoftHSM2 still holds the token as gone.
    const before = tally.failedCount;
    await check([sign()]);
    assert.equal(tally.failedCount, before + 1, 'the same clear error until a restart');

    server.client.child.stdin.end();
    assert.equal((await server.client.exited).code, 0, 'the server exits cleanly with stdin closed');
    server = await start();
    const again = await server.call('device/key/public', { keyId: key.keyId });
    assert.equal(again.result?.publicKeySpkiDerBase64, key.publicKeySpkiDerBase64, 'same public key');
    const failedBefore = tally.failedCount;
    await check(Array.from({ length: 20 }, sign));
    assert.equal(
      tally.failedCount,
      failedBefore,
      `after the restart every sign succeeds: ${tally.summary()}`,
    );
  }
  tally.report(t);
  tally.assertNoneLost();
  assert.ok(tally.failedCount > chaosRounds(), 'the fault hit signs in flight');
});
