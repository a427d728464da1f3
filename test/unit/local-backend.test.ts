/**
 * The local backend over real loopback sockets: start options, the bearer check, each
 * `/backend-api` endpoint, Responses over SSE and over the WebSocket, recorded requests.
 * (The issuer, faults and the control API have their own files.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { requestLocalBackend, type BackendResponse } from '../../src/backend/control-client.js';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import { MAX_RECORDED_REQUESTS, recordRequest, type RecordedRequest } from '../../src/backend/request-log.js';
import { chatgptClaims, mintJwt, readClaims } from '../../src/backend/tokens.js';

let backend: LocalBackend;

before(async () => {
  backend = await startLocalBackend();
});
after(() => backend.close());

function jwt(opts: { planType?: string; expiresInSec?: number } = {}): string {
  return mintJwt(
    chatgptClaims({
      email: 'dev@example.com',
      accountId: 'acct-1',
      userId: 'user-1',
      planType: opts.planType ?? 'plus',
      expiresInSec: opts.expiresInSec ?? 3600,
    }),
  );
}

function call(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<BackendResponse> {
  const body = init.body === undefined ? undefined : JSON.stringify(init.body);
  return requestLocalBackend(`${backend.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
    ...(body !== undefined ? { body } : {}),
    ca: backend.caCertPem,
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/**
 * A Responses event or error frame, as parsed JSON: the fields these tests read, typed as present
 * (an absent one fails the test where it is read).
 */
interface Frame {
  type: string;
  status?: number;
  delta: string;
  item_id?: string;
  response: {
    id: string;
    status: string;
    usage: { input_tokens: number; output_tokens: number; total_tokens: number };
  };
  item: {
    type: string;
    id: string;
    role: string;
    status: string;
    content: { type: string; text: string }[];
  };
  error: { type: string; message: string };
}

interface SseEvent {
  event: string;
  data: Frame;
}

function parseSse(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))!.slice(7);
      const data = JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as SseEvent['data'];
      return { event, data };
    });
}

