/**
 * The upstream actor against a real loopback server (plain http:// and ws://): the 401 loop of
 * spec C.8 on the Responses POST, on the WebSocket handshake and on the JSON GET, deadlines,
 * the scoped-headers hook, and clean shutdown. The AuthSource is a stand-in that counts calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { ActorSystem } from '../../src/runtime/actor-system.js';
import type { Message } from '../../src/runtime/actor.js';
import { silentLogger } from '../../src/util/logger.js';
import { isBrokerError } from '../../src/protocol/errors.js';
import type { AuthSource, UpstreamAuth } from '../../src/upstream/auth-source.js';
import type { ScopedRequest } from '../../src/upstream/scoped-request.js';
import { trustedContext, TrustConfigError } from '../../src/upstream/trust.js';
import {
  UPSTREAM_ACTOR,
  UpstreamMessage,
  upstreamBehaviour,
  type ResponsesEndBody,
  type ResponsesEventBody,
  type ResponsesStartBody,
  type UpstreamDeps,
} from '../../actors/upstream/upstream.actor.js';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions } from 'node:tls';
import { createLocalCertificates } from '../../src/backend/tls-ca.js';

type T = { after(fn: () => unknown): void };

/** Credentials `old` until a refresh, then `new`; counts every call. */
class CountingAuth implements AuthSource {
  currentCalls = 0;
  refreshes: UpstreamAuth[] = [];
  auth: UpstreamAuth | null = {
    mode: 'chatgptAuthTokens',
    bearer: 'old-token',
    accountId: 'acct-1',
    generation: 1,
  };
  refreshError: Error | undefined;

  current(): Promise<UpstreamAuth | null> {
    this.currentCalls++;
    return Promise.resolve(this.auth);
  }

  unauthorized(failed: UpstreamAuth): Promise<UpstreamAuth> {
    this.refreshes.push(failed);
    if (this.refreshError) return Promise.reject(this.refreshError);
    this.auth = { ...failed, bearer: 'new-token', generation: failed.generation + 1 };
    return Promise.resolve(this.auth);
  }
}

interface Seen {
  route: 'ws' | 'http' | 'get';
  status: number;
  headers: IncomingMessage['headers'];
  body?: string;
}

const EVENTS = [
  { type: 'response.created', response: { id: 'resp_1' } },
  { type: 'response.output_item.added', item: { type: 'message', id: 'msg_1', content: [] } },
  { type: 'response.output_text.delta', item_id: 'msg_1', delta: 'Hi' },
  {
    type: 'response.output_item.done',
    item: { type: 'message', id: 'msg_1', content: [{ type: 'output_text', text: 'Hi' }] },
  },
  { type: 'response.completed', response: { id: 'resp_1', usage: {} } },
];

