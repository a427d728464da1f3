/**
 * The Responses relay (Relay handlers, thread actors, turn machines, upstream actor) against a
 * small real backend on loopback (http:// and ws://) that streams SSE / WebSocket events, refuses
 * bearers, cuts streams and stalls on demand. No broker: the handlers run on a minimal set of
 * services that record notifications. The AuthSource is a counting stand-in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { ActorSystem } from '../../src/runtime/actor-system.js';
import { silentLogger } from '../../src/util/logger.js';
import { DEFAULT_CODEX_KEYS, DEFAULT_SETTINGS, type GatehouseSettings } from '../../src/config/config.js';
import { BrokerError, type ProtocolError } from '../../src/protocol/errors.js';
import type { BrokerServices } from '../../src/broker/services.js';
import type { HandlerContext } from '../../src/broker/handlers.js';
import type { AuthSource, UpstreamAuth } from '../../src/upstream/auth-source.js';
import { Relay } from '../../src/relay/handlers.js';
import { threadAddress } from '../../actors/thread/thread.actor.js';

type T = { after(fn: () => unknown): void };
type Route = 'ws' | 'http';
type Fault =
  | { route: Route; kind: 'status'; status: number; body?: string }
  | { route: Route; kind: 'cut'; afterEvents: number }
  | { route: Route; kind: 'stall' };

interface Seen {
  route: Route;
  status: number;
  headers: IncomingMessage['headers'];
  body?: Record<string, unknown>;
}

/** The events of one response: an echo of the last user text, in three deltas. */
function eventsFor(body: { input?: { role?: string; content?: { text?: string }[] }[] }) {
  const user = [...(body.input ?? [])].reverse().find((i) => i.role === 'user');
  const text = `Echo: ${user?.content?.map((c) => c.text ?? '').join('') ?? ''}`;
  const third = Math.ceil(text.length / 3);
  const deltas = [text.slice(0, third), text.slice(third, 2 * third), text.slice(2 * third)];
  return [
    { type: 'response.created', response: { id: 'resp_1' } },
    { type: 'response.output_item.added', item: { type: 'message', id: 'msg_1', content: [] } },
    ...deltas.map((delta) => ({ type: 'response.output_text.delta', item_id: 'msg_1', delta })),
    {
      type: 'response.output_item.done',
      item: { type: 'message', id: 'msg_1', content: [{ type: 'output_text', text }] },
    },
    { type: 'response.completed', response: { id: 'resp_1', usage: { total_tokens: 3 } } },
  ];
}

