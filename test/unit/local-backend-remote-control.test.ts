/**
 * The local backend's remote-control side over real HTTPS and WSS on loopback: enroll and refresh,
 * the server WebSocket's handshake and faults, and remote clients relayed through it to a fake
 * app-server written here with `ws` (chunking both ways, acks, replay after a reconnect, queueing
 * while the socket is down), the out-of-process client endpoint and the control endpoints.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { requestLocalBackend, type BackendResponse } from '../../src/backend/control-client.js';
import { LocalBackendError, startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import type { RemoteClient } from '../../src/backend/remote-client.js';
import { RemoteEnrollments, rfc3339Seconds } from '../../src/backend/remote-control.js';
import { RemoteClientError } from '../../src/backend/remote-relay.js';
import { chatgptToken } from '../helpers/local-backend.js';

let backend: LocalBackend;
before(async () => {
  backend = await startLocalBackend({ recordBodies: true });
});
afterEach(() => {
  backend.faults.clear();
  backend.remoteControl.dropSockets();
});
after(() => backend.close());

const accessToken = chatgptToken();
const auth = { authorization: `Bearer ${accessToken}`, 'chatgpt-account-id': 'acct-1' };
const enrollBody = {
  name: 'vm',
  os: 'linux',
  arch: 'x86_64',
  app_server_version: '0.169.0',
  installation_id: 'f5890a50-ad9a-4189-8766-5be4c4a36d73',
};

interface EnrollAnswer {
  server_id: string;
  environment_id: string;
  remote_control_token: string;
  expires_at: string;
}

function post(
  b: LocalBackend,
  path: string,
  body: unknown,
  headers: Record<string, string> = auth,
  method = 'POST',
): Promise<BackendResponse> {
  return requestLocalBackend(`${b.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ca: b.caCertPem,
  });
}

const ENROLL = '/backend-api/wham/remote/control/server/enroll';
const REFRESH = '/backend-api/wham/remote/control/server/refresh';

async function enroll(b: LocalBackend = backend, body: object = enrollBody): Promise<EnrollAnswer> {
  const answer = await post(b, ENROLL, body);
  assert.equal(answer.status, 200, answer.body);
  return JSON.parse(answer.body) as EnrollAnswer;
}

interface Refusal extends Error {
  status: number;
  body: string;
  headers: IncomingHttpHeaders;
}

/** Opens a WebSocket trusting the backend's CA; a refused handshake rejects with its status and body. */
function openSocket(b: LocalBackend, url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, ca: b.caCertPem });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () =>
        reject(
          Object.assign(new Error(`HTTP ${res.statusCode}`), {
            status: res.statusCode,
            body,
            headers: res.headers,
          }),
        ),
      );
    });
    ws.once('error', reject);
  });
}

const serverSocketUrl = (b: LocalBackend) =>
  `${b.chatgptBaseUrl.replace(/^https/, 'wss')}/wham/remote/control/server`;

function handshakeHeaders(token: string, serverId: string): Record<string, string> {
  return {
    authorization: `Bearer ${token}`,
    'x-codex-server-id': serverId,
    'x-codex-installation-id': enrollBody.installation_id,
    'x-codex-protocol-version': '3',
    'x-codex-name': Buffer.from('vm').toString('base64'),
  };
}

function openServerSocket(b: LocalBackend, token: string, serverId: string): Promise<WebSocket> {
  return openSocket(b, serverSocketUrl(b), handshakeHeaders(token, serverId));
}

/** A JSON-RPC message, and the fields of the envelopes the fake app-server reads. */
interface Msg {
  id?: number | string;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: unknown;
}
interface Envelope {
  type: string;
  client_id: string;
  stream_id: string;
  seq_id?: number;
  cursor?: string;
  segment_id?: number;
  segment_count?: number;
  message_size_bytes?: number;
  message_chunk_base64?: string;
  message?: Msg;
  status?: string;
  /** The number of a test's `barrier` envelope. */
  n?: number;
}

const CHUNK_THRESHOLD = 150 * 1024;
const CHUNK_BYTES = 100 * 1024;

/**
 * An app-server as far as these tests need one: it opens a virtual connection on `initialize`,
 * answers a few methods, reassembles client chunks, chunks big answers, answers pings, keeps
 * what is unacked and sends it again (same seq_id) on the next connect.
 */
class FakeAppServer {
  ws: WebSocket | undefined;
  readonly received: Envelope[] = [];
  unacked: Envelope[] = [];
  private readonly known = new Set<string>();
  private readonly seqs = new Map<string, number>();
  private readonly assemblies = new Map<string, Buffer[]>();
  private waiters: { predicate: (e: Envelope) => boolean; resolve: (e: Envelope) => void }[] = [];

  constructor(
    readonly b: LocalBackend,
    readonly enrollment: EnrollAnswer,
  ) {}

  static async start(b: LocalBackend = backend): Promise<FakeAppServer> {
    const fake = new FakeAppServer(b, await enroll(b));
    await fake.connect();
    return fake;
  }

  async connect(): Promise<void> {
    const ws = await openServerSocket(
      this.b,
      this.enrollment.remote_control_token,
      this.enrollment.server_id,
    );
    this.ws = ws;
    ws.on('message', (data: Buffer) => this.onEnvelope(JSON.parse(data.toString('utf8')) as Envelope));
    for (const envelope of this.unacked) ws.send(JSON.stringify(envelope));
  }

