/**
 * Compaction (`thread/compact/start`) and realtime call creation (`thread/realtime/start`)
 * through the built CLI against the local backend, which keeps request bodies here: a compaction
 * over the thread's open WebSocket (a `response.create` frame, no new handshake) and over HTTP
 * after the fallback, the conversation it leaves behind, WebRTC call creation with its path,
 * query, headers and body, the refusals codex makes or Gatehouse documents, decode errors and
 * unknown threads.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LOCAL_ANSWER_SDP } from '../../src/backend/handlers.js';
import type { RecordedRequest } from '../../src/backend/request-log.js';
import { chatgptToken, spawnAgainst, startThread, useLocalBackend } from '../helpers/local-backend.js';
import { TestClient, type RpcMessage } from '../helpers/app-server-process.js';

const backend = useLocalBackend({ recordBodies: true });

type T = { after(fn: () => Promise<void>): void };

const user = (text: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] });
const assistant = (text: string) => ({
  type: 'message',
  role: 'assistant',
  content: [{ type: 'output_text', text }],
});
const developer = (text: string) => ({
  type: 'message',
  role: 'developer',
  content: [{ type: 'input_text', text }],
});
const TRIGGER = { type: 'compaction_trigger' };

async function loggedIn(
  t: T,
  opts: { args?: string[]; experimentalApi?: boolean; apiKey?: boolean; accessToken?: string } = {},
): Promise<TestClient> {
  const client = spawnAgainst(t, backend, opts.args);
  await client.initialize({ experimentalApi: opts.experimentalApi ?? true });
  const login = await client.request(
    'account/login/start',
    opts.apiKey
      ? { type: 'apiKey', apiKey: 'sk-local-test' }
      : {
          type: 'chatgptAuthTokens',
          accessToken: opts.accessToken ?? chatgptToken(),
          chatgptAccountId: 'acct-1',
        },
  );
  assert.equal(login.error, undefined, JSON.stringify(login.error));
  await client.readUntilNotification('account/updated');
  return client;
}

/** What left for the Responses and realtime endpoints (login traffic such as accounts/check aside). */
const outbound = () =>
  backend.requests.filter((r) => r.route.startsWith('responses') || r.route === 'realtime.calls');

/** Runs a text turn to completion and returns its agent text. */
async function turn(client: TestClient, threadId: string, text: string): Promise<string> {
  const reply = await client.request('turn/start', { threadId, input: [{ type: 'text', text }] });
  const turnId = (reply.result as { turn: { id: string } }).turn.id;
  const done = await client.readUntil(
    (m) =>
      m.method === 'item/completed' && (m.params as { item: { type: string } }).item.type === 'agentMessage',
    `agent message of ${turnId}`,
  );
  const completed = await client.readUntil(
    (m) => m.method === 'turn/completed' && (m.params as { turn: { id: string } }).turn.id === turnId,
    `turn/completed ${turnId}`,
  );
  assert.equal((completed.params as { turn: { status: string } }).turn.status, 'completed');
  return (done.params as { item: { text: string } }).item.text;
}

/** `thread/compact/start`, then its notifications up to turn/completed. */
async function compact(
  client: TestClient,
  threadId: string,
): Promise<{ reply: RpcMessage; notes: RpcMessage[] }> {
  const reply = await client.request('thread/compact/start', { threadId });
  const notes: RpcMessage[] = [];
  for (;;) {
    const m = await client.next();
    if (!m.method) continue;
    notes.push(m);
    if (m.method === 'turn/completed') break;
  }
  return { reply, notes };
}

const routed = (route: RecordedRequest['route']) => backend.requests.filter((r) => r.route === route);
const inputOf = (r: RecordedRequest | undefined) => (r?.body as { input?: unknown } | undefined)?.input;

