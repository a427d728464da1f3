/**
 * The Responses relay under faults, through the built CLI against the local backend: a backend
 * that refuses every token however often the host refreshes (the refreshes stay bounded and
 * stop with the turn), `account/logout` while a turn streams, and a broker that keeps serving
 * other requests and other connections while a turn waits for the host's refresh answer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import {
  backendArgs,
  chatgptToken,
  spawnAgainst,
  startThread,
  startTurn,
  useLocalBackend,
} from '../helpers/local-backend.js';
import { TestClient, WsTestClient, type RpcMessage } from '../helpers/app-server-process.js';

const REFRESH = 'account/chatgptAuthTokens/refresh';
const NOT_LOGGED_IN = 'not logged in: log in with account/login/start first';

const backend = useLocalBackend();

function loginParams(accessToken: string) {
  return { type: 'chatgptAuthTokens', accessToken, chatgptAccountId: 'acct-1' };
}

async function loggedIn(
  t: { after(fn: () => Promise<void>): void },
  on: LocalBackend,
  args: string[] = [],
  accessToken = chatgptToken(),
): Promise<TestClient> {
  const client = spawnAgainst(t, on, args);
  await client.initialize({ experimentalApi: true });
  const login = await client.request('account/login/start', loginParams(accessToken));
  assert.equal(login.error, undefined, JSON.stringify(login.error));
  await client.readUntilNotification('account/updated');
  return client;
}

function isCompletedTurn(turnId: string): (m: RpcMessage) => boolean {
  return (m) => m.method === 'turn/completed' && (m.params as { turn: { id: string } }).turn.id === turnId;
}

/** A message already received (read or skipped), else the next one that matches (bounded). */
async function seen(client: TestClient, pred: (m: RpcMessage) => boolean, what: string): Promise<RpcMessage> {
  return client.messages.find(pred) ?? (await client.readUntil(pred, what));
}

/** Reads a WebSocket client's frames until one matches (each read bounded by its timeout). */
async function readUntil(
  c: WsTestClient,
  pred: (m: RpcMessage) => boolean,
  what: string,
): Promise<RpcMessage> {
  for (let i = 0; i < 1_000; i++) {
    const m = await c.next();
    if (pred(m)) return m;
  }
  throw new Error(`no ${what} within 1000 messages`);
}

interface TurnView {
  id: string;
  status: string;
  error: { message: string; codexErrorInfo: unknown; additionalDetails: string | null } | null;
}

