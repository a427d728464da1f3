/**
 * Key-store workers crashing with signs in flight, through the library API with a real SoftHSM2
 * token: every request is answered (a signature or a clear -32603), nothing is lost, and signing
 * works again at once with fresh workers. The broker closes them without a SIGSEGV (they used to
 * be terminated from outside, which crashed the process inside pkcs11js).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verify } from 'node:crypto';
import { createBroker, type InProcessClient } from '../../src/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { connectionPayload } from '../helpers/device-key-cases.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';

type Message = { id?: unknown; result?: Record<string, string>; error?: { code: number; message: string } };

/** Sends requests and resolves each with its answer. */
function caller(client: InProcessClient) {
  const pending = new Map<unknown, (m: Message) => void>();
  client.on('message', (m: Message) => pending.get(m.id)?.(m));
  let next = 0;
  return (method: string, params: unknown) =>
    new Promise<Message>((resolve) => {
      const id = `r${next++}`;
      pending.set(id, resolve);
      client.send({ id, method, params });
    });
}

test('a key-store worker crash mid-sign: all answered, the pool recovers', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-dk-crash-'));
  const broker = createBroker({
    codexHome: home,
    log: silentLogger(),
    settings: { deviceKeyTpm: 'off', workerThreads: 2 },
  });
  t.after(async () => {
    await broker.close(100);
    await rm(home, { recursive: true, force: true });
  });
  const client = broker.connectInProcess();
  const call = caller(client);
  await call('initialize', { clientInfo: { name: 'host', version: '1' } });
  const created = await call('device/key/create', {
    accountUserId: 'account-user-1',
    clientId: 'cli_123',
    protectionPolicy: 'allow_os_protected_nonextractable',
  });
  const key = created.result!;
  assert.ok(key, JSON.stringify(created.error));
  const spki = {
    key: Buffer.from(key.publicKeySpkiDerBase64!, 'base64'),
    format: 'der',
    type: 'spki',
  } as const;
  const sign = () =>
    call('device/key/sign', { keyId: key.keyId, payload: connectionPayload(Math.floor(Date.now() / 1000)) });

  const inFlight = Array.from({ length: 200 }, sign);
  // Crash once the workers are signing, so the rest are queued or mid-sign. A fixed delay could
  // land while the threads are still starting, when no request would be hit.
  await Promise.race(inFlight);
  await broker.deviceKeys.crashWorkers();
  const answers = await Promise.all(inFlight);

  let signed = 0;
  let failed = 0;
  for (const answer of answers) {
    if (answer.result) {
      const { signatureDerBase64, signedPayloadBase64 } = answer.result;
      assert.ok(
        verify(
          'sha256',
          Buffer.from(signedPayloadBase64!, 'base64'),
          { ...spki, dsaEncoding: 'der' },
          Buffer.from(signatureDerBase64!, 'base64'),
        ),
      );
      signed++;
    } else {
      assert.equal(answer.error?.code, -32603, JSON.stringify(answer.error));
      assert.match(
        answer.error.message,
        /^device key platform error: the key-store worker stopped during the request/,
      );
      failed++;
    }
  }
  assert.equal(signed + failed, 200, 'every request answered');
  assert.ok(failed > 0, 'the crash hit requests in flight');

  const after = await Promise.all(Array.from({ length: 20 }, sign));
  assert.ok(
    after.every((a) => a.result),
    JSON.stringify(after.find((a) => a.error)),
  );
  console.log(`crash mid-sign: ${signed} signed, ${failed} failed with -32603, then 20/20 signed`);
});