function assertCompactionNotes(threadId: string, notes: RpcMessage[]): string {
  assert.deepEqual(
    notes.map((m) => m.method),
    ['turn/started', 'item/started', 'item/completed', 'turn/completed'],
    JSON.stringify(notes),
  );
  const [started, itemStarted, itemCompleted, completed] = notes.map(
    (m) => m.params as Record<string, unknown>,
  );
  const turnId = (started!.turn as { id: string }).id;
  const item = itemStarted!.item as { type: string; id: string };
  assert.equal(item.type, 'contextCompaction');
  assert.deepEqual(itemCompleted!.item, item);
  assert.deepEqual([itemStarted!.threadId, itemStarted!.turnId], [threadId, turnId]);
  assert.equal(typeof itemCompleted!.completedAtMs, 'number');
  const done = completed!.turn as { id: string; status: string; error: unknown };
  assert.deepEqual(
    [completed!.threadId, done.id, done.status, done.error],
    [threadId, turnId, 'completed', null],
  );
  return turnId;
}

test('compaction over the open WebSocket: a response.create frame, no new handshake, the conversation replaced', async (t) => {
  const access = chatgptToken();
  const client = await loggedIn(t, { accessToken: access });
  const threadId = await startThread(client, { developerInstructions: 'Be brief.' });
  assert.equal(await turn(client, threadId, 'first question'), 'Echo: first question');
  assert.equal(routed('responses.ws').length, 1);

  const { reply, notes } = await compact(client, threadId);
  assert.deepEqual(reply.result, {});
  // The reply comes before the compaction turn's first notification.
  const all = client.messages;
  const replyAt = all.findIndex((m) => m.id === reply.id && m.method === undefined);
  const startedAt = all.findIndex((m) => m.method === 'turn/started' && m === notes[0]);
  assert.ok(replyAt >= 0 && startedAt > replyAt, `reply at ${replyAt}, turn/started at ${startedAt}`);
  assertCompactionNotes(threadId, notes);

  // Same socket: still one handshake; the compaction is the second frame on it.
  assert.equal(routed('responses.ws').length, 1);
  assert.equal(routed('responses.http').length, 0);
  const frames = routed('responses.ws.create');
  assert.equal(frames.length, 2);
  assert.deepEqual(inputOf(frames[1]), [
    developer('Be brief.'),
    user('first question'),
    assistant('Echo: first question'),
    TRIGGER,
  ]);

  // The next turn sends the compacted conversation: the user messages, the summary, the
  // developer instructions re-injected, then the new message. The old answer is gone.
  assert.equal(await turn(client, threadId, 'second'), 'Echo: second');
  assert.deepEqual(inputOf(routed('responses.ws.create')[2]), [
    user('first question'),
    assistant('Compacted.'),
    developer('Be brief.'),
    user('second'),
  ]);
  assert.equal(routed('responses.ws').length, 1);
  assert.ok(!client.stderrText.includes(access));
});

test('compaction over HTTP after the WebSocket is refused: bounded retries, fallback, a POST with the trigger', async (t) => {
  const access = chatgptToken();
  const client = await loggedIn(t, { args: ['-c', 'gatehouse.stream_max_retries=1'], accessToken: access });
  backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 503 }, times: -1 });
  const threadId = await startThread(client);

  const { reply, notes } = await compact(client, threadId);
  assert.deepEqual(reply.result, {});
  const retry = notes.find((m) => m.method === 'error')!.params as {
    willRetry: boolean;
    error: { message: string };
  };
  assert.deepEqual([retry.willRetry, retry.error.message], [true, 'Reconnecting... 1/1']);
  const warning = notes.find((m) => m.method === 'warning')!.params as { message: string };
  assert.match(warning.message, /^Falling back from WebSockets to HTTPS transport\. unexpected status 503/);
  assertCompactionNotes(
    threadId,
    notes.filter((m) => m.method !== 'error' && m.method !== 'warning'),
  );

  // The prewarm and the two attempts were refused; the POST carried the trigger alone (an
  // empty conversation) with codex's headers and the credentials.
  assert.deepEqual(
    routed('responses.ws').map((r) => r.status),
    [503, 503, 503],
  );
  const posts = routed('responses.http');
  assert.equal(posts.length, 1);
  assert.deepEqual(inputOf(posts[0]), [TRIGGER]);
  assert.equal(posts[0]!.headers.authorization, `Bearer ${access}`);
  assert.equal(posts[0]!.headers['thread-id'], threadId);
  assert.equal(posts[0]!.headers['x-codex-beta-features'], 'remote_compaction_v2');

  // The thread stays on HTTP, with the summary as its conversation.
  assert.equal(await turn(client, threadId, 'after'), 'Echo: after');
  assert.deepEqual(inputOf(routed('responses.http')[1]), [assistant('Compacted.'), user('after')]);
  assert.equal(routed('responses.ws').length, 3);
});