async function fakeBackend(t: T) {
  const good = new Set(['good-token', 'sk-key']);
  const seen: Seen[] = [];
  const faults: Fault[] = [];
  const sockets = new Set<Socket>();
  const open = new Set<WebSocket>();
  const take = (route: Route) => {
    const i = faults.findIndex((f) => f.route === route);
    return i < 0 ? undefined : faults.splice(i, 1)[0];
  };
  const bearerOk = (req: IncomingMessage) =>
    good.has((req.headers.authorization ?? '').replace(/^Bearer /, ''));
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>;
      const fault = take('http');
      const status = fault?.kind === 'status' ? fault.status : bearerOk(req) ? 200 : 401;
      seen.push({ route: 'http', status, headers: req.headers, body });
      if (status !== 200) {
        const text = fault?.kind === 'status' ? (fault.body ?? 'scripted') : '{"detail":"Unauthorized"}';
        res.writeHead(status).end(text);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const events = eventsFor(body);
      const upTo = fault?.kind === 'cut' ? fault.afterEvents : fault?.kind === 'stall' ? 3 : events.length;
      for (const e of events.slice(0, upTo)) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      if (fault?.kind === 'cut') res.destroy();
      else if (fault?.kind !== 'stall') res.end();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const fault = faults.find((f) => f.route === 'ws' && f.kind === 'status') ? take('ws') : undefined;
    const status = fault?.kind === 'status' ? fault.status : bearerOk(req) ? 101 : 401;
    seen.push({ route: 'ws', status, headers: req.headers });
    if (status !== 101) {
      socket.end(`HTTP/1.1 ${status} Refused\r\nconnection: close\r\n\r\n{"detail":"refused ${status}"}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      open.add(ws);
      ws.on('close', () => open.delete(ws));
      ws.on('message', (data) => {
        const frame = JSON.parse((data as Buffer).toString()) as Record<string, unknown>;
        seen.push({ route: 'ws', status: 0, headers: {}, body: frame });
        const events = eventsFor(frame);
        const streamFault = take('ws');
        const upTo =
          streamFault?.kind === 'cut'
            ? streamFault.afterEvents
            : streamFault?.kind === 'stall'
              ? 3
              : events.length;
        for (const e of events.slice(0, upTo)) ws.send(JSON.stringify(e));
        if (streamFault?.kind === 'cut') ws.terminate();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  t.after(async () => {
    for (const ws of open) ws.terminate();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const handshakes = () => seen.filter((s) => s.route === 'ws' && s.status !== 0);
  const frames = () => seen.filter((s) => s.route === 'ws' && s.status === 0);
  const posts = () => seen.filter((s) => s.route === 'http');
  return {
    base: `http://127.0.0.1:${port}/backend-api`,
    seen,
    faults,
    open,
    sockets,
    handshakes,
    frames,
    posts,
  };
}

class CountingAuth implements AuthSource {
  refreshes = 0;
  auth: UpstreamAuth | null = {
    mode: 'chatgptAuthTokens',
    bearer: 'good-token',
    accountId: 'acct-1',
    generation: 1,
  };
  refreshTo: string | Error = 'good-token';

  current(): Promise<UpstreamAuth | null> {
    return Promise.resolve(this.auth);
  }

  unauthorized(failed: UpstreamAuth): Promise<UpstreamAuth> {
    this.refreshes++;
    if (this.refreshTo instanceof Error) return Promise.reject(this.refreshTo);
    this.auth = { ...failed, bearer: this.refreshTo, generation: failed.generation + 1 };
    return Promise.resolve(this.auth);
  }
}

interface Note {
  connectionId: string;
  method: string;
  params: Record<string, unknown>;
}

function relayHarness(t: T, base: string, auth: AuthSource, settings: Partial<GatehouseSettings> = {}) {
  const system = new ActorSystem({ log: silentLogger() });
  const notes: Note[] = [];
  const gone = new Set<string>();
  const services: BrokerServices = {
    system,
    log: silentLogger(),
    settings: { ...DEFAULT_SETTINGS, retryBaseDelayMs: 1, streamMaxRetries: 2, ...settings },
    codex: { ...DEFAULT_CODEX_KEYS, chatgptBaseUrl: base, openaiBaseUrl: `${base}/v1` },
    codexHome: '/tmp',
    env: {},
    secureContext: undefined,
    auth,
    backend: {
      getJson: () => Promise.reject(new Error('unused')),
      postForm: () => Promise.reject(new Error('unused')),
    },
    notify: (connectionId, method, params) => {
      if (gone.has(connectionId)) return Promise.reject(new BrokerError('ACTOR_NOT_FOUND', 'gone'));
      notes.push({ connectionId, method, params: params as Record<string, unknown> });
      return Promise.resolve(true);
    },
    broadcast: () => Promise.resolve(),
    setAuthenticated: () => Promise.resolve(),
    // No connection here says requestAttestation, so nothing is attested.
    session: () => undefined,
    lifecycle: () => Promise.reject(new Error('unused')),
    crypto: () => Promise.reject(new Error('unused')),
    request: () => Promise.reject(new Error('unused')),
    userAgent: (name, version) => `${name}/0.169.0 (Test 1; x86_64) test (${name}; ${version})`,
    originator: (name) => name,
  };
  const relay = new Relay(services);
  const handlers = relay.handlers() as Record<string, (p: unknown, c: HandlerContext) => unknown>;
  t.after(() => system.stopAll());

  /** Runs a handler like the broker: reply first, follow-ups a macrotask later. */
  async function call(method: string, params: unknown, connectionId = '1') {
    const followUps: (() => unknown)[] = [];
    const ctx: HandlerContext = {
      connectionId,
      session: {
        clientName: 'host_app',
        clientVersion: '2.0',
        experimentalApi: false,
        requestAttestation: false,
        optOutNotificationMethods: [],
      },
      after: (work) => void followUps.push(work),
    };
    try {
      const result = (await handlers[method]!(params, ctx)) as Record<string, unknown>;
      setImmediate(() => followUps.forEach((w) => void w()));
      return { result };
    } catch (e) {
      return { error: { code: (e as ProtocolError).code, message: (e as Error).message } };
    }
  }

  async function until<X>(find: () => X | undefined, what: string, ms = 5_000): Promise<X> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}: ${JSON.stringify(notes.map((n) => n.method))}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  const completed = (turnId: string) =>
    until(
      () =>
        notes.find((n) => n.method === 'turn/completed' && (n.params.turn as { id: string }).id === turnId),
      `turn/completed ${turnId}`,
    );

  async function thread(connectionId = '1'): Promise<string> {
    const { result } = await call('thread/start', {}, connectionId);
    return (result!.thread as { id: string }).id;
  }

  async function turn(threadId: string, text: string, connectionId = '1'): Promise<string> {
    const reply = await call('turn/start', { threadId, input: [{ type: 'text', text }] }, connectionId);
    assert.equal(
      (reply.result?.turn as { status: string } | undefined)?.status,
      'inProgress',
      JSON.stringify(reply),
    );
    return (reply.result!.turn as { id: string }).id;
  }

  return { system, relay, notes, gone, call, until, completed, thread, turn };
}

const methodsOf = (notes: Note[]) => notes.map((n) => n.method);

test('thread/start answers codex shapes and announces thread/started after the reply', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  const { result } = await h.call('thread/start', {
    model: 'gpt-test',
    cwd: '/work',
    approvalPolicy: 'on-request',
  });
  const thread = result!.thread as Record<string, unknown>;
  assert.match(thread.id as string, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(
    { ...result, thread: undefined },
    {
      thread: undefined,
      model: 'gpt-test',
      modelProvider: 'openai',
      serviceTier: null,
      cwd: '/work',
      approvalPolicy: 'never',
      approvalsReviewer: 'user',
      sandbox: { type: 'readOnly' },
      reasoningEffort: null,
    },
  );
  assert.equal(thread.sessionId, thread.id);
  assert.deepEqual(thread.status, { type: 'idle' });
  assert.deepEqual(
    [thread.source, thread.cliVersion, thread.ephemeral, thread.turns],
    ['appServer', '0.169.0', true, []],
  );
  assert.equal(h.notes.length, 0, 'nothing before the reply is out');
  const started = await h.until(() => h.notes.find((n) => n.method === 'thread/started'), 'thread/started');
  assert.deepEqual(started.params, { thread });
});

test('a text turn over the Responses WebSocket: notifications in order, codex headers, socket reused', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  const threadId = await h.thread();
  const reply = await h.call('turn/start', {
    threadId,
    input: [{ type: 'text', text: 'hello relay', text_elements: [] }],
  });
  const turn = reply.result!.turn as Record<string, unknown>;
  assert.deepEqual(
    { ...turn, id: 'x' },
    {
      id: 'x',
      items: [],
      itemsView: 'notLoaded',
      status: 'inProgress',
      error: null,
      startedAt: null,
      completedAt: null,
      durationMs: null,
    },
  );
  const turnId = turn.id as string;
  await h.completed(turnId);
  const notes = h.notes.filter((n) => n.method !== 'thread/started');
  assert.deepEqual(methodsOf(notes), [
    'turn/started',
    'item/started',
    'item/agentMessage/delta',
    'item/agentMessage/delta',
    'item/agentMessage/delta',
    'item/completed',
    'turn/completed',
  ]);
  const [started, itemStarted, , , , itemCompleted, done] = notes.map((n) => n.params);
  assert.equal((started!.turn as { startedAt: number }).startedAt, Math.floor(Date.now() / 1000));
  assert.deepEqual(
    { ...itemStarted, startedAtMs: 0 },
    {
      item: { type: 'agentMessage', id: 'msg_1', text: '' },
      threadId,
      turnId,
      startedAtMs: 0,
    },
  );
  assert.equal(
    notes
      .slice(2, 5)
      .map((n) => n.params.delta)
      .join(''),
    'Echo: hello relay',
  );
  assert.deepEqual(notes[2]!.params.itemId, 'msg_1');
  assert.deepEqual(itemCompleted!.item, { type: 'agentMessage', id: 'msg_1', text: 'Echo: hello relay' });
  const finished = done!.turn as Record<string, unknown>;
  assert.deepEqual(
    [done!.threadId, finished.id, finished.status, finished.error],
    [threadId, turnId, 'completed', null],
  );
  assert.equal(typeof finished.durationMs, 'number');

  // Spec D.4 headers on the handshake (the prewarm opened it, the attempt reused it).
  assert.equal(backend.handshakes().length, 1);
  const headers = backend.handshakes()[0]!.headers;
  assert.equal(headers.authorization, 'Bearer good-token');
  assert.equal(headers['chatgpt-account-id'], 'acct-1');
  assert.equal(headers['user-agent'], 'host_app/0.169.0 (Test 1; x86_64) test (host_app; 2.0)');
  assert.equal(headers.originator, 'host_app');
  assert.equal(headers['openai-beta'], 'responses_websockets=2026-02-06');
  assert.equal(headers.version, '0.169.0');
  assert.equal(headers['x-codex-beta-features'], 'remote_compaction_v2');
  assert.equal(headers['x-client-request-id'], threadId);
  assert.equal(headers['session-id'], threadId);
  assert.equal(headers['thread-id'], threadId);
  assert.equal(headers['x-codex-window-id'], `${threadId}:0`);
  assert.deepEqual(JSON.parse(headers['x-codex-turn-metadata'] as string), { turn_id: turnId });
  assert.equal(headers['x-codex-routing-hint'], 'model=gpt-5.1-codex');
  const frame = backend.frames()[0]!.body!;
  assert.equal(frame.type, 'response.create');
  assert.equal(frame.model, 'gpt-5.1-codex');
  assert.equal(frame.stream, true);
  assert.equal(frame.store, false);

  // A second turn: same socket, and the conversation so far goes with it.
  await h.completed(await h.turn(threadId, 'again'));
  assert.equal(backend.handshakes().length, 1);
  const input = backend.frames()[1]!.body!.input as { role: string; content: { text: string }[] }[];
  assert.deepEqual(
    input.map((i) => [i.role, i.content[0]!.text]),
    [
      ['user', 'hello relay'],
      ['assistant', 'Echo: hello relay'],
      ['user', 'again'],
    ],
  );
});