const turnOf = (m: RpcMessage) => (m.params as { turn: TurnView }).turn;
const refreshCount = (messages: readonly RpcMessage[]) => messages.filter((m) => m.method === REFRESH).length;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a backend that refuses every fresh token: one refresh per attempt, a bounded count, then the turn fails and the refreshes stop', async (t) => {
  const maxRetries = 2;
  const client = await loggedIn(t, backend, ['-c', `gatehouse.stream_max_retries=${maxRetries}`]);
  const threadId = await startThread(client);
  backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 401 }, times: -1 });
  backend.faults.add({ route: 'responses.http', action: { kind: 'status', status: 401 }, times: -1 });
  const turnId = await startTurn(client, threadId, 'refused forever');

  const handedOut: string[] = [];
  const notes: RpcMessage[] = [];
  for (;;) {
    const m = await client.next();
    if (m.method === REFRESH) {
      assert.deepEqual(m.params, { reason: 'unauthorized', previousAccountId: 'acct-1' });
      // A storm would never reach turn/completed: stop it here rather than answer forever.
      assert.ok(handedOut.length < 50, 'more than 50 refresh requests for one turn');
      const fresh = chatgptToken();
      handedOut.push(fresh);
      await client.send({
        id: m.id,
        result: { accessToken: fresh, chatgptAccountId: 'acct-1', chatgptPlanType: 'plus' },
      });
      continue;
    }
    if (m.method) notes.push(m);
    if (isCompletedTurn(turnId)(m)) break;
  }

  // The 401 loop refreshes once per attempt and retries once (spec C.8); an attempt whose retry
  // is refused too fails. Attempts: the prewarm, 1 + maxRetries on the WebSocket, then the
  // fallback's 1 + maxRetries over HTTP. So 2 * maxRetries + 3 refreshes, two 401s each.
  const expectedRefreshes = 2 * maxRetries + 3;
  assert.equal(refreshCount(client.messages), expectedRefreshes);
  assert.equal(handedOut.length, expectedRefreshes);
  const refused = (route: string) =>
    backend.requests.filter((r) => r.route === route && r.status === 401).length;
  assert.equal(refused('responses.ws'), 2 * (maxRetries + 2));
  assert.equal(refused('responses.http'), 2 * (maxRetries + 1));
  // Each refreshed token was really sent (the retry uses what the host answered).
  handedOut.forEach((fresh, i) => {
    assert.ok(
      backend.requests.some((r) => r.headers.authorization === `Bearer ${fresh}`),
      `refreshed token #${i + 1} was never sent to the backend`,
    );
  });

  const text = `unexpected status 401 Unauthorized: {"detail":"Unauthorized"}, url: ${backend.chatgptBaseUrl}/codex/responses`;
  const turn = turnOf(notes.at(-1)!);
  assert.deepEqual(
    [turn.id, turn.status, turn.error],
    [turnId, 'failed', { message: text, codexErrorInfo: 'unauthorized', additionalDetails: null }],
  );
  const errors = notes.filter((m) => m.method === 'error');
  const retries = errors.filter((m) => (m.params as { willRetry: boolean }).willRetry);
  assert.deepEqual(
    retries.map((m) => (m.params as { error: { message: string } }).error.message),
    [1, 2, 1, 2].map((n) => `Reconnecting... ${n}/${maxRetries}`),
  );
  const final = errors.filter((m) => !(m.params as { willRetry: boolean }).willRetry);
  assert.equal(final.length, 1);
  assert.deepEqual(final[0]!.params, {
    error: { message: text, codexErrorInfo: 'unauthorized', additionalDetails: null },
    willRetry: false,
    threadId,
    turnId,
  });
  assert.equal(notes.filter((m) => m.method === 'warning').length, 1);

  // Nothing keeps refreshing or calling the backend once the turn is over.
  const backendCalls = backend.requests.filter((r) => r.route.startsWith('responses')).length;
  await sleep(500);
  assert.equal(refreshCount(client.messages), expectedRefreshes);
  assert.equal(backend.requests.filter((r) => r.route.startsWith('responses')).length, backendCalls);

  // The broker still serves, with the last tokens the host handed out.
  const account = await client.request('account/read', {});
  assert.equal(account.error, undefined, JSON.stringify(account.error));
  assert.deepEqual(
    [
      (account.result as { account: { type: string; email: string } }).account.type,
      (account.result as { account: { type: string; email: string } }).account.email,
    ],
    ['chatgpt', 'dev@example.com'],
  );
  const status = await client.request('getAuthStatus', { includeToken: false });
  assert.equal((status.result as { authMethod: string }).authMethod, 'chatgptAuthTokens');
  assert.equal(refreshCount(client.messages), expectedRefreshes);
  assert.ok(!client.stderrText.includes(handedOut.at(-1)!), 'a refreshed token appears in the logs');
});

test('account/logout while a turn streams: {} and account/updated, the turn ends, the next turn fails as not logged in', async (t) => {
  // A backend of its own that streams slowly, so the logout lands mid-stream.
  const slow = await startLocalBackend({ port: 0, responseDelayMs: 250 });
  t.after(() => slow.close());
  const client = await loggedIn(t, slow, ['-c', 'gatehouse.stream_max_retries=1']);
  const threadId = await startThread(client);
  const turnId = await startTurn(client, threadId, 'log me out');
  await client.readUntil((m) => m.method === 'item/agentMessage/delta', 'the first delta');
  assert.ok(!client.messages.some(isCompletedTurn(turnId)), 'the turn ended before the logout was sent');

  const logoutId = await client.sendRequest('account/logout');
  const logout = await client.readUntilResponse(logoutId);
  assert.deepEqual(logout.result, {}, JSON.stringify(logout.error));
  const updated = await seen(
    client,
    (m) => m.method === 'account/updated' && (m.params as { authMode: unknown }).authMode === null,
    'account/updated after logout',
  );
  assert.deepEqual(updated.params, { authMode: null, planType: null });
  // The running turn ends one way or the other (bounded by the read timeout), exactly once.
  const ended = turnOf(await seen(client, isCompletedTurn(turnId), `turn/completed for ${turnId}`));
  assert.ok(['completed', 'failed', 'interrupted'].includes(ended.status), ended.status);
  if (ended.status === 'failed') assert.notEqual(ended.error, null);
  await sleep(300);
  assert.equal(client.messages.filter(isCompletedTurn(turnId)).length, 1);

  const account = await client.request('account/read', {});
  assert.deepEqual(account.result, {
    account: null,
    userId: null,
    requiresOpenaiAuth: true,
    workspaceRouting: null,
  });

  // A new turn, on the same thread and on a new one, fails at once: nobody is logged in.
  const upstreamBefore = slow.requests.filter((r) => r.route.startsWith('responses')).length;
  for (const thread of [threadId, await startThread(client)]) {
    const next = await startTurn(client, thread, 'nobody home');
    const failed = turnOf(await seen(client, isCompletedTurn(next), `turn/completed for ${next}`));
    const error = { message: NOT_LOGGED_IN, codexErrorInfo: 'unauthorized', additionalDetails: null };
    assert.deepEqual([failed.status, failed.error], ['failed', error]);
    const note = client.messages.find(
      (m) => m.method === 'error' && (m.params as { turnId: string }).turnId === next,
    );
    assert.deepEqual(note?.params, { error, willRetry: false, threadId: thread, turnId: next });
  }
  assert.equal(slow.requests.filter((r) => r.route.startsWith('responses')).length, upstreamBefore);
  assert.equal(refreshCount(client.messages), 0);

  // The broker keeps serving: a new login, and a turn that completes.
  const fresh = chatgptToken();
  const login = await client.request('account/login/start', loginParams(fresh));
  assert.equal(login.error, undefined, JSON.stringify(login.error));
  const again = await startTurn(client, threadId, 'back again');
  const done = turnOf(await seen(client, isCompletedTurn(again), `turn/completed for ${again}`));
  assert.deepEqual([done.status, done.error], ['completed', null]);
  // The socket opened before the logout was not reused: the backend checks the bearer at the handshake.
  const handshakes = slow.requests.filter((r) => r.route === 'responses.ws');
  assert.equal(handshakes.length, 2, 'one handshake before the logout, one after the new login');
  assert.ok(
    handshakes.at(-1)!.headers.authorization === `Bearer ${fresh}`,
    'the new socket carries the new token',
  );
});

