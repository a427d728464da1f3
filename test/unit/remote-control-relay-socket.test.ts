/**
 * The remote-control server WebSocket against a real loopback backend (node:http + ws): the
 * handshake headers exactly (and nothing codex does not send), how each refusal is classified
 * and worded (spec B.3), frames both ways, and the keep-alive: pings at the injected interval
 * with an empty payload, and the socket given up when no Pong comes back in time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { remoteControlEndpoints } from '../../src/remote-control/endpoints.js';
import {
  RelayHandshakeError,
  openRelaySocket,
  type RelaySocket,
  type RelaySocketOptions,
} from '../../src/remote-control/relay-socket.js';

type T = { after(fn: () => unknown): void };

const TOKEN = 'rct_mock_1_secret';
const INSTALLATION = 'f5890a50-ad9a-4189-8766-5be4c4a36d73';

/** A raw HTTP refusal of the upgrade. */
interface Refusal {
  status: string;
  headers?: string[];
  body?: string;
}

interface BackendOptions {
  /** Refuse the next upgrades with these (in order), then accept. */
  refusals?: Refusal[];
  /** Accept the TCP connection but never answer the upgrade. */
  stall?: boolean;
  autoPong?: boolean;
  /** Called with each accepted server-side socket. */
  onSocket?: (ws: WebSocket) => void;
}