  /** Resolves with the first envelope received (already or later) that satisfies the predicate. */
  until(predicate: (e: Envelope) => boolean): Promise<Envelope> {
    const seen = this.received.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ predicate, resolve }));
  }

  /** Sends one JSON-RPC message to a client, as one envelope or as chunks past 150 KiB. */
  sendMessage(to: Envelope, message: Msg): void {
    const ids = { client_id: to.client_id, stream_id: to.stream_id, seq_id: this.nextSeq(to) };
    const bytes = Buffer.from(JSON.stringify(message));
    if (bytes.length <= CHUNK_THRESHOLD) return this.send({ type: 'server_message', message, ...ids });
    const count = Math.ceil(bytes.length / CHUNK_BYTES);
    for (let i = 0; i < count; i++) {
      this.send({
        type: 'server_message_chunk',
        segment_id: i,
        segment_count: count,
        message_size_bytes: bytes.length,
        message_chunk_base64: bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES).toString('base64'),
        ...ids,
      });
    }
  }

  send(envelope: Envelope): void {
    this.unacked.push(envelope);
    this.ws!.send(JSON.stringify(envelope));
  }

  private nextSeq(e: Envelope): number {
    const key = `${e.client_id}/${e.stream_id}`;
    const seq = (this.seqs.get(key) ?? 0) + 1;
    this.seqs.set(key, seq);
    return seq;
  }

  private onEnvelope(e: Envelope): void {
    this.received.push(e);
    const key = `${e.client_id}/${e.stream_id}`;
    switch (e.type) {
      case 'client_message':
        this.handle(e, e.message!);
        break;
      case 'client_message_chunk': {
        const parts = this.assemblies.get(key) ?? [];
        parts.push(Buffer.from(e.message_chunk_base64!, 'base64'));
        this.assemblies.set(key, parts);
        if (parts.length === e.segment_count) {
          this.assemblies.delete(key);
          this.handle(e, JSON.parse(Buffer.concat(parts).toString('utf8')) as Msg);
        }
        break;
      }
      case 'ping':
        this.send({
          type: 'pong',
          status: this.known.has(key) ? 'active' : 'unknown',
          client_id: e.client_id,
          stream_id: e.stream_id,
          seq_id: this.nextSeq(e),
        });
        break;
      case 'ack':
        this.unacked = this.unacked.filter(
          (u) =>
            `${u.client_id}/${u.stream_id}` !== key ||
            u.seq_id! > e.seq_id! ||
            (u.seq_id === e.seq_id && e.segment_id !== undefined && u.segment_id! > e.segment_id),
        );
        break;
      case 'client_closed':
        this.known.delete(key);
        break;
    }
    const matched = this.waiters.filter((w) => w.predicate(e));
    this.waiters = this.waiters.filter((w) => !matched.includes(w));
    for (const w of matched) w.resolve(e);
  }

  private handle(e: Envelope, message: Msg): void {
    const key = `${e.client_id}/${e.stream_id}`;
    if (message.method === 'initialize') this.known.add(key);
    if (!this.known.has(key) || message.id === undefined) return;
    switch (message.method) {
      case 'initialize':
        return this.sendMessage(e, { id: message.id, result: { userAgent: 'fake-app-server/1.0' } });
      case 'echo':
        return this.sendMessage(e, { id: message.id, result: message.params });
      case 'big':
        return this.sendMessage(e, { id: message.id, result: { text: 'x'.repeat(200_000) } });
      case 'notify':
        this.sendMessage(e, { method: 'thing/happened', params: message.params });
        return this.sendMessage(e, { id: message.id, result: {} });
      default:
        return this.sendMessage(e, { id: message.id, error: { code: -32601, message: 'no such method' } });
    }
  }
}

const isType = (type: string) => (e: Envelope) => e.type === type;
const isAck = (seq: number, segment?: number) => (e: Envelope) =>
  e.type === 'ack' && e.seq_id === seq && e.segment_id === segment;

let barriers = 0;
/**
 * Sends a marker envelope after everything the backend has sent so far on the client's server
 * socket, and waits until the fake app-server has it: what the backend sent before (acks
 * included) has then arrived too.
 */
async function barrier(fake: FakeAppServer, client: RemoteClient): Promise<void> {
  const n = ++barriers;
  client.sendEnvelope({ type: 'marker', client_id: client.clientId, stream_id: client.streamId, n });
  await fake.until((e) => e.type === 'marker' && e.n === n);
}