test('while a turn waits for the host to refresh, the same and other connections are served', async (t) => {
  const server = TestClient.spawn({
    args: [
      '--listen',
      'ws://127.0.0.1:0',
      // The refresh must not time out while the test holds it back.
      ...backendArgs(backend, ['-c', 'gatehouse.chatgpt_auth_tokens_refresh_timeout_ms=120000']),
    ],
    env: { CODEX_CA_CERTIFICATE: backend.caCertPath },
    readTimeoutMs: 10_000,
  });
  t.after(() => server.dispose());
  const url = await server.listenUrl();
  const [a, b] = await Promise.all([WsTestClient.connect(url, 10_000), WsTestClient.connect(url, 10_000)]);
  t.after(async () => {
    await Promise.all([a.close(), b.close()]);
  });
  await a.initialize({ name: 'host_a', experimentalApi: true });
  await b.initialize({ name: 'client_b' });

  const stale = chatgptToken();
  const login = await a.request('account/login/start', loginParams(stale));
  assert.equal(login.error, undefined, JSON.stringify(login.error));
  // Revoked only once the login's workspace discovery is over (account/updated).
  await readUntil(a, (m) => m.method === 'account/updated', 'account/updated');
  backend.revokeBearer(stale);
  const thread = await a.request('thread/start', {});
  const threadId = (thread.result as { thread: { id: string } }).thread.id;
  const turn = await a.request('turn/start', { threadId, input: [{ type: 'text', text: 'held' }] });
  const turnId = (turn.result as { turn: { id: string } }).turn.id;

  // Read A until the refresh request arrives; the turn is now stuck on the host's answer.
  const refresh = await readUntil(a, (m) => m.method === REFRESH, 'refresh request');

  // Both connections are served while the refresh is outstanding.
  const readB = await b.request('account/read', {});
  assert.equal(readB.error, undefined, JSON.stringify(readB.error));
  assert.equal((readB.result as { account: { type: string } }).account.type, 'chatgpt');
  const threadB = await b.request('thread/start', {});
  assert.equal(threadB.error, undefined, JSON.stringify(threadB.error));
  const readA = await a.request('account/read', {});
  assert.equal(readA.error, undefined, JSON.stringify(readA.error));
  assert.equal((readA.result as { account: { email: string } }).account.email, 'dev@example.com');
  const frames = (c: WsTestClient) => c.frames.map((f) => JSON.parse(f) as RpcMessage);
  assert.ok(
    !frames(a).some((m) => m.method === 'turn/completed'),
    'the turn ended before the host answered the refresh',
  );

  await a.sendText(
    JSON.stringify({
      id: refresh.id,
      result: { accessToken: chatgptToken(), chatgptAccountId: 'acct-1', chatgptPlanType: 'plus' },
    }),
  );
  const done = turnOf(await readUntil(a, (m) => m.method === 'turn/completed', 'turn/completed'));
  assert.deepEqual([done.id, done.status, done.error], [turnId, 'completed', null]);
  assert.equal(refreshCount(frames(a)), 1);
  assert.equal(refreshCount(frames(b)), 0);
});
