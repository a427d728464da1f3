/**
 * Attestation through the built CLI against the local backend (spec D): which client is asked,
 * the `x-oai-attestation` envelope on every scoped request for each client behaviour, no header
 * on unscoped requests, for clients that did not opt in, or under API-key auth.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RecordedRequest } from '../../src/backend/local-backend.js';
import { chatgptToken, spawnAgainst, useLocalBackend } from '../helpers/local-backend.js';
import { TestClient, type RpcMessage } from '../helpers/app-server-process.js';

const backend = useLocalBackend();

type T = { after(fn: () => Promise<void>): void };

/** How the test client answers `attestation/generate`. */
type Behaviour = (client: TestClient, request: RpcMessage, n: number) => void;

const answers = {
  token: (client, request, n) => void client.answer(request.id!, { result: { token: `v1.token-${n}` } }),
  error: (client, request) =>
    void client.answer(request.id!, { error: { code: -32000, message: 'no attestation today' } }),
  nonString: (client, request) => void client.answer(request.id!, { result: { token: 5 } }),
  noToken: (client, request) => void client.answer(request.id!, { result: {} }),
  huge: (client, request) => void client.answer(request.id!, { result: { token: 'h'.repeat(100_000) } }),
  nonAscii: (client, request) => void client.answer(request.id!, { result: { token: 'jeton-é' } }),
  late: (client, request) => {
    setTimeout(() => void client.answer(request.id!, { result: { token: 'too-late' } }), 400);
  },
  never: () => {},
} satisfies Record<string, Behaviour>;

/** A client logged in with host tokens that answers attestation requests with `behaviour`. */
async function client(
  t: T,
  opts: { behaviour?: Behaviour; capable?: boolean; args?: string[]; apiKey?: boolean } = {},
): Promise<{ client: TestClient; asked: RpcMessage[]; refreshed: string[]; accessToken: string }> {
  const c = spawnAgainst(t, backend, opts.args);
  const asked: RpcMessage[] = [];
  const refreshed: string[] = [];
  c.onMessage((m) => {
    // A host that owns its tokens answers refresh requests at once with new ones.
    if (m.method === 'account/chatgptAuthTokens/refresh') {
      const accessToken = chatgptToken();
      refreshed.push(accessToken);
      void c.answer(m.id!, { result: { accessToken, chatgptAccountId: 'acct-1', chatgptPlanType: null } });
      return;
    }
    if (m.method !== 'attestation/generate') return;
    asked.push(m);
    (opts.behaviour ?? answers.token)(c, m, asked.length);
  });
  await c.initialize({ experimentalApi: true, requestAttestation: opts.capable ?? true });
  const accessToken = chatgptToken();
  if (opts.apiKey) {
    await c.request('account/login/start', { type: 'apiKey', apiKey: 'sk-attest-test' });
  } else {
    await c.request('account/login/start', {
      type: 'chatgptAuthTokens',
      accessToken,
      chatgptAccountId: 'acct-1',
    });
  }
  await c.readUntilNotification('account/updated');
  return { client: c, asked, refreshed, accessToken };
}

/** thread/start (which opens the WebSocket: the prewarm) and one text turn to its end. */
async function turn(c: TestClient, text = 'attest me'): Promise<{ threadId: string; status: string }> {
  const thread = await c.request('thread/start', {});
  const threadId = (thread.result as { thread: { id: string } }).thread.id;
  const started = await c.request('turn/start', { threadId, input: [{ type: 'text', text }] });
  const turnId = (started.result as { turn: { id: string } }).turn.id;
  const done = await c.readUntil(
    (m) => m.method === 'turn/completed' && (m.params as { turn: { id: string } }).turn.id === turnId,
    `turn/completed for ${turnId}`,
  );
  return { threadId, status: (done.params as { turn: { status: string } }).turn.status };
}