test('retries announced as `Reconnecting... n/N`, one-way fallback to HTTP, then the turn fails with the last text', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  const threadId = await h.thread();
  for (let i = 0; i < 4; i++) backend.faults.push({ route: 'ws', kind: 'status', status: 503 });
  for (let i = 0; i < 3; i++)
    backend.faults.push({ route: 'http', kind: 'status', status: 500, body: 'backend down' });
  const turnId = await h.turn(threadId, 'doomed');
  await h.completed(turnId);
  const url = `${backend.base}/codex/responses`;
  const wsText = `unexpected status 503 Service Unavailable: {"detail":"refused 503"}, url: ${url.replace('http:', 'ws:')}`;
  const httpText = `unexpected status 500 Internal Server Error: backend down, url: ${url}`;
  const notes = h.notes.filter((n) => ['error', 'warning', 'turn/completed'].includes(n.method));
  assert.deepEqual(
    notes.map((n) =>
      n.method === 'error'
        ? ['error', (n.params.error as { message: string }).message, n.params.willRetry]
        : n.method === 'warning'
          ? ['warning', n.params.message]
          : ['turn/completed', (n.params.turn as { status: string }).status],
    ),
    [
      ['error', 'Reconnecting... 1/2', true],
      ['error', 'Reconnecting... 2/2', true],
      ['warning', `Falling back from WebSockets to HTTPS transport. ${wsText}`],
      ['error', 'Reconnecting... 1/2', true],
      ['error', 'Reconnecting... 2/2', true],
      ['error', httpText, false],
      ['turn/completed', 'failed'],
    ],
  );
  assert.deepEqual(notes[0]!.params, {
    error: {
      message: 'Reconnecting... 1/2',
      codexErrorInfo: { responseStreamConnectionFailed: { httpStatusCode: 503 } },
      additionalDetails: wsText,
    },
    willRetry: true,
    threadId,
    turnId,
  });
  assert.deepEqual(notes[2]!.params.threadId, threadId);
  assert.deepEqual((notes.at(-1)!.params.turn as { error: unknown }).error, {
    message: httpText,
    codexErrorInfo: { responseStreamConnectionFailed: { httpStatusCode: 500 } },
    additionalDetails: null,
  });
  // prewarm + first attempt + 2 retries on the WebSocket; first attempt + 2 retries over HTTP.
  assert.equal(backend.handshakes().length, 4);
  assert.equal(backend.posts().length, 3);
  const post = backend.posts()[0]!.headers;
  assert.equal(post.accept, 'text/event-stream');
  assert.equal(post['x-openai-internal-codex-responses-lite'], 'true');
  assert.equal(post['thread-id'], threadId);

  // The fallback is for the rest of the thread: the next turn goes straight to HTTP.
  await h.completed(await h.turn(threadId, 'next'));
  assert.equal(backend.handshakes().length, 4);
  assert.equal(backend.posts().length, 4);
  assert.equal((h.notes.at(-1)!.params.turn as { status: string }).status, 'completed');
});