const userInput = (text: string) => [
  { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
];

describe('starting', () => {
  test('urls, the CA file (0600) and its removal with a temporary state dir', async () => {
    const b = await startLocalBackend({ port: 0 });
    assert.match(b.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(b.chatgptBaseUrl, `${b.url}/backend-api`);
    assert.equal(b.issuer, b.url);
    assert.equal(readFileSync(b.caCertPath, 'utf8'), b.caCertPem);
    assert.equal(statSync(b.caCertPath).mode & 0o777, 0o600);
    assert.deepEqual(b.user, {
      email: 'dev@example.com',
      accountId: 'acct-1',
      userId: 'user-1',
      planType: 'plus',
    });
    await b.close();
    await b.close(); // twice is fine
    assert.equal(existsSync(b.caCertPath), false);
  });

  test('a given state dir is created and kept', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gh-lb-')), 'nested', 'state');
    const b = await startLocalBackend({ stateDir: dir, user: { planType: 'pro' } });
    assert.equal(b.caCertPath, join(dir, 'ca.pem'));
    assert.equal(b.user.planType, 'pro');
    await b.close();
    assert.equal(existsSync(b.caCertPath), true);
  });

  test('hosts that are not loopback are refused with a clear error', async () => {
    for (const host of ['0.0.0.0', '192.168.1.10', '::', 'example.com']) {
      await assert.rejects(startLocalBackend({ host }), /listens on loopback only .*not "/);
    }
    await assert.rejects(startLocalBackend({ port: 70000 }), /port must be an integer from 0 to 65535/);
    await assert.rejects(startLocalBackend({ responseDelayMs: -1 }), /responseDelayMs must be/);
  });

  test('::1 works where the machine has IPv6 loopback', async (t) => {
    let b: LocalBackend;
    try {
      b = await startLocalBackend({ host: '::1' });
    } catch (e) {
      t.skip(`no IPv6 loopback: ${(e as Error).message}`);
      return;
    }
    t.after(() => b.close());
    assert.match(b.url, /^https:\/\/\[::1\]:\d+$/);
    const answer = await requestLocalBackend(`${b.chatgptBaseUrl}/wham/config/bundle`, {
      headers: bearer('sk-test'),
      ca: b.caCertPem,
    });
    assert.equal(answer.status, 200);
  });
});

describe('bearer check', () => {
  const path = '/backend-api/wham/config/bundle';

  test('a missing, malformed, expired or revoked bearer gets 401 {"detail":"Unauthorized"}', async () => {
    const revokedToken = jwt();
    backend.revokeBearer(revokedToken);
    const cases: Record<string, Record<string, string>> = {
      missing: {},
      'not bearer': { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      'not a JWT': bearer('hello'),
      'payload not JSON': bearer('aGVhZA.bm90IGpzb24.c2ln'),
      expired: bearer(jwt({ expiresInSec: -5 })),
      'exp not a number': bearer(mintJwt({ exp: 'tomorrow' })),
      revoked: bearer(revokedToken),
    };
    for (const [name, headers] of Object.entries(cases)) {
      const answer = await call(path, { headers });
      assert.equal(answer.status, 401, name);
      assert.equal(answer.headers['content-type'], 'application/json');
      assert.deepEqual(JSON.parse(answer.body), { detail: 'Unauthorized' }, name);
    }
  });

  test('API keys, JWTs without exp and unexpired JWTs are accepted; revoking an API key works', async () => {
    assert.equal((await call(path, { headers: bearer('sk-local-123') })).status, 200);
    assert.equal((await call(path, { headers: bearer(mintJwt({ sub: 'x' })) })).status, 200);
    assert.equal((await call(path, { headers: bearer(jwt()) })).status, 200);
    backend.revokeBearer('sk-revoked');
    assert.equal((await call(path, { headers: bearer('sk-revoked') })).status, 401);
  });

  test('minted JWTs are three non-empty base64url parts with the codex claim layout', () => {
    const token = jwt({ planType: 'business' });
    const parts = token.split('.');
    assert.equal(parts.length, 3);
    assert.ok(parts.every((p) => /^[A-Za-z0-9_-]+$/.test(p)));
    assert.deepEqual(JSON.parse(Buffer.from(parts[0]!, 'base64url').toString()), {
      alg: 'HS256',
      typ: 'JWT',
    });
    const claims = readClaims(token)!;
    assert.equal(claims.email, 'dev@example.com');
    assert.equal((claims.exp as number) - (claims.iat as number), 3600);
    assert.deepEqual(claims['https://api.openai.com/auth'], {
      chatgpt_plan_type: 'business',
      chatgpt_user_id: 'user-1',
      user_id: 'user-1',
      chatgpt_account_id: 'acct-1',
    });
    assert.deepEqual(claims['https://api.openai.com/profile'], { email: 'dev@example.com' });
  });
});

describe('endpoints', () => {
  test('accounts/check: the selected account, plan from the JWT (else pro)', async () => {
    const answer = await call('/backend-api/wham/accounts/check', {
      headers: { ...bearer(jwt({ planType: 'team' })), 'chatgpt-account-id': 'acct-7' },
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), {
      accounts: [
        {
          id: 'acct-7',
          plan_type: 'team',
          workspace_backend_origin: 'NO_CONSTRAINT',
          account_routing_override: 'NO_CONSTRAINT',
          structure: 'personal',
        },
      ],
      account_ordering: ['acct-7'],
      default_account_id: 'acct-7',
    });
    const withKey = await call('/backend-api/wham/accounts/check', {
      headers: { ...bearer('sk-x'), 'chatgpt-account-id': 'acct-1' },
    });
    assert.equal(
      (JSON.parse(withKey.body) as { accounts: { plan_type: string }[] }).accounts[0]!.plan_type,
      'pro',
    );
  });

  test('accounts/check without chatgpt-account-id is a 400 that says so', async () => {
    const answer = await call('/backend-api/wham/accounts/check', { headers: bearer(jwt()) });
    assert.equal(answer.status, 400);
    assert.deepEqual(JSON.parse(answer.body), { detail: 'missing chatgpt-account-id header' });
  });

  test('config bundle is {}; realtime calls answer 201 with a call id', async () => {
    const bundle = await call('/backend-api/wham/config/bundle', { headers: bearer(jwt()) });
    assert.deepEqual([bundle.status, JSON.parse(bundle.body)], [200, {}]);
    const calls = await call('/backend-api/codex/realtime/calls?intent=quicksilver&architecture=avas', {
      method: 'POST',
      headers: { ...bearer(jwt()), 'content-type': 'application/sdp' },
      body: 'v=0',
    });
    assert.equal(calls.status, 201);
    assert.match((JSON.parse(calls.body) as { id: string }).id, /^call_[0-9a-f]+$/);
  });

  test('unknown paths 404, wrong methods 405, a plain GET of the WebSocket endpoint 426', async () => {
    const missing = await call('/backend-api/codex/models', { headers: bearer(jwt()) });
    assert.deepEqual([missing.status, JSON.parse(missing.body)], [404, { detail: 'Not Found' }]);
    const wrong = await call('/backend-api/wham/config/bundle', { method: 'DELETE', headers: bearer(jwt()) });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.allow, 'GET');
    assert.equal((await call('/backend-api/codex/responses', { headers: bearer(jwt()) })).status, 426);
  });
});

describe('Responses over HTTP (SSE)', () => {
  const post = (body: unknown, headers: Record<string, string> = bearer(jwt())) =>
    call('/backend-api/codex/responses', {
      method: 'POST',
      headers: { accept: 'text/event-stream', ...headers },
      body,
    });

  test('events arrive in order, with the echo of the last user text split into deltas', async () => {
    const answer = await post({
      model: 'gpt-test',
      stream: true,
      input: [
        ...userInput('first'),
        { type: 'message', role: 'assistant', content: [] },
        ...userInput('hi there'),
      ],
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['content-type'], 'text/event-stream');
    assert.equal(answer.truncated, false);
    const events = parseSse(answer.body);
    for (const e of events) assert.equal(e.event, e.data.type);
    const types = events.map((e) => e.data.type);
    const deltas = events.filter((e) => e.data.type === 'response.output_text.delta');
    assert.ok(deltas.length >= 2, 'several deltas');
    assert.deepEqual(types, [
      'response.created',
      'response.output_item.added',
      ...deltas.map(() => 'response.output_text.delta'),
      'response.output_item.done',
      'response.completed',
    ]);
    const [created, added] = events.map((e) => e.data) as [Frame, Frame];
    const done = events.at(-2)!.data;
    const completed = events.at(-1)!.data;
    assert.match(created.response.id, /^resp_/);
    assert.equal(created.response.status, 'in_progress');
    assert.equal(completed.response.id, created.response.id);
    assert.equal(completed.response.status, 'completed');
    assert.equal(
      completed.response.usage.total_tokens,
      completed.response.usage.input_tokens + completed.response.usage.output_tokens,
    );
    assert.deepEqual(added.item, {
      type: 'message',
      id: added.item.id,
      role: 'assistant',
      status: 'in_progress',
      content: [],
    });
    assert.match(added.item.id, /^msg_/);
    for (const d of deltas) {
      assert.deepEqual(Object.keys(d.data).sort(), [
        'content_index',
        'delta',
        'item_id',
        'output_index',
        'type',
      ]);
      assert.equal(d.data.item_id, added.item.id);
    }
    assert.equal(deltas.map((d) => d.data.delta).join(''), 'Echo: hi there');
    assert.deepEqual(done.item, {
      type: 'message',
      id: added.item.id,
      role: 'assistant',
      status: 'completed',
      content: [{ type: 'output_text', text: 'Echo: hi there' }],
    });
  });

  test('a compaction trigger gets a normal short answer; bad bodies get a 400 that says why', async () => {
    const compaction = parseSse((await post({ stream: true, input: [{ type: 'compaction_trigger' }] })).body);
    assert.equal(compaction.at(-1)!.data.type, 'response.completed');
    assert.equal(compaction.at(-2)!.data.item.content[0]!.text, 'Compacted.');

    const notJson = await call('/backend-api/codex/responses', {
      method: 'POST',
      headers: { ...bearer(jwt()), 'content-type': 'application/json' },
      body: undefined,
    });
    assert.equal(notJson.status, 400);
    const noInput = await post({ stream: true, model: 'x' });
    assert.equal(noInput.status, 400);
    assert.match((JSON.parse(noInput.body) as Frame).error.message, /"input" must be an array/);
    const notStreaming = await post({ stream: false, input: [] });
    assert.match((JSON.parse(notStreaming.body) as Frame).error.message, /only streams/);
    assert.equal((await post({ stream: true, input: [] }, {})).status, 401);
  });

  test('responseDelayMs spaces the events out', async (t) => {
    const slow = await startLocalBackend({ responseDelayMs: 40 });
    t.after(() => slow.close());
    const started = Date.now();
    const answer = await requestLocalBackend(`${slow.chatgptBaseUrl}/codex/responses`, {
      method: 'POST',
      headers: { ...bearer('sk-x'), 'content-type': 'application/json' },
      body: JSON.stringify({ stream: true, input: userInput('slow') }),
      ca: slow.caCertPem,
    });
    const events = parseSse(answer.body);
    assert.ok(Date.now() - started >= 40 * (events.length - 1) - 5, `${Date.now() - started} ms`);
  });
});

describe('Responses WebSocket', () => {
  const wsUrl = () => `${backend.chatgptBaseUrl.replace(/^https/, 'wss')}/codex/responses`;

  function open(headers: Record<string, string>): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl(), { headers, ca: backend.caCertPem });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () =>
          reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body })),
        );
      });
      ws.once('error', reject);
    });
  }

  /** Collects frames until `response.completed` or an error frame. */
  function answer(ws: WebSocket, frame: unknown): Promise<Frame[]> {
    return new Promise((resolve, reject) => {
      const frames: Frame[] = [];
      const onMessage = (data: Buffer) => {
        const parsed = JSON.parse(data.toString('utf8')) as Frame;
        frames.push(parsed);
        if (parsed.type === 'response.completed' || parsed.type === 'error') {
          ws.off('message', onMessage);
          resolve(frames);
        }
      };
      ws.on('message', onMessage);
      ws.once('close', () => reject(new Error(`closed after ${frames.length} frames`)));
      ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    });
  }

  test('the handshake checks the bearer: 401 with the JSON body, or an open socket', async () => {
    await assert.rejects(open({}), { status: 401, body: '{"detail":"Unauthorized"}' });
    await assert.rejects(open(bearer(jwt({ expiresInSec: -1 }))), { status: 401 });
    const ws = await open(bearer(jwt()));
    ws.close();
  });

  test('two response.create on one socket are answered in turn, one event per text frame', async () => {
    const ws = await open(bearer(jwt()));
    try {
      const first = await answer(ws, { type: 'response.create', model: 'm', input: userInput('one') });
      const second = await answer(ws, { type: 'response.create', model: 'm', input: userInput('two') });
      for (const [frames, text] of [
        [first, 'Echo: one'],
        [second, 'Echo: two'],
      ] as const) {
        assert.equal(frames[0]!.type, 'response.created');
        assert.equal(frames[1]!.type, 'response.output_item.added');
        assert.equal(frames.at(-1)!.type, 'response.completed');
        assert.equal(frames.at(-2)!.item.content[0]!.text, text);
        assert.equal(
          frames
            .filter((f) => f.type === 'response.output_text.delta')
            .map((f) => f.delta)
            .join(''),
          text,
        );
      }
      assert.notEqual(first[0]!.response.id, second[0]!.response.id);
    } finally {
      ws.close();
    }
  });

  test('frames sent back to back are answered in order', async () => {
    const ws = await open(bearer('sk-x'));
    try {
      const texts: string[] = [];
      const all = new Promise<void>((resolve) => {
        ws.on('message', (data: Buffer) => {
          const f = JSON.parse(data.toString());
          if (f.type === 'response.output_item.done') texts.push(f.item.content[0]!.text);
          if (texts.length === 3) resolve();
        });
      });
      for (const t of ['a', 'b', 'c'])
        ws.send(JSON.stringify({ type: 'response.create', input: userInput(t) }));
      await all;
      assert.deepEqual(texts, ['Echo: a', 'Echo: b', 'Echo: c']);
    } finally {
      ws.close();
    }
  });

  test('malformed frames get an error frame and the socket stays open', async () => {
    const ws = await open(bearer(jwt()));
    try {
      const notJson = await answer(ws, 'not json');
      assert.deepEqual(notJson, [
        {
          type: 'error',
          status: 400,
          error: { type: 'invalid_request_error', message: 'the frame is not JSON' },
        },
      ]);
      const wrongType = await answer(ws, { type: 'session.update' });
      assert.match(
        wrongType[0]!.error.message,
        /unsupported message type "session.update": expected "response.create"/,
      );
      const noInput = await answer(ws, { type: 'response.create' });
      assert.match(noInput[0]!.error.message, /"input" must be an array/);
      const ok = await answer(ws, { type: 'response.create', input: userInput('still here') });
      assert.equal(ok.at(-2)!.item.content[0]!.text, 'Echo: still here');
    } finally {
      ws.close();
    }
  });
});