test('compaction under API-key auth always POSTs', async (t) => {
  const client = await loggedIn(t, { apiKey: true });
  const threadId = await startThread(client);
  assert.equal(await turn(client, threadId, 'hi'), 'Echo: hi');
  const { notes } = await compact(client, threadId);
  assertCompactionNotes(threadId, notes);
  assert.equal(routed('responses.ws').length, 0);
  const posts = routed('responses.http');
  assert.equal(posts.length, 2);
  assert.equal(posts[1]!.headers.authorization, 'Bearer sk-local-test');
  assert.deepEqual(inputOf(posts[1]), [user('hi'), assistant('Echo: hi'), TRIGGER]);
});

test('a failed compaction: codex prefix, turn failed, the conversation kept', async (t) => {
  const client = await loggedIn(t, { args: ['-c', 'gatehouse.stream_max_retries=0'], apiKey: true });
  const threadId = await startThread(client);
  assert.equal(await turn(client, threadId, 'keep me'), 'Echo: keep me');
  backend.faults.add({
    route: 'responses.http',
    action: { kind: 'status', status: 400, body: 'bad compaction' },
  });
  const { notes } = await compact(client, threadId);
  assert.deepEqual(
    notes.map((m) => m.method),
    ['turn/started', 'item/started', 'error', 'turn/completed'],
  );
  const url = `${backend.chatgptBaseUrl}/codex/responses`;
  const text = `Error running remote compact task: unexpected status 400 Bad Request: bad compaction, url: ${url}`;
  const error = notes[2]!.params as { willRetry: boolean; error: { message: string } };
  assert.deepEqual([error.willRetry, error.error.message], [false, text]);
  const completed = (notes[3]!.params as { turn: { status: string; error: { message: string } } }).turn;
  assert.deepEqual([completed.status, completed.error.message], ['failed', text]);
  // Nothing was replaced: the next turn still sends the whole conversation.
  assert.equal(await turn(client, threadId, 'next'), 'Echo: next');
  assert.deepEqual(inputOf(routed('responses.http').at(-1)), [
    user('keep me'),
    assistant('Echo: keep me'),
    user('next'),
  ]);
});

test('thread/compact/start while a turn runs is refused; the turn is not disturbed', async (t) => {
  const client = await loggedIn(t);
  const threadId = await startThread(client);
  backend.faults.add({ route: 'responses.ws.create', action: { kind: 'slow', delayMs: 500 } });
  const reply = await client.request('turn/start', { threadId, input: [{ type: 'text', text: 'slow' }] });
  const turnId = (reply.result as { turn: { id: string } }).turn.id;
  const refused = await client.request('thread/compact/start', { threadId });
  assert.deepEqual(refused.error, {
    code: -32600,
    message: `a turn is already running on thread ${threadId}: interrupt it or wait for turn/completed`,
  });
  const completed = await client.readUntil(
    (m) => m.method === 'turn/completed' && (m.params as { turn: { id: string } }).turn.id === turnId,
    'turn/completed',
  );
  assert.equal((completed.params as { turn: { status: string } }).turn.status, 'completed');
  assert.equal(routed('responses.ws.create').length, 1);
});