describe('enroll', () => {
  test('creates a server and answers its ids, a token and its expiry; the request is recorded', async () => {
    const before = Math.floor(Date.now() / 1000);
    const answer = await post(backend, ENROLL, enrollBody, {
      ...auth,
      originator: 'codex_vscode',
      'x-codex-installation-id': enrollBody.installation_id,
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['content-type'], 'application/json');
    const body = JSON.parse(answer.body) as EnrollAnswer;
    assert.deepEqual(Object.keys(body), [
      'server_id',
      'environment_id',
      'remote_control_token',
      'expires_at',
    ]);
    assert.match(body.server_id, /^srv_e_[0-9a-f]+$/);
    assert.match(body.environment_id, /^env_[0-9a-f]+$/);
    assert.match(body.remote_control_token, /^rct_[A-Za-z0-9_-]{20,}$/);
    assert.match(body.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const expires = Date.parse(body.expires_at) / 1000;
    assert.ok(expires >= before + 3600 && expires <= Math.floor(Date.now() / 1000) + 3600, body.expires_at);

    const server = backend.remoteControl.servers().find((s) => s.serverId === body.server_id);
    assert.deepEqual(server, {
      serverId: body.server_id,
      environmentId: body.environment_id,
      name: 'vm',
      installationId: enrollBody.installation_id,
      accountId: 'acct-1',
      os: 'linux',
      arch: 'x86_64',
      appServerVersion: '0.169.0',
      connected: false,
      connections: 0,
    });
    const recorded = backend.requests.filter((r) => r.route === 'remote.enroll').at(-1)!;
    assert.equal(recorded.status, 200);
    assert.equal(recorded.headers.originator, 'codex_vscode');
    assert.equal(recorded.headers['chatgpt-account-id'], 'acct-1');
    assert.deepEqual(recorded.body, enrollBody);
  });

  test('each enrollment is a new server with its own token', async () => {
    const [a, b] = [await enroll(), await enroll()];
    assert.notEqual(a.server_id, b.server_id);
    assert.notEqual(a.environment_id, b.environment_id);
    assert.notEqual(a.remote_control_token, b.remote_control_token);
  });

  test('an apns_registration object is accepted', async () => {
    await enroll(backend, { ...enrollBody, apns_registration: { token: 'abc', environment: 'sandbox' } });
  });

  test('the ChatGPT bearer is checked: none, or an expired one, gets 401', async () => {
    const none = await post(backend, ENROLL, enrollBody, { 'chatgpt-account-id': 'acct-1' });
    assert.equal(none.status, 401);
    assert.equal(none.body, '{"detail":"Unauthorized"}');
    const expired = chatgptToken({ expiresInSec: -5 });
    const old = await post(backend, ENROLL, enrollBody, {
      authorization: `Bearer ${expired}`,
      'chatgpt-account-id': 'acct-1',
    });
    assert.equal(old.status, 401);
  });

  test('the account id header is required', async () => {
    const answer = await post(backend, ENROLL, enrollBody, { authorization: auth.authorization });
    assert.equal(answer.status, 400);
    assert.deepEqual(JSON.parse(answer.body), { detail: 'missing chatgpt-account-id header' });
  });

  test('a malformed body is a 400 that says what is wrong', async () => {
    const cases: [unknown, string][] = [
      ['not json', 'request body is not JSON'],
      [[], 'the request body must be a JSON object'],
      [{ ...enrollBody, name: undefined }, 'name must be a string'],
      [{ ...enrollBody, arch: 64 }, 'arch must be a string'],
      [{ ...enrollBody, app_server_version: null }, 'app_server_version must be a string'],
      [{ ...enrollBody, apns_registration: 'x' }, 'apns_registration must be an object when present'],
    ];
    for (const [body, detail] of cases) {
      const answer = await post(backend, ENROLL, body);
      assert.equal(answer.status, 400, JSON.stringify(body));
      assert.deepEqual(JSON.parse(answer.body), { detail });
    }
  });

  test('status faults answer with their body and retry-after, before the bearer is looked at', async () => {
    backend.faults.add({
      route: 'remote.enroll',
      action: { kind: 'status', status: 429, body: '{"detail":"slow down"}', retryAfterSec: 4 },
    });
    backend.faults.add({ route: 'remote.refresh', action: { kind: 'status', status: 502 } });
    const limited = await post(backend, ENROLL, enrollBody, {});
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['retry-after'], '4');
    assert.equal(limited.body, '{"detail":"slow down"}');
    const bad = await post(backend, REFRESH, { server_id: 'srv_e_x', installation_id: 'i' });
    assert.equal(bad.status, 502);
    assert.equal(bad.body, '{"detail":"Bad Gateway"}');
    assert.equal((await post(backend, ENROLL, enrollBody)).status, 200); // each rule used once
  });
});

describe('refresh', () => {
  test('a new token for the same server; older tokens stay valid', async () => {
    const first = await enroll();
    const answer = await post(backend, REFRESH, {
      server_id: first.server_id,
      installation_id: enrollBody.installation_id,
    });
    assert.equal(answer.status, 200);
    const refreshed = JSON.parse(answer.body) as EnrollAnswer;
    assert.deepEqual(Object.keys(refreshed), [
      'server_id',
      'environment_id',
      'remote_control_token',
      'expires_at',
    ]);
    assert.equal(refreshed.server_id, first.server_id);
    assert.equal(refreshed.environment_id, first.environment_id);
    assert.notEqual(refreshed.remote_control_token, first.remote_control_token);
    for (const token of [first.remote_control_token, refreshed.remote_control_token]) {
      const ws = await openServerSocket(backend, token, first.server_id);
      ws.terminate();
    }
  });

  test('an unknown or forgotten server is 404 "Remote app server not found"', async () => {
    const unknown = await post(backend, REFRESH, { server_id: 'srv_e_nope', installation_id: 'i' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body, '{"detail":"Remote app server not found"}');
    const enrolled = await enroll();
    assert.equal(backend.remoteControl.forget(enrolled.server_id), true);
    assert.equal(backend.remoteControl.forget(enrolled.server_id), false);
    const forgotten = await post(backend, REFRESH, { server_id: enrolled.server_id, installation_id: 'i' });
    assert.equal(forgotten.status, 404);
    assert.equal(forgotten.body, '{"detail":"Remote app server not found"}');
  });

  test('auth and body are checked as for enroll', async () => {
    const { server_id } = await enroll();
    const body = { server_id, installation_id: 'i' };
    assert.equal((await post(backend, REFRESH, body, {})).status, 401);
    const noAccount = await post(backend, REFRESH, body, { authorization: auth.authorization });
    assert.equal(noAccount.status, 400);
    const bad = await post(backend, REFRESH, { server_id });
    assert.equal(bad.status, 400);
    assert.deepEqual(JSON.parse(bad.body), { detail: 'installation_id must be a string' });
  });
});

describe('the server WebSocket handshake', () => {
  test('an issued token opens the socket (101); the handshake is recorded with its headers', async () => {
    const { server_id, remote_control_token } = await enroll();
    const ws = await openServerSocket(backend, remote_control_token, server_id);
    const server = await backend.remoteControl.waitForServer((s) => s.serverId === server_id);
    assert.equal(server.connected, true);
    assert.equal(server.connections, 1);
    const recorded = backend.requests.filter((r) => r.route === 'remote.ws').at(-1)!;
    assert.equal(recorded.status, 101);
    assert.equal(recorded.path, '/backend-api/wham/remote/control/server');
    assert.equal(recorded.headers['x-codex-server-id'], server_id);
    assert.equal(recorded.headers['x-codex-protocol-version'], '3');
    assert.equal(recorded.headers['x-codex-name'], 'dm0=');
    ws.terminate();
  });

  test('a ChatGPT JWT, no bearer, or an expired token is refused with 401 {"detail":"Unauthorized"}', async () => {
    const { server_id, remote_control_token } = await enroll();
    for (const authorization of [`Bearer ${accessToken}`, '', 'Bearer sk-test']) {
      await assert.rejects(
        openSocket(backend, serverSocketUrl(backend), { authorization, 'x-codex-server-id': server_id }),
        (e: Refusal) => e.status === 401 && e.body === '{"detail":"Unauthorized"}',
      );
    }
    backend.remoteControl.expireTokens();
    await assert.rejects(openServerSocket(backend, remote_control_token, server_id), { status: 401 });
    // A token issued after that is good.
    const fresh = await post(backend, REFRESH, { server_id, installation_id: 'i' });
    const ws = await openServerSocket(
      backend,
      (JSON.parse(fresh.body) as EnrollAnswer).remote_control_token,
      server_id,
    );
    ws.terminate();
  });

  test('a token issued with TTL 0 is already expired', async () => {
    const b = await startLocalBackend({ remoteControlTokenTtlSec: 0 });
    try {
      assert.equal(b.remoteControl.tokenTtlSec, 0);
      const answer = await enroll(b);
      assert.ok(Date.parse(answer.expires_at) <= Date.now());
      await assert.rejects(openServerSocket(b, answer.remote_control_token, answer.server_id), {
        status: 401,
      });
      b.remoteControl.tokenTtlSec = 120;
      const later = await enroll(b);
      const ws = await openServerSocket(b, later.remote_control_token, later.server_id);
      ws.terminate();
    } finally {
      await b.close();
    }
  });

  test('a forgotten server gets 404 with the exact detail, and its socket is cut', async () => {
    const fake = await FakeAppServer.start();
    const closed = new Promise<number>((resolve) => fake.ws!.once('close', resolve));
    backend.remoteControl.forget(fake.enrollment.server_id);
    assert.equal(await closed, 1006); // no close frame
    await assert.rejects(
      openServerSocket(backend, fake.enrollment.remote_control_token, fake.enrollment.server_id),
      (e: Refusal) =>
        e.status === 404 &&
        e.body === '{"detail":"Remote app server not found"}' &&
        e.headers['content-type'] === 'application/json',
    );
    assert.equal(backend.requests.filter((r) => r.route === 'remote.ws').at(-1)!.status, 404);
  });

  test('x-codex-server-id must be present and name the token’s server', async () => {
    const mine = await enroll();
    const other = await enroll();
    const url = serverSocketUrl(backend);
    const authorization = `Bearer ${mine.remote_control_token}`;
    await assert.rejects(openSocket(backend, url, { authorization }), {
      status: 400,
      body: '{"detail":"missing x-codex-server-id header"}',
    });
    await assert.rejects(openSocket(backend, url, { authorization, 'x-codex-server-id': 'srv_e_unknown' }), {
      status: 404,
      body: '{"detail":"Remote app server not found"}',
    });
    await assert.rejects(openSocket(backend, url, { authorization, 'x-codex-server-id': other.server_id }), {
      status: 403,
    });
  });

  test('faults: 403 and 503 refuse the upgrade with body and retry-after; disconnect 0 drops it', async () => {
    const { server_id, remote_control_token } = await enroll();
    backend.faults.add({ route: 'remote.ws', action: { kind: 'status', status: 403 } });
    backend.faults.add({
      route: 'remote.ws',
      action: { kind: 'status', status: 503, body: 'maintenance', retryAfterSec: 9 },
    });
    backend.faults.add({ route: 'remote.ws', action: { kind: 'disconnect' } });
    await assert.rejects(openServerSocket(backend, remote_control_token, server_id), {
      status: 403,
      body: '{"detail":"Forbidden"}',
    });
    await assert.rejects(
      openServerSocket(backend, remote_control_token, server_id),
      (e: Refusal) => e.status === 503 && e.body === 'maintenance' && e.headers['retry-after'] === '9',
    );
    await assert.rejects(
      openServerSocket(backend, remote_control_token, server_id),
      /socket hang up|ECONNRESET/,
    );
    const statuses = backend.requests.filter((r) => r.route === 'remote.ws').map((r) => r.status);
    assert.deepEqual(statuses.slice(-3), [403, 503, 0]);
    const ws = await openServerSocket(backend, remote_control_token, server_id);
    ws.terminate();
  });

  test('a newer socket for the same server replaces the older one', async () => {
    const fake = await FakeAppServer.start();
    const older = fake.ws!;
    const closed = new Promise<number>((resolve) => older.once('close', resolve));
    await fake.connect();
    assert.equal(await closed, 1006);
    const server = await backend.remoteControl.waitForServer((s) => s.serverId === fake.enrollment.server_id);
    assert.equal(server.connections, 2);
    const client = backend.remoteControl.openClient({ environmentId: fake.enrollment.environment_id });
    const answer = await client.request('initialize', { clientInfo: { name: 'phone' } });
    assert.deepEqual(answer.result, { userAgent: 'fake-app-server/1.0' });
    client.close();
  });

  test('a plain GET of the socket path is 426', async () => {
    const answer = await requestLocalBackend(`${backend.chatgptBaseUrl}/wham/remote/control/server`, {
      headers: auth,
      ca: backend.caCertPem,
    });
    assert.equal(answer.status, 426);
  });
});

describe('remote clients through the backend', () => {
  test('a round trip: initialize, a request, a notification, a ping; envelopes as spec B.5', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient(); // the one connected server
    assert.equal(client.environmentId, fake.enrollment.environment_id);
    assert.match(client.clientId, /^cli_\d+$/);
    assert.match(client.streamId, /^stream-\d+$/);

    const init = await client.request('initialize', { clientInfo: { name: 'phone', version: '1.0.0' } });
    assert.deepEqual(init, { id: 1, result: { userAgent: 'fake-app-server/1.0' } });
    const first = fake.received.find(isType('client_message'))!;
    assert.deepEqual(Object.keys(first), ['type', 'client_id', 'stream_id', 'seq_id', 'cursor', 'message']);
    assert.equal(first.client_id, client.clientId);
    assert.equal(first.seq_id, 0);
    assert.match(first.cursor!, /^cur_\d+$/);
    assert.deepEqual(first.message, {
      id: 1,
      method: 'initialize',
      params: { clientInfo: { name: 'phone', version: '1.0.0' } },
    });

    const done = await client.request('notify', { n: 7 });
    assert.deepEqual(done, { id: 2, result: {} });
    assert.deepEqual(await client.next(), { method: 'thing/happened', params: { n: 7 } });
    assert.equal(await client.ping(), 'active');
    const failed = await client.request('nope');
    assert.deepEqual(failed.error, { code: -32601, message: 'no such method' });

    const seqs = fake.received.filter(isType('client_message')).map((e) => e.seq_id);
    assert.deepEqual(seqs, [0, 1, 2]);
    await fake.until(isAck(5));
    assert.equal(client.received.length, 4); // three responses and the notification
    // Every server envelope was acked, in order.
    const acks = fake.received.filter(isType('ack')).map((e) => e.seq_id);
    assert.deepEqual(acks, [1, 2, 3, 4, 5]);
    assert.equal(fake.unacked.length, 0);
    assert.deepEqual(
      backend.remoteControl.serverEnvelopes
        .filter((e) => e.clientId === client.clientId)
        .map((e) => e.outcome),
      ['delivered', 'delivered', 'delivered', 'pong', 'delivered'],
    );

    client.close();
    const closed = await fake.until(isType('client_closed'));
    assert.deepEqual(closed, {
      type: 'client_closed',
      client_id: client.clientId,
      stream_id: client.streamId,
    });
    await assert.rejects(client.next(), /closed/);
    assert.throws(() => client.send({ id: 'x', method: 'echo' }), /closed/);
  });

  test('a ping on a stream the app-server does not know answers unknown', async () => {
    await FakeAppServer.start();
    const client = backend.remoteControl.openClient({ clientId: 'cli_remote_1', streamId: 'stream-1' });
    assert.equal(await client.ping(), 'unknown');
    assert.throws(
      () => backend.remoteControl.openClient({ clientId: 'cli_remote_1', streamId: 'stream-1' }),
      (e: RemoteClientError) => e.status === 409,
    );
    client.close();
  });

  test('messages larger than chunkBytes go as client_message_chunks of that many bytes', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient({ chunkBytes: 64 });
    await client.request('initialize', {});
    const payload = { text: 'é'.repeat(100) };
    const answer = await client.request('echo', payload);
    assert.deepEqual(answer.result, payload);
    const chunks = fake.received.filter(isType('client_message_chunk'));
    const size = Buffer.byteLength(JSON.stringify({ id: 2, method: 'echo', params: payload }));
    assert.equal(chunks.length, Math.ceil(size / 64));
    chunks.forEach((c, i) => {
      assert.equal(c.seq_id, 1);
      assert.equal(c.segment_id, i);
      assert.equal(c.segment_count, chunks.length);
      assert.equal(c.message_size_bytes, size);
      assert.ok(Buffer.from(c.message_chunk_base64!, 'base64').length <= 64);
    });
    client.close();
  });

  test('a server message over 150 KiB arrives in chunks, reassembled; each chunk is acked with its segment', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient();
    await client.request('initialize', {});
    const answer = await client.request('big');
    assert.equal((answer.result as { text: string }).text.length, 200_000);
    await fake.until(isAck(2, 1));
    const chunkAcks = fake.received.filter((e) => e.type === 'ack' && e.seq_id === 2);
    assert.deepEqual(
      chunkAcks.map((e) => e.segment_id),
      [0, 1],
    );
    const records = backend.remoteControl.serverEnvelopes.filter((e) => e.clientId === client.clientId);
    assert.deepEqual(
      records.map((e) => [e.type, e.seqId, e.segmentId, e.outcome, e.acked]),
      [
        ['server_message', 1, undefined, 'delivered', true],
        ['server_message_chunk', 2, 0, 'chunk', true],
        ['server_message_chunk', 2, 1, 'delivered', true],
      ],
    );
    client.close();
  });

  test('bad chunks drop the assembly: out of order, wrong size, bad base64', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient();
    await client.request('initialize', {});
    const to = { client_id: client.clientId, stream_id: client.streamId };
    const chunk = (seq: number, segment: number, base64: string, size = 8, count = 2) =>
      fake.send({
        type: 'server_message_chunk',
        segment_id: segment,
        segment_count: count,
        message_size_bytes: size,
        message_chunk_base64: base64,
        seq_id: seq,
        ...to,
      });
    chunk(10, 1, 'AAAA'); // starts at segment 1
    chunk(11, 0, 'AAAA', 4, 1); // '\0\0\0' is 3 bytes, not 4... and not JSON
    chunk(12, 0, 'not base64!');
    fake.sendMessage({ type: '', ...to }, { method: 'after', params: {} });
    assert.deepEqual(await client.next(), { method: 'after', params: {} });
    const outcomes = backend.remoteControl.serverEnvelopes
      .filter((e) => e.clientId === client.clientId)
      .map((e) => e.outcome);
    assert.deepEqual(outcomes, ['delivered', 'dropped', 'dropped', 'dropped', 'delivered']);
    client.close();
  });

  test('autoAck false: nothing is acked, envelopes are recorded; the app-server replays them after a reconnect', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient({ autoAck: false });
    assert.equal(client.autoAck, false);
    await client.request('initialize', {});
    await client.request('echo', { a: 1 });
    assert.equal(await client.ping(), 'active');
    await barrier(fake, client);
    assert.equal(fake.received.filter(isType('ack')).length, 0);
    assert.equal(fake.unacked.length, 3);
    const mine = () => backend.remoteControl.serverEnvelopes.filter((e) => e.clientId === client.clientId);
    assert.deepEqual(
      mine().map((e) => [e.seqId, e.acked]),
      [
        [1, false],
        [2, false],
        [3, false],
      ],
    );

    // Reconnect: the three are sent again with their seq_ids, recorded as replays, not delivered twice.
    client.autoAck = true;
    backend.remoteControl.dropSockets();
    assert.equal(
      backend.remoteControl.servers().find((s) => s.serverId === fake.enrollment.server_id)!.connected,
      false,
    );
    await fake.connect();
    await fake.until(isAck(3));
    assert.deepEqual(
      mine()
        .slice(3)
        .map((e) => [e.seqId, e.outcome, e.acked]),
      [
        [1, 'replayed', true],
        [2, 'replayed', true],
        [3, 'replayed', true],
      ],
    );
    assert.equal(client.received.length, 2);
    assert.equal(fake.unacked.length, 0);

    // By hand: ack what is there.
    client.autoAck = false;
    await client.request('echo', { b: 2 });
    client.ack(4);
    await fake.until(isAck(4));
    assert.equal(fake.unacked.length, 0);
    client.close();
  });

  test('messages to a server without a socket are queued and delivered when it is back', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient();
    await client.request('initialize', {});
    backend.remoteControl.dropSockets();
    const serverId = fake.enrollment.server_id;
    assert.equal(backend.remoteControl.servers().find((s) => s.serverId === serverId)!.connected, false);
    const pending = client.request('echo', { queued: true });
    const reconnected = backend.remoteControl.waitForServer((s) => s.serverId === serverId);
    await fake.connect();
    assert.equal((await reconnected).connections, 2);
    assert.deepEqual((await pending).result, { queued: true });
    client.close();
  });

  test('a remote.ws disconnect after N envelopes: the Nth is handled but not acked, and replayed', async () => {
    const { server_id, remote_control_token, environment_id } = await enroll();
    backend.faults.add({ route: 'remote.ws', action: { kind: 'disconnect', afterEvents: 2 } });
    const fake = new FakeAppServer(backend, {
      server_id,
      remote_control_token,
      environment_id,
      expires_at: '',
    });
    await fake.connect();
    const closed = new Promise<number>((resolve) => fake.ws!.once('close', resolve));
    const client = backend.remoteControl.openClient({ environmentId: environment_id });
    await client.request('initialize', {});
    await client.request('echo', { n: 1 }); // the second envelope: delivered, then the socket is cut
    assert.equal(await closed, 1006);
    assert.deepEqual(
      fake.received.filter(isType('ack')).map((e) => e.seq_id),
      [1],
    );
    await fake.connect();
    await fake.until(isAck(2));
    const outcomes = backend.remoteControl.serverEnvelopes
      .filter((e) => e.clientId === client.clientId)
      .map((e) => [e.seqId, e.outcome, e.acked]);
    assert.deepEqual(outcomes, [
      [1, 'delivered', true],
      [2, 'delivered', false],
      [2, 'replayed', true],
    ]);
    client.close();
  });

  test('envelope faults: status loses one envelope, disconnect cuts as one arrives; bad envelopes are 400', async () => {
    const fake = await FakeAppServer.start();
    const client = backend.remoteControl.openClient();
    await client.request('initialize', {});
    backend.faults.add({ route: 'remote.ws.envelope', action: { kind: 'status', status: 500 } });
    const lost = client.request('echo', { n: 1 }, 60_000);
    await fake.until((e) => e.type === 'client_message' && e.message?.method === 'echo');
    fake.ws!.send('not json');
    fake.ws!.send(JSON.stringify({ type: 'server_message', client_id: 'c' })); // no stream_id, seq_id
    assert.equal(await client.ping(), 'active'); // the socket stayed open
    const envelopeRecords = backend.requests.filter((r) => r.route === 'remote.ws.envelope');
    assert.deepEqual(
      envelopeRecords.slice(-4).map((r) => r.status),
      [500, 400, 400, 200],
    );
    assert.equal(envelopeRecords.at(-1)!.method, 'WS');

    // Cut as the answer arrives: unacked, it is sent again after the reconnect, and delivered.
    backend.faults.add({ route: 'remote.ws.envelope', action: { kind: 'disconnect' } });
    const closed = new Promise<number>((resolve) => fake.ws!.once('close', resolve));
    client.send({ id: 'n2', method: 'echo', params: { n: 2 } });
    assert.equal(await closed, 1006);
    await fake.connect();
    assert.deepEqual(await client.next(), { id: 'n2', result: { n: 2 } });
    assert.deepEqual(
      backend.remoteControl.serverEnvelopes
        .filter((e) => e.clientId === client.clientId)
        .map((e) => [e.seqId, e.outcome, e.acked]),
      [
        [1, 'delivered', true],
        [2, 'lost', false],
        [3, 'pong', true],
        [4, 'lost', false],
        [4, 'delivered', true],
      ],
    );
    client.close();
    await assert.rejects(lost, /closed/); // the lost answer never came
  });

  test('openClient names what is wrong', async () => {
    assert.throws(
      () => backend.remoteControl.openClient(),
      (e: RemoteClientError) => e.status === 404 && /no app-server is connected/.test(e.message),
    );
    assert.throws(() => backend.remoteControl.openClient({ environmentId: 'env_nope' }), /env_nope/);
    const a = await FakeAppServer.start();
    await FakeAppServer.start();
    assert.throws(
      () => backend.remoteControl.openClient(),
      (e: RemoteClientError) => e.status === 409 && /2 app-servers are connected/.test(e.message),
    );
    assert.throws(
      () => backend.remoteControl.openClient({ environmentId: a.enrollment.environment_id, chunkBytes: 0 }),
      /chunkBytes must be a positive integer/,
    );
  });
});

