import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBroker, type Broker, type InProcessClient, isBrokerError } from '../../src/index.js';
import { silentLogger } from '../../src/util/logger.js';

function setup(t: { after(fn: () => unknown): void }, settings = {}): Broker {
  const broker = createBroker({
    codexHome: mkdtempSync(join(tmpdir(), 'gh-')),
    log: silentLogger(),
    settings,
  });
  t.after(() => broker.close(100));
  return broker;
}

/** Collects what the server sends and waits for specific messages. */
function recorder(client: InProcessClient) {
  const seen: Record<string, unknown>[] = [];
  const waiters: {
    match: (m: Record<string, unknown>) => boolean;
    resolve: (m: Record<string, unknown>) => void;
  }[] = [];
  client.on('message', (m) => {
    seen.push(m);
    for (const w of waiters.splice(0)) {
      if (w.match(m)) w.resolve(m);
      else waiters.push(w);
    }
  });
  const next = (match: (m: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const found = seen.find(match);
      if (found) resolve(found);
      else waiters.push({ match, resolve });
    });
  return { seen, next };
}

async function initialized(broker: Broker, capabilities: Record<string, unknown> = {}) {
  const client = broker.connectInProcess();
  const r = recorder(client);
  client.send({
    id: 'init',
    method: 'initialize',
    params: { clientInfo: { name: 'host', version: '1' }, capabilities },
  });
  await r.next((m) => m.id === 'init');
  return { client, ...r };
}

test('server->client requests: ids from 0 on one broker-wide counter, answers resolve them', async (t) => {
  const broker = setup(t);
  const a = await initialized(broker, { requestAttestation: true });
  const b = await initialized(broker);
  const first = broker.request(a.client.connectionId, 'attestation/generate', {}, { timeoutMs: 5_000 });
  const second = broker.request(b.client.connectionId, 'account/chatgptAuthTokens/refresh', {
    reason: 'unauthorized',
    previousAccountId: null,
  });
  const reqA = await a.next((m) => m.method === 'attestation/generate');
  const reqB = await b.next((m) => m.method === 'account/chatgptAuthTokens/refresh');
  assert.deepEqual(reqA, { method: 'attestation/generate', id: 0, params: {} });
  assert.equal(reqB.id, 1);
  // An answer on the wrong connection is not accepted for the other's request.
  b.client.send({ id: 0, result: { token: 'stolen' } });
  a.client.send({ id: 0, result: { token: 'tok' }, jsonrpc: '2.0' });
  assert.deepEqual(await first, { token: 'tok' });
  b.client.send({ id: 1, result: { accessToken: 'at', chatgptAccountId: 'acc' } });
  assert.deepEqual(await second, { accessToken: 'at', chatgptAccountId: 'acc' });
});

test('a server request times out at its deadline; the late answer is ignored', async (t) => {
  const broker = setup(t, { attestationTimeoutMs: 30 });
  const a = await initialized(broker, { requestAttestation: true });
  const pending = broker.request(a.client.connectionId, 'attestation/generate', {});
  const req = await a.next((m) => m.method === 'attestation/generate');
  await assert.rejects(pending, (e) => isBrokerError(e, 'REQUEST_TIMEOUT'));
  a.client.send({ id: req.id, result: { token: 'late' } });
  a.client.send({ id: 'after', method: 'initialize', params: { clientInfo: { name: 'x', version: '1' } } });
  assert.equal(
    ((await a.next((m) => m.id === 'after')).error as { message: string }).message,
    'Already initialized',
  );
});