test('realtime WebRTC call creation under ChatGPT auth: the scoped POST, then codex notifications', async (t) => {
  const access = chatgptToken();
  const client = await loggedIn(t, { accessToken: access });
  const threadId = await startThread(client);
  const offer = 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=offer\r\n';
  const reply = await client.request('thread/realtime/start', {
    threadId,
    outputModality: 'audio',
    prompt: 'Talk like a pirate.',
    transport: { type: 'webrtc', sdp: offer },
    voice: 'marin',
  });
  assert.deepEqual(reply.result, {});
  const notes: RpcMessage[] = [];
  while (notes.at(-1)?.method !== 'thread/realtime/closed') {
    const m = await client.next();
    if (m.method) notes.push(m);
  }
  assert.deepEqual(
    notes.map((m) => m.method),
    ['thread/realtime/started', 'thread/realtime/sdp', 'thread/realtime/error', 'thread/realtime/closed'],
  );
  assert.deepEqual(notes[0]!.params, { threadId, realtimeSessionId: threadId, version: 'v1' });
  assert.deepEqual(notes[1]!.params, { threadId, sdp: LOCAL_ANSWER_SDP });
  assert.match(
    (notes[2]!.params as { message: string }).message,
    /sideband WebSocket is not supported by Gatehouse.*\(call call_[0-9a-f]+\)$/,
  );
  assert.deepEqual(notes[3]!.params, { threadId, reason: 'error' });

  const calls = routed('realtime.calls');
  assert.equal(calls.length, 1);
  const call = calls[0]!;
  assert.deepEqual(
    [call.method, call.path, call.status],
    ['POST', '/backend-api/codex/realtime/calls?intent=quicksilver&architecture=avas', 201],
  );
  assert.equal(call.headers.authorization, `Bearer ${access}`);
  assert.equal(call.headers['chatgpt-account-id'], 'acct-1');
  assert.equal(call.headers.originator, 'gatehouse_test');
  assert.match(call.headers['user-agent'] ?? '', /^gatehouse_test\/0\.169\.0 /);
  assert.equal(call.headers['x-session-id'], threadId);
  assert.equal(call.headers['openai-alpha'], 'quicksilver=v1');
  assert.equal(call.headers['content-type'], 'application/json');
  assert.deepEqual(call.body, {
    sdp: offer,
    session: {
      type: 'realtime',
      model: 'gpt-realtime-1.5',
      instructions: 'Talk like a pirate.',
      output_modalities: ['audio'],
    },
  });
  // Only the call: no Responses traffic.
  assert.deepEqual(
    outbound().map((r) => r.route),
    ['realtime.calls'],
  );
});

test('realtime: a refused call creation is one thread/realtime/error with the failure text', async (t) => {
  const client = await loggedIn(t);
  const threadId = await startThread(client);
  backend.faults.add({ route: 'realtime.calls', action: { kind: 'status', status: 503 } });
  const reply = await client.request('thread/realtime/start', {
    threadId,
    outputModality: 'text',
    version: 'v2',
    realtimeSessionId: 'voice-1',
    transport: { type: 'webrtc', sdp: 'v=0\r\n' },
  });
  assert.deepEqual(reply.result, {});
  const error = await client.readUntilNotification('thread/realtime/error');
  assert.deepEqual(error.params, {
    threadId,
    message: `unexpected status 503 Service Unavailable: {"detail":"Service Unavailable"}, url: ${backend.chatgptBaseUrl}/codex/realtime/calls`,
  });
  await client.expectNoOutput(200);
  assert.ok(!client.messages.some((m) => m.method === 'thread/realtime/started'));
  const call = routed('realtime.calls')[0]!;
  assert.equal(call.headers['x-session-id'], 'voice-1');
  assert.equal(call.headers['openai-alpha'], undefined);
});