describe('out of process', () => {
  const controlUrl = (b: LocalBackend, path: string) => `${b.url}/__gatehouse/remote-control${path}`;
  const clientUrl = (query: string) =>
    `${backend.url.replace(/^https/, 'wss')}/__gatehouse/remote-control/client${query}`;

  test('the client endpoint speaks plain JSON-RPC; closing it sends client_closed', async () => {
    const fake = await FakeAppServer.start();
    const query = `?environment_id=${fake.enrollment.environment_id}&client_id=cli_ext&stream_id=s1&chunk_bytes=32`;
    const ws = await openSocket(backend, clientUrl(query));
    const frames: Msg[] = [];
    const got = (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => frames.length >= n && resolve();
        ws.on('message', (data: Buffer) => {
          frames.push(JSON.parse(data.toString('utf8')) as Msg);
          check();
        });
      });
    const two = got(2);
    ws.send(JSON.stringify({ id: 1, method: 'initialize', params: { clientInfo: { name: 'load-tool' } } }));
    ws.send(JSON.stringify({ id: 2, method: 'echo', params: { long: 'y'.repeat(100) } }));
    await two;
    assert.deepEqual(frames, [
      { id: 1, result: { userAgent: 'fake-app-server/1.0' } },
      { id: 2, result: { long: 'y'.repeat(100) } },
    ]);
    const chunked = fake.received.filter(
      (e) => e.type === 'client_message_chunk' && e.client_id === 'cli_ext',
    );
    assert.ok(chunked.length >= 4);
    assert.ok(chunked.every((e) => e.stream_id === 's1'));
    ws.close();
    const closed = await fake.until((e) => e.type === 'client_closed' && e.client_id === 'cli_ext');
    assert.equal(closed.stream_id, 's1');
  });

  test('refusals: bad chunk_bytes 400, unknown environment 404, other paths 404; a plain GET is 426', async () => {
    await assert.rejects(openSocket(backend, clientUrl('?chunk_bytes=0')), { status: 400 });
    await assert.rejects(
      openSocket(backend, clientUrl('?environment_id=env_nope')),
      (e: Refusal) => e.status === 404 && /env_nope/.test(e.body),
    );
    await assert.rejects(openSocket(backend, `${backend.url.replace(/^https/, 'wss')}/__gatehouse/faults`), {
      status: 404,
    });
    const plain = await requestLocalBackend(controlUrl(backend, '/client'), { ca: backend.caCertPem });
    assert.equal(plain.status, 426);
  });

  test('control endpoints: servers, token-ttl, expire-tokens, drop-sockets, forget, envelopes', async () => {
    const b = await startLocalBackend();
    const call = (method: string, path: string, body?: unknown) =>
      requestLocalBackend(controlUrl(b, path), {
        method,
        ca: b.caCertPem,
        ...(body !== undefined
          ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
          : {}),
      });
    try {
      assert.deepEqual(JSON.parse((await call('GET', '/token-ttl')).body), { seconds: 3600 });
      const put = await call('PUT', '/token-ttl', { seconds: 600 });
      assert.equal(put.status, 200);
      assert.deepEqual(JSON.parse(put.body), { seconds: 600 });
      assert.equal((await call('PUT', '/token-ttl', { seconds: -1 })).status, 400);
      assert.equal(b.remoteControl.tokenTtlSec, 600);

      const fake = await FakeAppServer.start(b);
      assert.ok(Date.parse(fake.enrollment.expires_at) <= Date.now() + 600_000);
      const servers = JSON.parse((await call('GET', '/servers')).body) as {
        serverId: string;
        connected: boolean;
      }[];
      assert.deepEqual(
        servers.map((s) => [s.serverId, s.connected]),
        [[fake.enrollment.server_id, true]],
      );

      const client = b.remoteControl.openClient();
      await client.request('initialize', {});
      const envelopes = JSON.parse((await call('GET', '/envelopes')).body) as { outcome: string }[];
      assert.deepEqual(
        envelopes.map((e) => e.outcome),
        ['delivered'],
      );
      assert.equal((await call('DELETE', '/envelopes')).status, 204);
      assert.equal(b.remoteControl.serverEnvelopes.length, 0);

      const dropped = new Promise<number>((resolve) => fake.ws!.once('close', resolve));
      assert.equal((await call('POST', '/drop-sockets')).status, 204);
      assert.equal(await dropped, 1006);

      assert.equal((await call('POST', '/expire-tokens')).status, 204);
      await assert.rejects(fake.connect(), { status: 401 });

      assert.equal((await call('POST', '/forget', { server_id: fake.enrollment.server_id })).status, 204);
      const again = await call('POST', '/forget', { server_id: fake.enrollment.server_id });
      assert.equal(again.status, 404);
      assert.match((JSON.parse(again.body) as { error: string }).error, /no enrolled app-server/);
      assert.equal((await call('POST', '/forget', {})).status, 400);
      assert.deepEqual(JSON.parse((await call('GET', '/servers')).body), []);
      client.close();
    } finally {
      await b.close();
    }
  });
});

