/**
 * Attestation seen from an embedding host (library API, in-process connections) against the
 * local backend: the `attested` lifecycle state and its event, many capable connections asked at
 * once (each request carries its own client's token), and a client that disconnects while asked.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { createBroker, type Broker, type InProcessClient, type LifecycleState } from '../../src/index.js';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import { chatgptToken } from '../helpers/local-backend.js';
import { silentLogger } from '../../src/util/logger.js';

type Message = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: unknown;
  error?: unknown;
};

let backend: LocalBackend;
let home: string;
let broker: Broker;

before(async () => {
  backend = await startLocalBackend({ port: 0 });
});
beforeEach((t) => {
  backend.requests.length = 0;
  home = mkdtempSync(join(tmpdir(), 'gatehouse-attest-'));
  broker = createBroker({
    codexHome: home,
    codex: { chatgptBaseUrl: backend.chatgptBaseUrl },
    env: { ...process.env, CODEX_CA_CERTIFICATE: backend.caCertPath },
    log: silentLogger(),
  });
  void t;
});
after(async () => {
  await backend.close();
});

async function closeBroker(): Promise<void> {
  await broker.close();
  rmSync(home, { recursive: true, force: true });
}

/** An in-process client with a request helper and a message log. */
function connect(onAttest: (client: InProcessClient, request: Message) => void) {
  const client = broker.connectInProcess();
  const seen: Message[] = [];
  const waiting = new Map<number, (m: Message) => void>();
  let nextId = 1;
  client.on('message', (raw) => {
    const m = raw as Message;
    seen.push(m);
    if (m.method === 'attestation/generate') onAttest(client, m);
    else if (m.id !== undefined && m.method === undefined) waiting.get(m.id)?.(m);
  });
  const request = (method: string, params: unknown) =>
    new Promise<Message>((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      client.send({ id, method, params });
    });
  const until = (pred: (m: Message) => boolean, what: string, ms = 10_000) =>
    new Promise<Message>((resolve, reject) => {
      const deadline = Date.now() + ms;
      const poll = () => {
        const found = seen.find(pred);
        if (found) return resolve(found);
        if (Date.now() > deadline) return reject(new Error(`no ${what} within ${ms} ms`));
        setTimeout(poll, 5);
      };
      poll();
    });
  return { client, seen, request, until };
}

/** A thread and a text turn on it (the turn opens the thread's Responses WebSocket); the thread id. */
async function startTurn(c: ReturnType<typeof connect>): Promise<string> {
  const thread = await c.request('thread/start', {});
  const threadId = (thread.result as { thread: { id: string } }).thread.id;
  const turn = await c.request('turn/start', { threadId, input: [{ type: 'text', text: 'attest' }] });
  assert.equal(turn.error, undefined, JSON.stringify(turn.error));
  return threadId;
}

const initialize = {
  clientInfo: { name: 'host', version: '1' },
  capabilities: { experimentalApi: true, requestAttestation: true },
};

test('a client that answers moves to attested, and the host sees each state change as an event', async (t) => {
  t.after(closeBroker);
  const states: LifecycleState[] = [];
  broker.on('connectionStateChanged', ({ state }) => states.push(state));
  const c = connect((client, m) => client.send({ id: m.id, result: { token: 'v1.host-token' } }));
  await c.request('initialize', initialize);
  await c.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken: chatgptToken(),
    chatgptAccountId: 'acct-1',
  });
  await c.until((m) => m.method === 'account/updated', 'account/updated');
  assert.equal(broker.connectionState(c.client.connectionId), 'authenticated');
  await startTurn(c);
  await c.until((m) => m.method === 'attestation/generate', 'attestation/generate');
  const deadline = Date.now() + 5_000;
  while (broker.connectionState(c.client.connectionId) !== 'attested' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(broker.connectionState(c.client.connectionId), 'attested');
  assert.deepEqual(states, ['initialized', 'authenticated', 'attested']);
  // Logout takes it back to initialized.
  c.client.send({ id: 99, method: 'account/logout' });
  await c.until((m) => m.id === 99, 'the logout answer');
  await c.until((m) => m.method === 'account/updated' && m.params?.authMode === null, 'account/updated');
  assert.equal(states.at(-1), 'initialized');
});

test('many capable connections asked at once: each handshake carries its own client token', async (t) => {
  t.after(closeBroker);
  const clients = Array.from({ length: 20 }, (_, i) =>
    connect((client, m) => client.send({ id: m.id, result: { token: `v1.client-${i}` } })),
  );
  for (const c of clients) await c.request('initialize', initialize);
  await clients[0]!.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken: chatgptToken(),
    chatgptAccountId: 'acct-1',
  });
  await clients[0]!.until((m) => m.method === 'account/updated', 'account/updated');
  const threadIds = await Promise.all(clients.map((c) => startTurn(c)));
  const deadline = Date.now() + 10_000;
  while (
    backend.requests.filter((r) => r.route === 'responses.ws').length < clients.length &&
    Date.now() < deadline
  ) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const handshakes = backend.requests.filter((r) => r.route === 'responses.ws');
  assert.equal(handshakes.length, clients.length);
  for (const h of handshakes) {
    const i = threadIds.indexOf(String(h.headers['thread-id']));
    assert.ok(i >= 0, 'a handshake for one of the threads');
    assert.equal(h.headers['x-oai-attestation'], `{"v":1,"s":0,"t":"v1.client-${i}"}`);
  }
  for (const c of clients) assert.equal(broker.connectionState(c.client.connectionId), 'attested');
});

test('a client that disconnects while asked: its turn stops, and the broker serves the others', async (t) => {
  t.after(closeBroker);
  const leaver = connect((client) => client.close());
  await leaver.request('initialize', initialize);
  await leaver.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken: chatgptToken(),
    chatgptAccountId: 'acct-1',
  });
  await leaver.until((m) => m.method === 'account/updated', 'account/updated');
  await startTurn(leaver);
  await leaver.until((m) => m.method === 'attestation/generate', 'attestation/generate');
  // The connection is gone; another one is served, and its own turn attests normally.
  const stayer = connect((client, m) => client.send({ id: m.id, result: { token: 'v1.stayer' } }));
  await stayer.request('initialize', initialize);
  const read = await stayer.request('account/read', {});
  assert.equal(read.error, undefined);
  const threadId = await startTurn(stayer);
  await stayer.until((m) => m.method === 'attestation/generate', 'attestation/generate');
  const deadline = Date.now() + 5_000;
  const mine = () =>
    backend.requests.find((r) => r.route === 'responses.ws' && r.headers['thread-id'] === threadId);
  while (!mine() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(mine()?.headers['x-oai-attestation'], '{"v":1,"s":0,"t":"v1.stayer"}');
  // The leaver's thread lost its only subscriber, so its turn stopped before connecting (the
  // canceled status itself, 3, is checked in the attestation actor's unit tests).
  assert.equal(backend.requests.filter((r) => r.route === 'responses.ws').length, 1);
});