async function backend(t: T, options: BackendOptions = {}) {
  const refusals = [...(options.refusals ?? [])];
  const handshakes: IncomingMessage[] = [];
  const sockets = new Set<Socket>();
  const open = new Set<WebSocket>();
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ noServer: true, autoPong: options.autoPong ?? true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    handshakes.push(req);
    if (options.stall) return;
    const refusal = refusals.shift();
    if (refusal) {
      const body = refusal.body ?? '';
      const headers = [
        ...(refusal.headers ?? []),
        `content-length: ${Buffer.byteLength(body)}`,
        'connection: close',
      ];
      socket.end(`HTTP/1.1 ${refusal.status}\r\n${headers.join('\r\n')}\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      open.add(ws);
      ws.on('close', () => open.delete(ws));
      options.onSocket?.(ws);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  t.after(async () => {
    for (const ws of open) ws.terminate();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const url = remoteControlEndpoints(`http://127.0.0.1:${port}/backend-api`).websocketUrl;
  return { url, handshakes, open };
}

function connect(url: URL, extra: Partial<RelaySocketOptions> = {}): Promise<RelaySocket> {
  return openRelaySocket({
    url,
    token: TOKEN,
    installationId: INSTALLATION,
    serverName: 'vm',
    serverId: 'srv_e_mock',
    ...extra,
  });
}

async function refused(url: URL, extra: Partial<RelaySocketOptions> = {}): Promise<RelayHandshakeError> {
  const error = await connect(url, extra).then(
    (socket) => {
      socket.close();
      return assert.fail('the handshake should fail');
    },
    (e: unknown) => e,
  );
  assert.ok(error instanceof RelayHandshakeError);
  assert.ok(!error.message.includes(TOKEN), error.message);
  return error;
}

function closed(socket: RelaySocket): Promise<string> {
  return new Promise((resolve) => socket.onClose(resolve));
}

test('handshake: exactly the headers codex sends, and no others', async (t) => {
  const { url, handshakes } = await backend(t);
  const first = await connect(url);
  first.close();
  const second = await connect(url, { cursor: 'cur_abc123', serverName: 'höst' });
  second.close();
  assert.equal(handshakes.length, 2);
  const [plain, resumed] = handshakes as [IncomingMessage, IncomingMessage];
  assert.equal(plain.url, '/backend-api/wham/remote/control/server');
  const names = plain.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  assert.deepEqual(names.slice(0, 5), [
    'x-codex-installation-id',
    'authorization',
    'x-codex-protocol-version',
    'x-codex-name',
    'x-codex-server-id',
  ]);
  // Only the WebSocket mechanics besides: no user agent, account id, originator or extensions.
  assert.deepEqual(
    new Set(names.slice(5)),
    new Set(['sec-websocket-version', 'sec-websocket-key', 'connection', 'upgrade', 'host']),
  );
  assert.equal(plain.headers['x-codex-installation-id'], INSTALLATION);
  assert.equal(plain.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(plain.headers['x-codex-protocol-version'], '3');
  assert.equal(plain.headers['x-codex-name'], 'dm0=');
  assert.equal(plain.headers['x-codex-server-id'], 'srv_e_mock');
  assert.equal(plain.headers['x-codex-subscribe-cursor'], undefined);
  assert.equal(resumed.headers['x-codex-subscribe-cursor'], 'cur_abc123');
  assert.equal(Buffer.from(resumed.headers['x-codex-name'] as string, 'base64').toString('utf8'), 'höst');
});

test('frames: text both ways, binary ignored', async (t) => {
  const received: string[] = [];
  const { url } = await backend(t, {
    onSocket: (ws) =>
      ws.on('message', (data, isBinary) => {
        received.push(`${isBinary ? 'binary' : 'text'}:${(data as Buffer).toString('utf8')}`);
        ws.send(Buffer.from('{"type":"binary"}'), { binary: true });
        ws.send('{"type":"ack"}');
      }),
  });
  const socket = await connect(url);
  const frames: string[] = [];
  const answered = new Promise<void>((resolve) =>
    socket.onFrame((text) => {
      frames.push(text);
      resolve();
    }),
  );
  assert.equal(socket.send('{"type":"server_message"}'), true);
  assert.equal(typeof socket.bufferedAmount, 'number');
  await answered;
  assert.deepEqual(received, ['text:{"type":"server_message"}']);
  assert.deepEqual(frames, ['{"type":"ack"}'], 'the binary frame sent first is ignored');
  socket.close();
  assert.equal(socket.send('late'), false, 'nothing is sent after close');
});

test('frames: those that came before any listener go to the first one', async (t) => {
  const { url } = await backend(t, {
    onSocket: (ws) => {
      ws.send('first');
      ws.send('second');
      ws.close(1000, 'done');
    },
  });
  const socket = await connect(url);
  // Frames precede the Close frame on the wire, so once the close is reported both have arrived.
  assert.equal(await closed(socket), 'closed by the backend (code 1000: done)');
  const frames: string[] = [];
  socket.onFrame((text) => frames.push(text));
  assert.deepEqual(frames, ['first', 'second']);
});

test('refusals: 401 and 403 are unauthorized, worded with status, ids and body', async (t) => {
  const { url } = await backend(t, {
    refusals: [
      {
        status: '401 Unauthorized',
        body: '{"detail":"expired"}',
        headers: ['x-request-id: req-1', 'cf-ray: ray-1'],
      },
      { status: '403 Forbidden' },
    ],
  });
  const unauthorized = await refused(url);
  assert.equal(unauthorized.kind, 'unauthorized');
  assert.equal(unauthorized.status, 401);
  assert.equal(
    unauthorized.message,
    `failed to connect app-server remote control websocket \`${url.href}\`: HTTP error: 401 Unauthorized, ` +
      'request-id: req-1, cf-ray: ray-1, body: {"detail":"expired"}',
  );
  const forbidden = await refused(url);
  assert.equal(forbidden.kind, 'unauthorized');
  // No body: no body part at all.
  assert.equal(
    forbidden.message,
    `failed to connect app-server remote control websocket \`${url.href}\`: HTTP error: 403 Forbidden, ` +
      'request-id: <none>, cf-ray: <none>',
  );
});

test('refusals: only a 404 whose JSON detail says so means the server is gone', async (t) => {
  const { url } = await backend(t, {
    refusals: [
      { status: '404 Not Found', body: '{"detail":"Remote app server not found"}' },
      { status: '404 Not Found', body: '{"detail":"another missing route"}' },
      { status: '404 Not Found', body: 'Remote app server not found' },
      { status: '404 Not Found', body: '["Remote app server not found"]' },
    ],
  });
  const gone = await refused(url);
  assert.equal(gone.kind, 'serverGone');
  assert.equal(gone.status, 404);
  assert.match(
    gone.message,
    /: HTTP error: 404 Not Found, request-id: <none>, cf-ray: <none>, body: \{"detail":"Remote app server not found"\}$/,
  );
  for (const expected of ['notFound', 'notFound', 'notFound']) {
    const other = await refused(url);
    assert.equal(other.kind, expected);
    assert.equal(other.status, 404);
  }
});

test('refusals: other statuses carry Retry-After (seconds or HTTP date) and a redacted body', async (t) => {
  const date = new Date(Date.now() + 20_000).toUTCString();
  const { url } = await backend(t, {
    refusals: [
      { status: '503 Service Unavailable', headers: ['retry-after: 4'], body: 'upstream unavailable' },
      {
        status: '502 Bad Gateway',
        headers: [`retry-after: ${date}`],
        body: `{"remote_control_token":"${TOKEN}"}`,
      },
      { status: '500 Internal Server Error', body: `token ${TOKEN} rejected` },
    ],
  });
  const unavailable = await refused(url);
  assert.equal(unavailable.kind, 'status');
  assert.equal(unavailable.status, 503);
  assert.equal(unavailable.retryAfterMs, 4_000);
  assert.equal(
    unavailable.message,
    `failed to connect app-server remote control websocket \`${url.href}\`: HTTP error: 503 Service Unavailable, ` +
      'request-id: <none>, cf-ray: <none>, body: upstream unavailable',
  );
  const gateway = await refused(url);
  assert.ok(
    gateway.retryAfterMs !== undefined && gateway.retryAfterMs > 10_000 && gateway.retryAfterMs <= 20_000,
  );
  assert.match(gateway.message, /body: \{"remote_control_token":"<redacted>"\}$/);
  const echoed = await refused(url);
  assert.match(echoed.message, /body: token <redacted> rejected$/);
  assert.equal(echoed.retryAfterMs, undefined);
});

test('handshake: timeout, refused connection, bad header value, abort', async (t) => {
  const stalled = await backend(t, { stall: true });
  const late = await refused(stalled.url, { timeoutMs: 50 });
  assert.equal(late.kind, 'timeout');
  assert.equal(late.status, 0);
  assert.equal(
    late.message,
    `timed out connecting to remote control websocket at \`${stalled.url.href}\` after 50ms`,
  );

  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  const nowhere = remoteControlEndpoints(`http://127.0.0.1:${port}/backend-api`).websocketUrl;
  const refusedConnection = await refused(nowhere);
  assert.equal(refusedConnection.kind, 'network');
  assert.equal(
    refusedConnection.message,
    `failed to connect app-server remote control websocket \`${nowhere.href}\`: IO error: connect ECONNREFUSED 127.0.0.1:${port}`,
  );

  const invalid = await refused(stalled.url, { cursor: 'cur\r\nx-injected: 1' });
  assert.equal(invalid.kind, 'invalidRequest');
  assert.ok(!invalid.message.includes('x-injected'), invalid.message);

  const controller = new AbortController();
  const pending = refused(stalled.url, { signal: controller.signal });
  controller.abort();
  const aborted = await pending;
  assert.equal(aborted.kind, 'aborted');
});

test('keep-alive: empty pings at the interval; Pongs keep the socket open', async (t) => {
  const pings: Buffer[] = [];
  let enough: () => void = () => undefined;
  const manyPings = new Promise<void>((resolve) => (enough = resolve));
  const { url } = await backend(t, {
    onSocket: (ws) =>
      ws.on('ping', (data: Buffer) => {
        pings.push(data);
        if (pings.length === 25) enough();
      }),
  });
  // 25 pings 20 ms apart span 500 ms, past the 300 ms Pong deadline: only the Pongs (ws
  // answers every ping) can have kept the socket open.
  const socket = await connect(url, { pingIntervalMs: 20, pongTimeoutMs: 300 });
  const outcome = await Promise.race([manyPings.then(() => 'still open'), closed(socket)]);
  assert.equal(outcome, 'still open');
  assert.ok(
    pings.every((p) => p.length === 0),
    'pings carry no payload',
  );
  socket.close();
  assert.equal(await closed(socket), 'closed locally');
});

test('keep-alive: no Pong in time drops the socket with "pong timeout"', async (t) => {
  let serverSawClose: (code: number) => void = () => undefined;
  const serverClosed = new Promise<number>((resolve) => (serverSawClose = resolve));
  const { url } = await backend(t, {
    autoPong: false,
    onSocket: (ws) => ws.on('close', (code) => serverSawClose(code)),
  });
  const socket = await connect(url, { pingIntervalMs: 10, pongTimeoutMs: 60 });
  assert.equal(await closed(socket), 'pong timeout');
  assert.equal(await closed(socket), 'pong timeout', 'a listener added afterwards still hears why');
  // Dropped, not closed with a Close frame: the server sees 1006.
  assert.equal(await serverClosed, 1006);
});

test('close: by the backend, with its code and reason', async (t) => {
  const { url } = await backend(t, { onSocket: (ws) => setImmediate(() => ws.close(1000, 'bye')) });
  const socket = await connect(url);
  assert.equal(await closed(socket), 'closed by the backend (code 1000: bye)');
});