test('a stream cut mid-turn is a failed attempt: retried, and the turn completes', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  const threadId = await h.thread();
  backend.faults.push({ route: 'ws', kind: 'cut', afterEvents: 3 });
  const turnId = await h.turn(threadId, 'cut me');
  const done = await h.completed(turnId);
  assert.equal((done.params.turn as { status: string }).status, 'completed');
  const retry = h.notes.find((n) => n.method === 'error')!;
  assert.deepEqual(retry.params.error, {
    message: 'Reconnecting... 1/2',
    codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: null } },
    additionalDetails:
      'stream disconnected before completion: websocket closed by server before response.completed',
  });
  assert.equal(backend.handshakes().length, 2, 'the cut socket is replaced');
  const completedItems = h.notes.filter((n) => n.method === 'item/completed');
  assert.equal(completedItems.length, 1);
  assert.equal((completedItems[0]!.params.item as { text: string }).text, 'Echo: cut me');
});

test('401 on the handshake: one refresh, the same attempt retried, no retry announced', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  auth.auth = { mode: 'chatgptAuthTokens', bearer: 'stale', accountId: 'acct-1', generation: 1 };
  const h = relayHarness(t, backend.base, auth);
  const done = await h.completed(await h.turn(await h.thread(), 'hi'));
  assert.equal((done.params.turn as { status: string }).status, 'completed');
  assert.equal(auth.refreshes, 1);
  assert.deepEqual(
    backend.handshakes().map((s) => [s.status, s.headers.authorization]),
    [
      [401, 'Bearer stale'],
      [101, 'Bearer good-token'],
    ],
  );
  assert.ok(!h.notes.some((n) => n.method === 'error'));
});