test('realtime over the websocket transport under ChatGPT auth is refused as codex refuses it; nothing leaves', async (t) => {
  const client = await loggedIn(t);
  const threadId = await startThread(client);
  for (const transport of [undefined, null, { type: 'websocket' }]) {
    const reply = await client.request('thread/realtime/start', {
      threadId,
      outputModality: 'audio',
      ...(transport === undefined ? {} : { transport }),
    });
    assert.deepEqual(reply.result, {});
    const error = await client.readUntilNotification('thread/realtime/error');
    assert.deepEqual(error.params, { threadId, message: 'realtime conversation requires API key auth' });
  }
  await client.expectNoOutput(200);
  assert.deepEqual(outbound(), []);
});

test('realtime under API-key auth and existingCall: documented Gatehouse refusals, nothing leaves', async (t) => {
  const client = await loggedIn(t, { apiKey: true });
  const threadId = await startThread(client);
  await client.request('thread/realtime/start', {
    threadId,
    outputModality: 'audio',
    transport: { type: 'webrtc', sdp: 'v=0\r\n' },
  });
  const apiKey = await client.readUntilNotification('thread/realtime/error');
  assert.match(
    (apiKey.params as { message: string }).message,
    /^realtime conversations under API-key auth are not supported by Gatehouse/,
  );
  const chatgpt = await loggedIn(t);
  const other = await startThread(chatgpt);
  await chatgpt.request('thread/realtime/start', {
    threadId: other,
    outputModality: 'audio',
    transport: { type: 'existingCall', callId: 'rtc_123' },
  });
  const existing = await chatgpt.readUntilNotification('thread/realtime/error');
  assert.match(
    (existing.params as { message: string }).message,
    /^joining an existing realtime call is not supported by Gatehouse/,
  );
  assert.equal(routed('realtime.calls').length, 0);
});

test('thread/realtime/start needs experimentalApi; thread/compact/start does not', async (t) => {
  // chatgptAuthTokens is itself experimental: an API key logs this client in.
  const client = await loggedIn(t, { experimentalApi: false, apiKey: true });
  const threadId = await startThread(client);
  const gated = await client.request('thread/realtime/start', { threadId, outputModality: 'audio' });
  assert.deepEqual(gated.error, {
    code: -32600,
    message: 'thread/realtime/start requires experimentalApi capability',
  });
  const { reply } = await compact(client, threadId);
  assert.deepEqual(reply.result, {});
});

test('bad params get serde-style errors; unknown and malformed thread ids are refused', async (t) => {
  const client = await loggedIn(t);
  const cases: [string, unknown, string][] = [
    ['thread/compact/start', {}, 'Invalid request: missing field `threadId`'],
    [
      'thread/compact/start',
      { threadId: 5 },
      'Invalid request: invalid type: integer `5`, expected a string',
    ],
    ['thread/realtime/start', { threadId: 'x' }, 'Invalid request: missing field `outputModality`'],
    [
      'thread/realtime/start',
      { threadId: 'x', outputModality: 'video' },
      'Invalid request: unknown variant `video`, expected `text` or `audio`',
    ],
    [
      'thread/realtime/start',
      { threadId: 'x', outputModality: 'audio', transport: { type: 'webrtc' } },
      'Invalid request: missing field `sdp`',
    ],
    [
      'thread/realtime/start',
      { threadId: 'x', outputModality: 'audio', version: 'v9' },
      'Invalid request: unknown variant `v9`, expected one of `v1`, `v2`, `v3`',
    ],
  ];
  for (const [method, params, message] of cases) {
    const reply = await client.request(method, params);
    assert.deepEqual(reply.error, { code: -32600, message }, `${method} ${JSON.stringify(params)}`);
  }
  const unknown = '0190a0b0-0000-7000-8000-000000000000';
  for (const method of ['thread/compact/start', 'thread/realtime/start']) {
    const missing = await client.request(method, { threadId: unknown, outputModality: 'audio' });
    assert.deepEqual(missing.error, { code: -32600, message: `thread not found: ${unknown}` });
    const malformed = await client.request(method, { threadId: 'nope', outputModality: 'audio' });
    assert.deepEqual(malformed.error, {
      code: -32600,
      message:
        'invalid thread id: invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `n` at 1',
    });
  }
  assert.deepEqual(outbound(), []);
});
