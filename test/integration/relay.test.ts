/**
 * The Responses relay through the built CLI against the local backend: a text turn over the
 * Responses WebSocket and over HTTP, the 401 → refresh → retry loop (single flight over 100
 * concurrent turns), retries and the fallback to HTTP, a cut stream, 5xx, interrupts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  chatgptToken,
  spawnAgainst,
  startThread,
  startTurn,
  useLocalBackend,
} from '../helpers/local-backend.js';
import { TestClient, type RpcMessage } from '../helpers/app-server-process.js';

const backend = useLocalBackend();

async function loggedIn(
  t: { after(fn: () => Promise<void>): void },
  args: string[] = [],
  accessToken = chatgptToken(),
): Promise<TestClient> {
  const client = spawnAgainst(t, backend, args);
  await client.initialize({ experimentalApi: true });
  await client.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken,
    chatgptAccountId: 'acct-1',
  });
  await client.readUntilNotification('account/updated');
  return client;
}

function completedTurn(client: TestClient, turnId: string): Promise<RpcMessage> {
  return client.readUntil(
    (m) => m.method === 'turn/completed' && (m.params as { turn: { id: string } }).turn.id === turnId,
    `turn/completed for ${turnId}`,
  );
}

test('a text turn streams over the Responses WebSocket with codex headers', async (t) => {
  const access = chatgptToken();
  const client = await loggedIn(t, [], access);
  const threadId = await startThread(client);
  const turnId = await startTurn(client, threadId, 'hello relay');
  const seen: RpcMessage[] = [];
  for (;;) {
    const m = await client.next();
    if (m.method) seen.push(m);
    if (m.method === 'turn/completed') break;
  }
  const methods = seen.map((m) => m.method).filter((m) => m !== 'thread/started');
  assert.equal(methods[0], 'turn/started');
  assert.equal(methods[1], 'item/started');
  assert.equal(methods.at(-2), 'item/completed');
  const text = seen
    .filter((m) => m.method === 'item/agentMessage/delta')
    .map((m) => (m.params as { delta: string }).delta)
    .join('');
  assert.equal(text, 'Echo: hello relay');
  const done = seen.find((m) => m.method === 'item/completed')!.params as {
    item: { text: string; type: string };
  };
  assert.deepEqual([done.item.type, done.item.text], ['agentMessage', 'Echo: hello relay']);
  const completed = seen.at(-1)!.params as {
    threadId: string;
    turn: { id: string; status: string; error: null };
  };
  assert.deepEqual(
    [completed.threadId, completed.turn.id, completed.turn.status, completed.turn.error],
    [threadId, turnId, 'completed', null],
  );

  const handshake = backend.requests.find((r) => r.route === 'responses.ws')!;
  assert.equal(handshake.headers.authorization, `Bearer ${access}`);
  assert.equal(handshake.headers['chatgpt-account-id'], 'acct-1');
  assert.equal(handshake.headers['openai-beta'], 'responses_websockets=2026-02-06');
  assert.equal(handshake.headers.version, '0.169.0');
  assert.equal(handshake.headers.originator, 'gatehouse_test');
  assert.equal(handshake.headers['thread-id'], threadId);
  assert.equal(handshake.headers['x-codex-window-id'], `${threadId}:0`);

  // A second turn reuses the open socket: no new handshake.
  await completedTurn(client, await startTurn(client, threadId, 'again'));
  assert.equal(backend.requests.filter((r) => r.route === 'responses.ws').length, 1);
  assert.ok(!client.stderrText.includes(access));
});

test('100 concurrent turns that all get a 401 cause exactly one refresh request', async (t) => {
  const stale = chatgptToken();
  const client = await loggedIn(t, [], stale);
  backend.revokeBearer(stale);
  // Every request goes out before any answer is read: the turns really run concurrently.
  const threadIds = await Promise.all(
    Array.from({ length: 100 }, () => client.sendRequest('thread/start', {})),
  );
  const threads: string[] = [];
  for (const id of threadIds) {
    threads.push(((await client.readUntilResponse(id)).result as { thread: { id: string } }).thread.id);
  }
  const turnIds = await Promise.all(
    threads.map((threadId, i) =>
      client.sendRequest('turn/start', { threadId, input: [{ type: 'text', text: `turn ${i}` }] }),
    ),
  );
  const turns: string[] = [];
  for (const id of turnIds)
    turns.push(((await client.readUntilResponse(id)).result as { turn: { id: string } }).turn.id);
  const refresh =
    client.messages.find((m) => m.method === 'account/chatgptAuthTokens/refresh') ??
    (await client.readUntil((m) => m.method === 'account/chatgptAuthTokens/refresh', 'refresh'));
  await client.send({
    id: refresh.id,
    result: { accessToken: chatgptToken(), chatgptAccountId: 'acct-1', chatgptPlanType: null },
  });
  const pending = new Set(turns);
  while (pending.size > 0) {
    const m = await client.readUntil((x) => x.method === 'turn/completed', 'turn/completed');
    const turn = (m.params as { turn: { id: string; status: string } }).turn;
    assert.equal(turn.status, 'completed', JSON.stringify(m.params));
    pending.delete(turn.id);
  }
  const refreshes = client.messages.filter((m) => m.method === 'account/chatgptAuthTokens/refresh');
  assert.equal(refreshes.length, 1);
  assert.equal(backend.requests.filter((r) => r.route === 'responses.ws' && r.status === 401).length, 100);
});

test('a host that keeps failing the refresh: bounded retries, fallback to HTTP, the turn fails with the refresh text', async (t) => {
  const stale = chatgptToken();
  const client = await loggedIn(t, ['-c', 'gatehouse.stream_max_retries=1'], stale);
  backend.revokeBearer(stale);
  const threadId = await startThread(client);
  const turnId = await startTurn(client, threadId, 'doomed');
  const notes: RpcMessage[] = [];
  for (;;) {
    const m = await client.next();
    if (m.method === 'account/chatgptAuthTokens/refresh') {
      await client.send({ id: m.id, error: { code: -32001, message: 'no tokens for you' } });
      continue;
    }
    if (m.method) notes.push(m);
    if (m.method === 'turn/completed') break;
  }
  const text = 'auth refresh request failed: code=-32001';
  const completed = notes.at(-1)!.params as {
    turn: { id: string; status: string; error: { message: string } };
  };
  assert.deepEqual(
    [completed.turn.id, completed.turn.status, completed.turn.error.message],
    [turnId, 'failed', text],
  );
  // Retries are announced with willRetry; the final error notification carries the failure.
  const reconnecting = notes.filter(
    (m) => m.method === 'error' && (m.params as { willRetry: boolean }).willRetry,
  );
  assert.ok(reconnecting.length >= 2);
  for (const m of reconnecting) {
    assert.deepEqual(
      [
        (m.params as { error: { message: string } }).error.message,
        (m.params as { willRetry: boolean }).willRetry,
      ],
      ['Reconnecting... 1/1', true],
    );
  }
  const warning = notes.find((m) => m.method === 'warning')!;
  assert.equal(
    (warning.params as { message: string }).message,
    `Falling back from WebSockets to HTTPS transport. ${text}`,
  );
  // One refresh per failed attempt (prewarm, first and one retry on WebSocket, then two on
  // HTTP): bounded by the retry policy, no storm.
  const refreshes = client.messages.filter((m) => m.method === 'account/chatgptAuthTokens/refresh').length;
  const unauthorized = backend.requests.filter(
    (r) => r.route.startsWith('responses') && r.status === 401,
  ).length;
  assert.equal(refreshes, unauthorized);
  assert.ok(refreshes >= 4 && refreshes <= 5, `refreshes: ${refreshes}`);
  assert.ok(backend.requests.some((r) => r.route === 'responses.http'));
  assert.ok(!client.stderrText.includes('no tokens for you'));
});

test('a stream cut mid-turn is retried; 5xx over HTTP fails with the status text', async (t) => {
  const client = await loggedIn(t, ['-c', 'gatehouse.stream_max_retries=1']);
  const threadId = await startThread(client);
  backend.faults.add({ route: 'responses.ws', action: { kind: 'disconnect', afterEvents: 3 } });
  const first = await completedTurn(client, await startTurn(client, threadId, 'cut me'));
  assert.equal((first.params as { turn: { status: string } }).turn.status, 'completed');
  assert.ok(
    client.messages.some((m) => m.method === 'error' && (m.params as { willRetry: boolean }).willRetry),
  );

  backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 503 }, times: 3 });
  backend.faults.add({
    route: 'responses.http',
    action: { kind: 'status', status: 500, body: 'backend down' },
    times: 2,
  });
  // A fresh thread, so the WebSocket handshakes (not a reused socket) meet the faults.
  const failed = await completedTurn(client, await startTurn(client, await startThread(client), 'fail me'));
  const turn = (failed.params as { turn: { status: string; error: { message: string } } }).turn;
  assert.equal(turn.status, 'failed');
  assert.equal(
    turn.error.message,
    `unexpected status 500 Internal Server Error: backend down, url: ${backend.chatgptBaseUrl}/codex/responses`,
  );
  // The broker keeps serving.
  assert.equal((await client.request('account/read', {})).error, undefined);
});

test('turn/interrupt ends a running turn as interrupted; unknown threads and turns are refused', async (t) => {
  const client = await loggedIn(t);
  const threadId = await startThread(client);
  backend.faults.add({ route: 'responses.ws', action: { kind: 'slow', delayMs: 3_000 } });
  const turnId = await startTurn(client, threadId, 'slow');
  const busy = await client.request('turn/start', { threadId, input: [{ type: 'text', text: 'second' }] });
  assert.equal(busy.error?.code, -32600);
  assert.deepEqual((await client.request('turn/interrupt', { threadId, turnId })).result, {});
  const done = await completedTurn(client, turnId);
  assert.equal((done.params as { turn: { status: string } }).turn.status, 'interrupted');
  const malformed = await client.request('turn/start', { threadId: 'nope', input: [] });
  assert.equal(malformed.error?.code, -32600);
  assert.match(malformed.error?.message ?? '', /^invalid thread id: /);
  const unknown = await client.request('turn/start', {
    threadId: '00000000-0000-4000-8000-000000000000',
    input: [],
  });
  assert.equal(unknown.error?.code, -32600);
  assert.equal((await client.request('turn/interrupt', { threadId, turnId })).error?.code, -32600);
});

test('API-key auth posts to openai_base_url over HTTP and never asks for a refresh', async (t) => {
  const client = TestClient.spawn({
    args: ['-c', `openai_base_url=${backend.chatgptBaseUrl}/codex`, '-c', 'gatehouse.stream_max_retries=0'],
    env: { CODEX_CA_CERTIFICATE: backend.caCertPath },
  });
  t.after(() => client.dispose());
  await client.initialize();
  await client.request('account/login/start', { type: 'apiKey', apiKey: 'sk-relay-test' });
  const threadId = await startThread(client);
  const done = await completedTurn(client, await startTurn(client, threadId, 'key'));
  assert.equal((done.params as { turn: { status: string } }).turn.status, 'completed');
  const post = backend.requests.find((r) => r.route === 'responses.http')!;
  assert.equal(post.headers.authorization, 'Bearer sk-relay-test');
  assert.equal(post.headers.accept, 'text/event-stream');
  assert.equal(backend.requests.filter((r) => r.route === 'responses.ws').length, 0);
});