describe('lifecycle and secrets', () => {
  test('the token TTL option is checked', async () => {
    await assert.rejects(startLocalBackend({ remoteControlTokenTtlSec: -1 }), LocalBackendError);
    await assert.rejects(startLocalBackend({ remoteControlTokenTtlSec: 1.5 }), /remoteControlTokenTtlSec/);
    assert.throws(() => {
      backend.remoteControl.tokenTtlSec = -3;
    }, RangeError);
  });

  test('tokens die at their expires_at, by the enrollments clock', () => {
    let now = Date.parse('2026-11-20T21:45:03.700Z');
    const enrollments = new RemoteEnrollments(3600, () => now);
    const answer = enrollments.enroll({
      name: 'vm',
      installationId: 'i',
      accountId: 'a',
      os: 'linux',
      arch: 'x86_64',
      appServerVersion: '1',
    });
    assert.equal(answer.expires_at, '2026-11-20T22:45:03Z');
    const bearer = `Bearer ${answer.remote_control_token}`;
    now = Date.parse('2026-11-20T22:45:02.999Z');
    assert.equal(enrollments.admit(bearer, answer.server_id).ok, true);
    now = Date.parse('2026-11-20T22:45:03.000Z');
    assert.deepEqual(enrollments.admit(bearer, answer.server_id), {
      ok: false,
      status: 401,
      detail: 'Unauthorized',
    });
    assert.equal(rfc3339Seconds(0), '1970-01-01T00:00:00Z');
  });

  test('close() rejects pending waits and requests; tokens never reach the log', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    const b = await startLocalBackend({ log });
    const fake = await FakeAppServer.start(b);
    const refreshed = await post(b, REFRESH, { server_id: fake.enrollment.server_id, installation_id: 'i' });
    const client = b.remoteControl.openClient();
    await client.request('initialize', {});
    fake.ws!.pause(); // the app-server stops reading: the next request stays pending
    const pending = client.request('echo', {}, 60_000);
    const waiting = b.remoteControl.waitForServer(() => false, 60_000);
    await b.close();
    await assert.rejects(pending, /the local backend closed/);
    await assert.rejects(waiting, /the local backend closed/);
    const text = lines.join('');
    assert.match(text, /remote\.enroll/);
    for (const token of [
      fake.enrollment.remote_control_token,
      (JSON.parse(refreshed.body) as EnrollAnswer).remote_control_token,
      accessToken,
    ]) {
      assert.ok(!text.includes(token), 'a token was logged');
    }
    assert.ok(!text.includes('rct_'));
  });
});