describe('recorded requests', () => {
  test('route, method, path, status and the headers as received', async () => {
    backend.requests.length = 0;
    const token = jwt();
    await call('/backend-api/wham/accounts/check?x=1', {
      headers: {
        ...bearer(token),
        'chatgpt-account-id': 'acct-1',
        'X-OAI-Attestation': '{"v":1,"s":0,"t":"tok"}',
      },
    });
    await call('/backend-api/wham/config/bundle');
    await call('/nowhere');
    const [check, bundle, nowhere] = backend.requests;
    assert.equal(backend.requests.length, 3);
    assert.equal(check!.route, 'accounts.check');
    assert.equal(check!.method, 'GET');
    assert.equal(check!.path, '/backend-api/wham/accounts/check?x=1');
    assert.equal(check!.status, 200);
    assert.equal(check!.headers.authorization, `Bearer ${token}`);
    assert.equal(check!.headers['chatgpt-account-id'], 'acct-1');
    assert.equal(check!.headers['x-oai-attestation'], '{"v":1,"s":0,"t":"tok"}');
    assert.ok(Math.abs(check!.at - Date.now()) < 5000);
    assert.deepEqual([bundle!.route, bundle!.status], ['config.bundle', 401]);
    assert.deepEqual([nowhere!.route, nowhere!.status], ['unmatched', 404]);
  });

  test('WebSocket handshakes and each response.create are recorded', async () => {
    backend.requests.length = 0;
    const ws = new WebSocket(`${backend.chatgptBaseUrl.replace(/^https/, 'wss')}/codex/responses`, {
      headers: bearer('sk-x'),
      ca: backend.caCertPem,
    });
    await new Promise((resolve) => ws.once('open', resolve));
    const completed = new Promise<void>((resolve) =>
      ws.on('message', (d: Buffer) => JSON.parse(d.toString()).type === 'response.completed' && resolve()),
    );
    ws.send(JSON.stringify({ type: 'response.create', input: userInput('x') }));
    await completed;
    ws.close();
    assert.deepEqual(
      backend.requests.map((r) => [r.route, r.method, r.status]),
      [
        ['responses.ws', 'GET', 101],
        ['responses.ws.create', 'WS', 200],
      ],
    );
    assert.equal(backend.requests[0]!.headers.authorization, 'Bearer sk-x');
  });

  test('the log keeps the newest 10,000 entries', () => {
    const log: RecordedRequest[] = [];
    for (let i = 0; i < MAX_RECORDED_REQUESTS + 5; i++) {
      recordRequest(log, {
        at: i,
        route: 'config.bundle',
        method: 'GET',
        path: '/',
        status: 200,
        headers: {},
      });
    }
    assert.equal(log.length, MAX_RECORDED_REQUESTS);
    assert.equal(log[0]!.at, 5);
    assert.equal(log.at(-1)!.at, MAX_RECORDED_REQUESTS + 4);
  });
});