const ATTESTATION = 'x-oai-attestation';
const routed = (route: string) => backend.requests.filter((r) => r.route === route);
/** The envelope a request carried, after the local backend's own check found it well formed. */
const envelope = (r: RecordedRequest) => {
  const value = r.headers[ATTESTATION];
  if (value === undefined) {
    assert.equal(r.attestation, undefined);
    return undefined;
  }
  assert.equal(r.attestation?.ok, true, JSON.stringify(r.attestation));
  return JSON.parse(value) as { v: number; s: number; t?: string };
};

describe('a capable client, ChatGPT auth: every scoped request carries a fresh envelope', () => {
  test('WebSocket: the handshake asks once; a second turn on the open socket asks nothing', async (t) => {
    const { client: c, asked } = await client(t);
    const { threadId, status } = await turn(c);
    assert.equal(status, 'completed');
    const started = await c.request('turn/start', { threadId, input: [{ type: 'text', text: 'again' }] });
    assert.equal(started.error, undefined);
    await c.readUntilNotification('turn/completed');
    const handshakes = routed('responses.ws');
    assert.equal(handshakes.length, 1);
    assert.deepEqual(envelope(handshakes[0]!), { v: 1, s: 0, t: 'v1.token-1' });
    assert.equal(
      handshakes[0]!.headers[ATTESTATION],
      '{"v":1,"s":0,"t":"v1.token-1"}',
      'compact, in this key order',
    );
    assert.equal(asked.length, 1, 'one handshake, one request');
    assert.deepEqual(asked[0]!.params, {});
  });

  test('HTTP after the WebSocket fails: each handshake attempt and each POST asks again (no caching)', async (t) => {
    backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 503 }, times: -1 });
    backend.faults.add({ route: 'responses.http', action: { kind: 'status', status: 503 }, times: 1 });
    const { client: c, asked } = await client(t, { args: ['-c', 'gatehouse.stream_max_retries=1'] });
    const { status } = await turn(c);
    assert.equal(status, 'completed');
    const scoped = backend.requests.filter((r) => r.route === 'responses.ws' || r.route === 'responses.http');
    // prewarm + first attempt + 1 retry over WebSocket, then a failed POST and its retry.
    assert.deepEqual(
      scoped.map((r) => r.route),
      ['responses.ws', 'responses.ws', 'responses.ws', 'responses.http', 'responses.http'],
    );
    assert.deepEqual(
      scoped.map((r) => envelope(r)?.t),
      scoped.map((_, i) => `v1.token-${i + 1}`),
      'each request carries the answer to its own attestation request',
    );
    assert.equal(asked.length, scoped.length);
  });
});

test('racing a token refresh: the 401 handshake and its retry each carry their own envelope', async (t) => {
  const { client: c, asked, refreshed, accessToken } = await client(t);
  backend.revokeBearer(accessToken);
  const { status } = await turn(c);
  assert.equal(status, 'completed');
  assert.equal(refreshed.length, 1);
  const handshakes = routed('responses.ws');
  assert.deepEqual(
    handshakes.map((h) => [h.status, h.headers.authorization, envelope(h)]),
    [
      [401, `Bearer ${accessToken}`, { v: 1, s: 0, t: 'v1.token-1' }],
      [101, `Bearer ${refreshed[0]}`, { v: 1, s: 0, t: 'v1.token-2' }],
    ],
  );
  assert.equal(asked.length, 2);
});

describe('each client behaviour gets its status; the request still goes out and the turn completes', () => {
  const cases: [name: keyof typeof answers, expected: { v: number; s: number; t?: string } | undefined][] = [
    ['error', { v: 1, s: 2 }],
    ['nonString', { v: 1, s: 4 }],
    ['noToken', { v: 1, s: 4 }],
    ['huge', { v: 1, s: 4 }],
    ['late', { v: 1, s: 1 }],
    ['never', { v: 1, s: 1 }],
    // Not a legal header value once encoded: the header is left out (spec D.3).
    ['nonAscii', undefined],
  ];
  for (const [name, expected] of cases) {
    test(`${name}: ${expected ? JSON.stringify(expected) : 'no header'}`, async (t) => {
      const { client: c, asked } = await client(t, { behaviour: answers[name] });
      const { status } = await turn(c);
      assert.equal(status, 'completed');
      const [handshake] = routed('responses.ws');
      assert.ok(handshake, 'the handshake went out');
      assert.deepEqual(envelope(handshake), expected);
      assert.equal(asked.length, 1);
      if (name === 'late') {
        // The late answer is ignored: logged, no reply, and the server goes on serving.
        await c.waitForStderr('could not find callback');
        assert.equal((await c.request('account/read', {})).error, undefined);
      }
      const log = c.logRecords.map((r) => JSON.stringify(r)).join('\n');
      assert.ok(!log.includes('h'.repeat(64)) && !log.includes('jeton'), 'no token in the log');
    });
  }
});