/** A backend that accepts only `good` bearers, answers SSE / WS frames, or misbehaves on demand. */
async function fakeBackend(t: T, options: { good?: string[] } = {}) {
  const good = new Set(options.good ?? ['new-token']);
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const open = new Set<WebSocket>();
  const state = { stallHeaders: false, stallBody: false, getBody: '{"ok":true}' };
  const authorized = (req: IncomingMessage) =>
    good.has((req.headers.authorization ?? '').replace(/^Bearer /, ''));
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const route = req.method === 'GET' ? 'get' : 'http';
      const status = authorized(req) ? 200 : 401;
      seen.push({ route, status, headers: req.headers, body: Buffer.concat(chunks).toString() });
      if (state.stallHeaders) return; // never answers
      if (status === 401) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"detail":"Unauthorized"}');
        return;
      }
      if (route === 'get') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(state.getBody);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (state.stallBody) {
        res.write(`event: response.created\ndata: ${JSON.stringify(EVENTS[0])}\n\n`);
        return;
      }
      for (const e of EVENTS) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      res.end();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (!authorized(req)) {
      seen.push({ route: 'ws', status: 401, headers: req.headers });
      socket.end(
        'HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"detail":"Unauthorized"}',
      );
      return;
    }
    seen.push({ route: 'ws', status: 101, headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => {
      open.add(ws);
      ws.on('close', () => open.delete(ws));
      ws.on('message', (data) => {
        const frame = JSON.parse((data as Buffer).toString()) as { type: string };
        assert.equal(frame.type, 'response.create');
        const events = state.stallBody ? EVENTS.slice(0, 1) : EVENTS;
        for (const e of events) ws.send(JSON.stringify(e));
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
  return { base: `http://127.0.0.1:${port}/backend-api`, seen, state, open, sockets };
}

/** An actor system with the upstream actor and a mailbox that records what comes back. */
function harness(t: T, base: string, auth: AuthSource, overrides: Partial<UpstreamDeps> = {}) {
  const system = new ActorSystem({ log: silentLogger() });
  const scoped: ScopedRequest[] = [];
  system.spawn(UPSTREAM_ACTOR, () =>
    upstreamBehaviour({
      log: silentLogger(),
      auth,
      chatgptBaseUrl: base,
      openaiBaseUrl: `${base}/v1`,
      secureContext: undefined,
      requestTimeoutMs: 2_000,
      streamIdleTimeoutMs: 2_000,
      scopedHeaders: (r) => {
        scoped.push(r);
        return Promise.resolve({ 'x-scoped': `${r.kind}#${scoped.length}` });
      },
      ...overrides,
    }),
  );
  const events: ResponsesEventBody[] = [];
  const ends = new Map<string, (end: ResponsesEndBody) => void>();
  system.spawn('recorder', () => ({
    receive(m: Message) {
      if (m.type === UpstreamMessage.responsesEvent) events.push(m.body as ResponsesEventBody);
      if (m.type === UpstreamMessage.responsesEnd) {
        const end = m.body as ResponsesEndBody;
        ends.get(end.streamId)?.(end);
      }
    },
  }));
  t.after(() => system.stopAll());
  let n = 0;
  const attempt = (
    transport: 'ws' | 'http',
    request: Record<string, unknown> | null = { model: 'm', input: [] },
  ) => {
    const streamId = `s${++n}`;
    const done = new Promise<ResponsesEndBody>((resolve) => ends.set(streamId, resolve));
    const body: ResponsesStartBody = {
      streamId,
      replyTo: 'recorder',
      threadId: 'thread-1',
      connectionIds: ['7'],
      transport,
      headers: { 'user-agent': 'ua/1', originator: 'host', version: '0.169.0', 'thread-id': 'thread-1' },
      request,
    };
    system.tell(UPSTREAM_ACTOR, UpstreamMessage.responsesStart, body);
    return { streamId, done };
  };
  return { system, attempt, events, scoped };
}

test('POST: a 401 refreshes once and the attempt is retried with the new credentials', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  const h = harness(t, backend.base, auth);
  const end = await h.attempt('http').done;
  assert.deepEqual(end, { streamId: 's1', ok: true });
  assert.deepEqual(
    h.events.map((e) => e.event.type),
    EVENTS.map((e) => e.type),
  );
  assert.equal(auth.refreshes.length, 1);
  assert.equal(auth.refreshes[0]!.bearer, 'old-token');
  assert.deepEqual(
    backend.seen.map((s) => [s.route, s.status, s.headers.authorization]),
    [
      ['http', 401, 'Bearer old-token'],
      ['http', 200, 'Bearer new-token'],
    ],
  );
  const post = backend.seen[1]!;
  assert.equal(post.headers['chatgpt-account-id'], 'acct-1');
  assert.equal(post.headers.accept, 'text/event-stream');
  assert.equal(post.headers['x-openai-internal-codex-responses-lite'], 'true');
  assert.equal(post.headers['content-type'], 'application/json');
  assert.equal(post.headers['user-agent'], 'ua/1');
  assert.equal(post.headers.originator, 'host');
  assert.equal(post.headers['openai-beta'], undefined);
  assert.deepEqual(JSON.parse(post.body!), { model: 'm', input: [] });
  // The scoped hook ran for each POST, the 401'd one included.
  assert.deepEqual(
    h.scoped.map((s) => [s.kind, s.threadId, s.connectionIds, s.authMode]),
    [
      ['responses.http', 'thread-1', ['7'], 'chatgptAuthTokens'],
      ['responses.http', 'thread-1', ['7'], 'chatgptAuthTokens'],
    ],
  );
  assert.equal(post.headers['x-scoped'], 'responses.http#2');
});

test('POST: a second 401 fails the attempt with codex text; a failed refresh fails it with its own', async (t) => {
  const backend = await fakeBackend(t, { good: [] });
  const auth = new CountingAuth();
  const h = harness(t, backend.base, auth);
  const end = await h.attempt('http').done;
  assert.ok(!end.ok);
  const failure = end.failure;
  assert.deepEqual(failure, {
    message: `unexpected status 401 Unauthorized: {"detail":"Unauthorized"}, url: ${backend.base}/codex/responses`,
    kind: 'status',
    status: 401,
    retryable: true,
    retryAfterMs: null,
  });
  assert.equal(auth.refreshes.length, 1);
  assert.equal(backend.seen.length, 2);

  auth.auth = { mode: 'chatgptAuthTokens', bearer: 'old-token', accountId: 'acct-1', generation: 5 };
  auth.refreshError = new Error('auth refresh request failed: code=-32001');
  const refused = (await h.attempt('http').done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.equal(refused.failure.message, 'auth refresh request failed: code=-32001');
  assert.equal(refused.failure.kind, 'refresh');
  assert.equal(refused.failure.retryable, true);
  assert.equal(backend.seen.length, 3, 'no second POST after a failed refresh');
  assert.ok(!JSON.stringify([end, refused]).includes('old-token'));
});

test('WebSocket: a 401 on the upgrade is told apart and refreshed; the socket is reused afterwards', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  const h = harness(t, backend.base, auth);
  assert.deepEqual(await h.attempt('ws', null).done, { streamId: 's1', ok: true }); // the prewarm
  assert.deepEqual(await h.attempt('ws').done, { streamId: 's2', ok: true });
  assert.deepEqual(await h.attempt('ws').done, { streamId: 's3', ok: true });
  assert.equal(auth.refreshes.length, 1);
  assert.deepEqual(
    backend.seen.map((s) => [s.route, s.status]),
    [
      ['ws', 401],
      ['ws', 101],
    ],
  );
  const handshake = backend.seen[1]!.headers;
  assert.equal(handshake.authorization, 'Bearer new-token');
  assert.equal(handshake['chatgpt-account-id'], 'acct-1');
  assert.equal(handshake['openai-beta'], 'responses_websockets=2026-02-06');
  assert.equal(handshake.version, '0.169.0');
  assert.equal(handshake['x-scoped'], 'responses.ws#2');
  assert.equal(h.scoped.length, 2, 'one scoped call per handshake, none per frame');
  assert.equal(h.events.filter((e) => e.event.type === 'response.completed').length, 2);
});

test('deadlines: no response headers in time is `request timed out`; a silent stream is an idle disconnect', async (t) => {
  const backend = await fakeBackend(t, { good: ['old-token'] });
  const auth = new CountingAuth();
  const h = harness(t, backend.base, auth, { requestTimeoutMs: 150, streamIdleTimeoutMs: 150 });
  backend.state.stallHeaders = true;
  const slow = (await h.attempt('http').done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.deepEqual([slow.failure.message, slow.failure.kind], ['request timed out', 'timeout']);
  backend.state.stallHeaders = false;
  backend.state.stallBody = true;
  const idle = (await h.attempt('http').done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.equal(idle.failure.message, 'stream disconnected before completion: idle timeout waiting for SSE');
  const idleWs = (await h.attempt('ws').done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.equal(
    idleWs.failure.message,
    'stream disconnected before completion: idle timeout waiting for websocket',
  );
  assert.equal(idleWs.failure.kind, 'disconnected');
});

test('an abort ends the attempt and closes the socket; stopping the actor closes everything', async (t) => {
  const backend = await fakeBackend(t, { good: ['old-token'] });
  backend.state.stallBody = true;
  const h = harness(t, backend.base, new CountingAuth());
  const a = h.attempt('ws');
  while (h.events.length === 0) await new Promise((r) => setTimeout(r, 5));
  h.system.tell(UPSTREAM_ACTOR, UpstreamMessage.responsesAbort, { streamId: a.streamId });
  const end = (await a.done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.equal(end.failure.kind, 'aborted');
  while (backend.open.size > 0) await new Promise((r) => setTimeout(r, 5));

  const b = h.attempt('http');
  while (backend.seen.filter((s) => s.route === 'http').length === 0)
    await new Promise((r) => setTimeout(r, 5));
  h.system.stop(UPSTREAM_ACTOR);
  const stopped = (await b.done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.equal(stopped.failure.kind, 'aborted');
  while (backend.sockets.size > 0) await new Promise((r) => setTimeout(r, 5));
});

test('API-key auth posts to openai_base_url/responses even when a WebSocket is asked for', async (t) => {
  const backend = await fakeBackend(t, { good: ['sk-test'] });
  const auth = new CountingAuth();
  auth.auth = { mode: 'apikey', bearer: 'sk-test', accountId: null, generation: 1 };
  const h = harness(t, backend.base, auth);
  // The fake serves every path; the URL is what matters.
  assert.deepEqual(await h.attempt('ws').done, { streamId: 's1', ok: true });
  assert.equal(backend.seen.length, 1);
  assert.equal(backend.seen[0]!.route, 'http');
  assert.equal(backend.seen[0]!.headers['chatgpt-account-id'], undefined);
  assert.equal(backend.seen[0]!.headers['x-openai-internal-codex-responses-lite'], undefined);
  assert.equal(h.scoped[0]!.authMode, 'apikey');
});

test('no credentials: the attempt fails at once, not retryable, nothing sent', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  auth.auth = null;
  const h = harness(t, backend.base, auth);
  const end = (await h.attempt('ws').done) as Extract<ResponsesEndBody, { ok: false }>;
  assert.deepEqual([end.failure.kind, end.failure.retryable], ['unauthenticated', false]);
  assert.equal(backend.seen.length, 0);
});

test('JSON GET: 401 -> refresh -> retry once; statuses returned; clear errors', async (t) => {
  const backend = await fakeBackend(t);
  const auth = new CountingAuth();
  const h = harness(t, backend.base, auth, { requestTimeoutMs: 200 });
  const get = (path: string) =>
    h.system.ask<{ status: number; body: unknown }>(UPSTREAM_ACTOR, UpstreamMessage.getJson, {
      path,
      headers: { originator: 'host' },
    });
  assert.deepEqual(await get('/wham/accounts/check'), { status: 200, body: { ok: true } });
  assert.equal(auth.refreshes.length, 1);
  assert.deepEqual(
    backend.seen.map((s) => [s.route, s.status, s.headers.authorization, s.headers.originator]),
    [
      ['get', 401, 'Bearer old-token', 'host'],
      ['get', 200, 'Bearer new-token', 'host'],
    ],
  );

  auth.auth = { mode: 'chatgptAuthTokens', bearer: 'revoked', accountId: null, generation: 9 };
  auth.unauthorized = (failed) => Promise.resolve({ ...failed, bearer: 'also-revoked', generation: 10 });
  assert.deepEqual(await get('/wham/config/bundle'), { status: 401, body: { detail: 'Unauthorized' } });

  auth.auth = { mode: 'chatgptAuthTokens', bearer: 'new-token', accountId: null, generation: 11 };
  backend.state.getBody = '<html>oops</html>';
  await assert.rejects(get('/wham/config/bundle'), (e: unknown) => {
    assert.ok(isBrokerError(e, 'UPSTREAM_FAILED'));
    assert.equal(
      e.message,
      `GET ${backend.base}/wham/config/bundle answered 200 with a body that is not JSON`,
    );
    return true;
  });

  backend.state.stallHeaders = true;
  await assert.rejects(get('/wham/accounts/check'), (e: unknown) => {
    assert.ok(isBrokerError(e, 'UPSTREAM_FAILED'));
    assert.equal(e.message, `GET ${backend.base}/wham/accounts/check failed: request timed out`);
    return true;
  });

  auth.refreshError = new Error('auth refresh request timed out after 10s');
  auth.unauthorized = CountingAuth.prototype.unauthorized.bind(auth);
  auth.auth = { mode: 'chatgptAuthTokens', bearer: 'revoked', accountId: null, generation: 12 };
  backend.state.stallHeaders = false;
  await assert.rejects(get('/wham/accounts/check'), (e: unknown) => {
    assert.ok(isBrokerError(e, 'AUTH_REFRESH_FAILED'));
    assert.equal(e.message, 'auth refresh request timed out after 10s');
    return true;
  });
});

test('JSON GET: a refused connection is a clear error without secrets', async (t) => {
  const auth = new CountingAuth();
  const h = harness(t, 'http://127.0.0.1:1/backend-api', auth);
  await assert.rejects(
    h.system.ask(UPSTREAM_ACTOR, UpstreamMessage.getJson, { path: '/wham/accounts/check?token=secret' }),
    (e: unknown) => {
      assert.ok(isBrokerError(e, 'UPSTREAM_FAILED'));
      assert.match(
        e.message,
        /^GET http:\/\/127\.0\.0\.1:1\/backend-api\/wham\/accounts\/check failed: stream disconnected before completion: connect ECONNREFUSED/,
      );
      assert.ok(!e.message.includes('secret') && !e.message.includes('old-token'));
      return true;
    },
  );
});

test('CODEX_CA_CERTIFICATE: added to the roots; a missing, non-PEM or broken file is a clear error', async (t) => {
  assert.equal(trustedContext({}), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'gh-ca-'));
  const certs = createLocalCertificates();
  const pem = join(dir, 'ca.pem');
  writeFileSync(pem, certs.caPem);
  // The context really trusts the CA: a handshake with a server it signed succeeds, and fails without it.
  const server = createTlsServer({ cert: certs.certPem, key: certs.keyPem }, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const handshake = (options: ConnectionOptions) =>
    new Promise<void>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ...options }, () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', reject);
    });
  await handshake({ secureContext: trustedContext({ CODEX_CA_CERTIFICATE: pem })! });
  await assert.rejects(handshake({}), /self[- ]signed|unable to (get|verify)/i);
  const broken = join(dir, 'broken.pem');
  writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  assert.throws(() => trustedContext({ CODEX_CA_CERTIFICATE: broken }), /holds no usable certificate/);
  assert.throws(
    () => trustedContext({ CODEX_CA_CERTIFICATE: join(dir, 'missing.pem') }),
    (e: unknown) =>
      e instanceof TrustConfigError &&
      e.message === `CODEX_CA_CERTIFICATE=${join(dir, 'missing.pem')} cannot be read (ENOENT)`,
  );
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate');
  assert.throws(() => trustedContext({ CODEX_CA_CERTIFICATE: junk }), /holds no PEM certificate/);
});