test('a host that keeps failing the refresh: every attempt asks once, the turn fails with the refresh text', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  auth.auth = { mode: 'chatgptAuthTokens', bearer: 'stale', accountId: 'acct-1', generation: 1 };
  auth.refreshTo = new Error('auth refresh request failed: code=-32001');
  const h = relayHarness(t, backend.base, auth, { streamMaxRetries: 1 });
  const done = await h.completed(await h.turn(await h.thread(), 'doomed'));
  const turn = done.params.turn as { status: string; error: { message: string; codexErrorInfo: unknown } };
  assert.deepEqual(
    [turn.status, turn.error.message, turn.error.codexErrorInfo],
    ['failed', 'auth refresh request failed: code=-32001', 'unauthorized'],
  );
  // prewarm + 2 WebSocket attempts + 2 HTTP attempts (spec C.8: 13 with 5 retries).
  assert.equal(auth.refreshes, 5);
  assert.equal(
    (h.notes.find((n) => n.method === 'warning')!.params as { message: string }).message,
    'Falling back from WebSockets to HTTPS transport. auth refresh request failed: code=-32001',
  );
});

test('turn/interrupt: answered, then turn/completed interrupted; the stream and its socket are dropped', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  const threadId = await h.thread();
  backend.faults.push({ route: 'ws', kind: 'stall' });
  const turnId = await h.turn(threadId, 'slow');
  await h.until(() => h.notes.find((n) => n.method === 'item/agentMessage/delta'), 'a delta');

  const busy = await h.call('turn/start', { threadId, input: [{ type: 'text', text: 'second' }] });
  assert.deepEqual(busy.error, {
    code: -32600,
    message: `a turn is already running on thread ${threadId}: interrupt it or wait for turn/completed`,
  });
  const wrong = await h.call('turn/interrupt', { threadId, turnId: 'other' });
  assert.deepEqual(wrong.error, {
    code: -32600,
    message: `expected active turn id other but found ${turnId}`,
  });

  const count = h.notes.length;
  assert.deepEqual(await h.call('turn/interrupt', { threadId, turnId }), { result: {} });
  assert.equal(h.notes.length, count, 'turn/completed comes after the reply');
  const done = await h.completed(turnId);
  assert.deepEqual((done.params.turn as { status: string; error: unknown }).status, 'interrupted');
  assert.equal((done.params.turn as { error: unknown }).error, null);
  while (backend.open.size > 0) await new Promise((r) => setTimeout(r, 5));

  assert.deepEqual((await h.call('turn/interrupt', { threadId, turnId })).error, {
    code: -32600,
    message: 'no active turn to interrupt',
  });
  // The thread goes on with a new socket.
  const next = await h.completed(await h.turn(threadId, 'after'));
  assert.equal((next.params.turn as { status: string }).status, 'completed');
});