test('client errors, malformed answers and a closing connection all fail the waiting request', async (t) => {
  const broker = setup(t);
  const a = await initialized(broker);
  const errored = broker.request(a.client.connectionId, 'attestation/generate', {}, { timeoutMs: 5_000 });
  const e1 = await a.next((m) => m.method === 'attestation/generate' && m.id === 0);
  a.client.send({ id: e1.id, error: { code: -32000, message: 'nope' } });
  await assert.rejects(errored, (e) => isBrokerError(e, 'CLIENT_ERROR') && /code -32000/.test(e.message));

  const malformed = broker.request(a.client.connectionId, 'attestation/generate', {}, { timeoutMs: 5_000 });
  const e2 = await a.next((m) => m.method === 'attestation/generate' && m.id === 1);
  a.client.send({ id: e2.id, result: { token: 42 } });
  await assert.rejects(malformed, (e) => isBrokerError(e, 'CLIENT_ERROR') && /malformed/.test(e.message));

  const orphaned = broker.request(a.client.connectionId, 'attestation/generate', {}, { timeoutMs: 5_000 });
  await a.next((m) => m.method === 'attestation/generate' && m.id === 2);
  a.client.close();
  await assert.rejects(
    orphaned,
    (e) => isBrokerError(e, 'CONNECTION_CLOSED') || isBrokerError(e, 'ACTOR_STOPPED'),
  );
});

test('no server requests to a connection that has not initialized', async (t) => {
  const broker = setup(t);
  const client = broker.connectInProcess();
  await assert.rejects(broker.request(client.connectionId, 'attestation/generate', {}), (e) =>
    isBrokerError(e, 'NOT_INITIALIZED'),
  );
});

test('notifications carry emittedAtMs and honour optOutNotificationMethods exactly', async (t) => {
  const broker = setup(t);
  const plain = await initialized(broker);
  const optedOut = await initialized(broker, { optOutNotificationMethods: ['account/updated', 'account/*'] });
  const before = Date.now();
  assert.equal(
    await broker.notify(plain.client.connectionId, 'account/updated', { authMode: null, planType: null }),
    true,
  );
  assert.equal(
    await broker.notify(optedOut.client.connectionId, 'account/updated', { authMode: null, planType: null }),
    false,
  );
  const n = await plain.next((m) => m.method === 'account/updated');
  assert.deepEqual(Object.keys(n), ['method', 'params', 'emittedAtMs']);
  assert.ok(typeof n.emittedAtMs === 'number' && n.emittedAtMs >= before && n.emittedAtMs <= Date.now());
  // Opting out of a server-request method does not stop the request (spec B.4).
  const o2 = await initialized(broker, { optOutNotificationMethods: ['attestation/generate'] });
  const req = broker.request(o2.client.connectionId, 'attestation/generate', {}, { timeoutMs: 5_000 });
  const sent = await o2.next((m) => m.method === 'attestation/generate');
  o2.client.send({ id: sent.id, result: { token: 't' } });
  assert.deepEqual(await req, { token: 't' });
  assert.equal(optedOut.seen.filter((m) => m.method === 'account/updated').length, 0);
});

test('the lifecycle is visible to the host through typed events', async (t) => {
  const broker = setup(t);
  const states: string[] = [];
  broker.on('connectionStateChanged', (e) => states.push(e.state));
  const closed = new Promise((resolve) => broker.once('connectionClosed', resolve));
  const a = await initialized(broker);
  await broker.lifecycle(a.client.connectionId, 'auth.authenticated');
  await broker.lifecycle(a.client.connectionId, 'attestation.answered');
  assert.equal(broker.connectionState(a.client.connectionId), 'attested');
  a.client.close();
  await closed;
  assert.deepEqual(states, ['initialized', 'authenticated', 'attested', 'closed']);
});

test('close() lets in-flight requests finish and refuses new connections', async (t) => {
  const broker = setup(t);
  const a = await initialized(broker, { experimentalApi: true });
  a.client.send({ id: 1, method: 'mock/experimentalMethod', params: { value: 'v' } });
  const closing = broker.close(1_000);
  await closing;
  assert.deepEqual(
    a.seen.find((m) => m.id === 1),
    { id: 1, result: { echoed: 'v' } },
  );
  assert.throws(
    () => broker.connectInProcess(),
    (e) => isBrokerError(e, 'SHUTTING_DOWN'),
  );
});

test('the broker hosts the crypto actor in its worker pool', async (t) => {
  const broker = setup(t);
  const digest = await broker.crypto<string>('digest', { algorithm: 'sha256', data: 'abc' });
  assert.equal(digest, 'ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
  await assert.rejects(broker.crypto('digest', { algorithm: 'none', data: 'abc' }), (e) =>
    isBrokerError(e, 'INVALID_INPUT'),
  );
});