describe('no attestation request and no header', () => {
  test('a client that did not say requestAttestation', async (t) => {
    const { client: c, asked } = await client(t, { capable: false });
    assert.equal((await turn(c)).status, 'completed');
    assert.equal(asked.length, 0);
    assert.equal(routed('responses.ws')[0]!.headers[ATTESTATION], undefined);
  });

  test('API-key auth, even for a capable client', async (t) => {
    const { client: c, asked } = await client(t, { apiKey: true });
    assert.equal((await turn(c)).status, 'completed');
    assert.equal(asked.length, 0);
    const posts = routed('responses.http');
    assert.equal(posts.length, 1);
    assert.equal(posts[0]!.headers[ATTESTATION], undefined);
  });

  test('unscoped endpoints: workspace discovery and the config bundle never carry it', async (t) => {
    const { client: c, asked } = await client(t);
    assert.equal((await c.request('account/read', {})).error, undefined);
    const unscoped = backend.requests.filter(
      (r) => r.route === 'accounts.check' || r.route === 'config.bundle',
    );
    assert.ok(unscoped.length >= 1);
    for (const r of unscoped) assert.equal(r.headers[ATTESTATION], undefined, r.route);
    assert.equal(asked.length, 0, 'nothing scoped went out yet');
  });
});

describe('compaction and realtime call creation (spec D.1)', () => {
  test('compaction on the open WebSocket adds no request; over HTTP each POST asks again', async (t) => {
    const { client: c, asked } = await client(t);
    const { threadId } = await turn(c);
    assert.equal(asked.length, 1, 'the turn handshake');
    const compacted = await c.request('thread/compact/start', { threadId });
    assert.deepEqual(compacted.result, {});
    await c.readUntilNotification('turn/completed');
    assert.equal(asked.length, 1, 'a response.create frame on the open socket is not a new scoped request');
    assert.equal(routed('responses.ws.create').length, 2);

    // The WebSocket refused from now on: the next compaction falls back to a scoped POST.
    const http = await client(t, { args: ['-c', 'gatehouse.stream_max_retries=0'] });
    backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 503 }, times: -1 });
    const before = routed('responses.http').length;
    const fresh = await http.client.request('thread/start', {});
    const freshId = (fresh.result as { thread: { id: string } }).thread.id;
    await http.client.request('thread/compact/start', { threadId: freshId });
    await http.client.readUntilNotification('turn/completed');
    const posts = routed('responses.http').slice(before);
    assert.equal(posts.length, 1);
    assert.equal(envelope(posts[0]!)?.s, 0);
    assert.equal(envelope(posts[0]!)?.t, `v1.token-${http.asked.length}`);
  });

  test('realtime call creation carries a fresh envelope', async (t) => {
    const { client: c, asked } = await client(t);
    const thread = await c.request('thread/start', {});
    const threadId = (thread.result as { thread: { id: string } }).thread.id;
    const reply = await c.request('thread/realtime/start', {
      threadId,
      outputModality: 'audio',
      prompt: 'Hello.',
      transport: { type: 'webrtc', sdp: 'v=0\r\n' },
      voice: 'marin',
    });
    assert.deepEqual(reply.result, {});
    await c.readUntilNotification('thread/realtime/closed');
    const [call] = routed('realtime.calls');
    assert.ok(call, 'the call was created');
    assert.deepEqual(envelope(call), { v: 1, s: 0, t: `v1.token-${asked.length}` });
    assert.equal(asked.length, 1);
  });
});