test('unknown or malformed thread ids, and non-text input, are refused with -32600', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  assert.deepEqual((await h.call('turn/start', { threadId: 'nope', input: [] })).error, {
    code: -32600,
    message:
      'invalid thread id: invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `n` at 1',
  });
  const unknown = '019a0000-0000-7000-8000-000000000000';
  assert.deepEqual((await h.call('turn/interrupt', { threadId: unknown, turnId: 'x' })).error, {
    code: -32600,
    message: `thread not found: ${unknown}`,
  });
  const threadId = await h.thread();
  assert.deepEqual(
    (await h.call('turn/start', { threadId, input: [{ type: 'localImage', path: '/tmp/a.png' }] })).error,
    { code: -32600, message: 'turn/start only supports text input; localImage input is not supported' },
  );
  assert.deepEqual((await h.call('turn/interrupt', { threadId, turnId: '' })).result, {});
});

test('without credentials the turn fails at once with a clear message', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  auth.auth = null;
  const h = relayHarness(t, backend.base, auth);
  const done = await h.completed(await h.turn(await h.thread(), 'hi'));
  const message = 'not logged in: log in with account/login/start first';
  assert.deepEqual(done.params.turn && (done.params.turn as { error: unknown }).error, {
    message,
    codexErrorInfo: 'unauthorized',
    additionalDetails: null,
  });
  assert.deepEqual(methodsOf(h.notes.filter((n) => n.method !== 'thread/started')), [
    'turn/started',
    'error',
    'turn/completed',
  ]);
  assert.equal(backend.seen.length, 0);
});

test('API-key auth: HTTP only, to openai_base_url/responses, no fallback', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  auth.auth = { mode: 'apikey', bearer: 'sk-key', accountId: null, generation: 1 };
  const h = relayHarness(t, backend.base, auth);
  const done = await h.completed(await h.turn(await h.thread(), 'key'));
  assert.equal((done.params.turn as { status: string }).status, 'completed');
  assert.equal(backend.handshakes().length, 0);
  assert.equal(backend.posts().length, 1);
  assert.equal(backend.posts()[0]!.headers.authorization, 'Bearer sk-key');
});

test('a closed connection stops its thread: stream aborted, socket closed, no more notifications', async (t) => {
  const backend = await fakeBackend(t);
  const h = relayHarness(t, backend.base, new CountingAuth());
  const threadId = await h.thread('9');
  backend.faults.push({ route: 'ws', kind: 'stall' });
  await h.turn(threadId, 'slow', '9');
  await h.until(() => h.notes.find((n) => n.method === 'item/agentMessage/delta'), 'a delta');
  h.gone.add('9');
  h.relay.connectionClosed('9');
  await h.until(() => (h.system.has(threadAddress(threadId)) ? undefined : true), 'the thread to stop');
  while (backend.open.size > 0) await new Promise((r) => setTimeout(r, 5));
  const count = h.notes.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.notes.length, count);
  assert.deepEqual((await h.call('turn/start', { threadId, input: [] }, '10')).error, {
    code: -32600,
    message: `thread not found: ${threadId}`,
  });
});

test('stopping the actor system mid-stream leaves no socket open and no timer running', async (t) => {
  const backend = await fakeBackend(t);
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const h = relayHarness(t, backend.base, new CountingAuth(), { streamIdleTimeoutMs: 60_000 });
  const threadId = await h.thread();
  backend.faults.push({ route: 'ws', kind: 'stall' });
  await h.turn(threadId, 'slow');
  await h.until(() => h.notes.find((n) => n.method === 'item/agentMessage/delta'), 'a delta');
  h.system.stopAll();
  while (backend.open.size > 0 || backend.sockets.size > 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
  const timersAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  assert.ok(timersAfter <= timersBefore, `timers before ${timersBefore}, after ${timersAfter}`);
});
