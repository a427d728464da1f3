/**
 * Scripted faults of the local backend (each kind, `times`, `*`, mid-stream disconnects over SSE
 * and the WebSocket) and the control API that other processes use, over real sockets.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import {
  LocalBackendControl,
  requestLocalBackend,
  type BackendResponse,
} from '../../src/backend/control-client.js';
import { Faults, parseFaultRule } from '../../src/backend/faults.js';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';

let backend: LocalBackend;
before(async () => {
  backend = await startLocalBackend();
});
afterEach(() => backend.faults.clear());
after(() => backend.close());

const auth = { authorization: 'Bearer sk-test', 'chatgpt-account-id': 'acct-1' };
const userInput = (text: string) => [
  { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
];

function get(path: string, headers: Record<string, string> = auth): Promise<BackendResponse> {
  return requestLocalBackend(`${backend.chatgptBaseUrl}${path}`, { headers, ca: backend.caCertPem });
}

function postResponses(text = 'x'): Promise<BackendResponse> {
  return requestLocalBackend(`${backend.chatgptBaseUrl}/codex/responses`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ stream: true, input: userInput(text) }),
    ca: backend.caCertPem,
  });
}

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

const sseTypes = (body: string) =>
  body
    .split('\n\n')
    .filter((b) => b.startsWith('event: '))
    .map((b) => b.split('\n')[0]!.slice(7));

describe('fault rules are checked strictly', () => {
  test('good rules are normalised; times -1 and Infinity mean always', () => {
    assert.deepEqual(parseFaultRule({ route: 'accounts.check', action: { kind: 'disconnect' } }), {
      route: 'accounts.check',
      action: { kind: 'disconnect', afterEvents: 0 },
      times: 1,
    });
    assert.equal(
      parseFaultRule({ route: '*', action: { kind: 'slow', delayMs: 5 }, times: -1 }).times,
      Infinity,
    );
    const faults = new Faults();
    assert.equal(faults.add({ route: '*', action: { kind: 'slow', delayMs: 5 }, times: Infinity }).times, -1);
  });

  test('each mistake is named', () => {
    const cases: [unknown, RegExp][] = [
      [null, /a fault rule must be a JSON object; got null/],
      [[], /a fault rule must be a JSON object/],
      [
        { route: 'accounts', action: { kind: 'slow', delayMs: 1 } },
        /route must be one of "accounts.check", .*"\*"; got "accounts"/,
      ],
      [{ route: '*', action: { kind: 'slow', delayMs: 1 }, extra: 1 }, /unknown field "extra" in fault rule/],
      [{ route: '*' }, /action must be a JSON object; got nothing/],
      [
        { route: '*', action: { kind: 'explode' } },
        /action.kind must be "status", "slow" or "disconnect"; got "explode"/,
      ],
      [
        { route: '*', action: { kind: 'status', status: 99 } },
        /action.status must be an HTTP status from 200 to 599; got 99/,
      ],
      [{ route: '*', action: { kind: 'status', status: 500, body: 1 } }, /action.body must be a string/],
      [
        { route: '*', action: { kind: 'status', status: 500, retryAfterSec: -1 } },
        /retryAfterSec must be an integer/,
      ],
      [
        { route: '*', action: { kind: 'status', status: 500, delayMs: 1 } },
        /unknown field "delayMs" in status action/,
      ],
      [
        { route: '*', action: { kind: 'slow', delayMs: 1.5 } },
        /action.delayMs must be an integer from 0 to 600000; got 1.5/,
      ],
      [
        { route: '*', action: { kind: 'disconnect', afterEvents: -1 } },
        /afterEvents must be a non-negative integer/,
      ],
      [
        { route: '*', action: { kind: 'slow', delayMs: 1 }, times: 0 },
        /times must be a positive integer, or -1/,
      ],
      [{ route: '*', action: { kind: 'slow', delayMs: 1 }, times: '2' }, /times must be/],
    ];
    for (const [rule, message] of cases)
      assert.throws(() => parseFaultRule(rule), message, JSON.stringify(rule));
  });
});

describe('faults over HTTP', () => {
  test('status: the scripted answer, before the bearer is looked at, `times` times', async () => {
    backend.faults.add({
      route: 'config.bundle',
      action: { kind: 'status', status: 503, retryAfterSec: 7 },
      times: 2,
    });
    for (let i = 0; i < 2; i++) {
      const answer = await get('/wham/config/bundle', {}); // no bearer at all
      assert.equal(answer.status, 503);
      assert.equal(answer.headers['retry-after'], '7');
      assert.deepEqual(JSON.parse(answer.body), { detail: 'Service Unavailable' });
    }
    assert.equal((await get('/wham/config/bundle')).status, 200);
    assert.deepEqual(backend.faults.list(), []);
  });

  test('status with a custom body, including a 200 with a body of our choosing', async () => {
    backend.faults.add({
      route: 'accounts.check',
      action: { kind: 'status', status: 429, body: 'slow down' },
    });
    const limited = await get('/wham/accounts/check');
    assert.deepEqual(
      [limited.status, limited.body, limited.headers['content-type']],
      [429, 'slow down', 'text/plain; charset=utf-8'],
    );
    backend.faults.add({
      route: 'accounts.check',
      action: { kind: 'status', status: 200, body: '{"accounts":[]}' },
    });
    const empty = await get('/wham/accounts/check');
    assert.deepEqual(
      [empty.status, empty.body, empty.headers['content-type']],
      [200, '{"accounts":[]}', 'application/json'],
    );
  });

  test('slow: the answer comes after the delay, and is the normal one', async () => {
    backend.faults.add({ route: 'accounts.check', action: { kind: 'slow', delayMs: 150 } });
    const started = Date.now();
    const answer = await get('/wham/accounts/check');
    assert.ok(Date.now() - started >= 145, `${Date.now() - started} ms`);
    assert.equal(answer.status, 200);
  });

  test('disconnect before the response: the client gets no answer; recorded with status 0', async () => {
    backend.requests.length = 0;
    backend.faults.add({ route: 'accounts.check', action: { kind: 'disconnect' } });
    await assert.rejects(get('/wham/accounts/check'), /socket hang up|ECONNRESET/);
    assert.deepEqual(
      backend.requests.map((r) => [r.route, r.status]),
      [['accounts.check', 0]],
    );
  });

  test('disconnect after N events cuts the SSE stream: the client sees a truncated stream', async () => {
    const whole = sseTypes((await postResponses()).body);
    backend.faults.add({ route: 'responses.http', action: { kind: 'disconnect', afterEvents: 3 } });
    const cut = await postResponses();
    assert.equal(cut.status, 200);
    assert.equal(cut.truncated, true);
    assert.deepEqual(sseTypes(cut.body), whole.slice(0, 3));
    assert.ok(!cut.body.includes('response.completed'));
    const next = await postResponses(); // used up
    assert.equal(next.truncated, false);
    assert.deepEqual(sseTypes(next.body), whole);
  });

  test('* matches every route; times -1 lasts until cleared', async () => {
    backend.faults.add({ route: '*', action: { kind: 'status', status: 502 }, times: -1 });
    assert.equal((await get('/wham/config/bundle')).status, 502);
    assert.equal((await get('/wham/accounts/check')).status, 502);
    assert.equal((await postResponses()).status, 502);
    assert.deepEqual(backend.faults.list(), [
      { route: '*', action: { kind: 'status', status: 502 }, times: -1 },
    ]);
    backend.faults.clear();
    assert.equal((await get('/wham/config/bundle')).status, 200);
  });

  test('rules apply in the order they were added; other routes are untouched', async () => {
    backend.faults.add({ route: 'oauth.token', action: { kind: 'status', status: 500 } });
    backend.faults.add({ route: 'config.bundle', action: { kind: 'status', status: 404 } });
    backend.faults.add({ route: 'config.bundle', action: { kind: 'status', status: 410 } });
    assert.equal((await get('/wham/accounts/check')).status, 200);
    assert.equal((await get('/wham/config/bundle')).status, 404);
    assert.equal((await get('/wham/config/bundle')).status, 410);
    const tokenAnswer = await requestLocalBackend(`${backend.issuer}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=refresh_token&refresh_token=x',
      ca: backend.caCertPem,
    });
    assert.equal(tokenAnswer.status, 500);
  });
});

describe('faults on the Responses WebSocket', () => {
  const wsUrl = () => `${backend.chatgptBaseUrl.replace(/^https/, 'wss')}/codex/responses`;

  function open(): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl(), { headers: auth, ca: backend.caCertPem });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        reject(
          Object.assign(new Error(`HTTP ${res.statusCode}`), {
            status: res.statusCode,
            headers: res.headers,
          }),
        );
      });
      ws.once('error', reject);
    });
  }

  /** Sends response.create and collects frames until completed, an error frame, or the close. */
  function create(ws: WebSocket, text = 'x'): Promise<{ frames: Frame[]; closed: number | null }> {
    return new Promise((resolve) => {
      const frames: Frame[] = [];
      const onMessage = (data: Buffer) => {
        const frame = JSON.parse(data.toString()) as Frame;
        frames.push(frame);
        if (frame.type === 'response.completed' || frame.type === 'error') done(null);
      };
      const onClose = (code: number) => done(code);
      const done = (closed: number | null) => {
        ws.off('message', onMessage);
        ws.off('close', onClose);
        resolve({ frames, closed });
      };
      ws.on('message', onMessage);
      ws.on('close', onClose);
      ws.send(JSON.stringify({ type: 'response.create', input: userInput(text) }));
    });
  }

  test('status at the handshake refuses the upgrade with it', async () => {
    backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 503, retryAfterSec: 2 } });
    await assert.rejects(
      open(),
      (e: { status?: number; headers?: Record<string, string> }) =>
        e.status === 503 && e.headers?.['retry-after'] === '2',
    );
    const ws = await open(); // used up
    ws.close();
  });

  test('disconnect 0 at the handshake drops the connection without an answer', async () => {
    backend.faults.add({ route: 'responses.ws', action: { kind: 'disconnect' } });
    await assert.rejects(open(), /socket hang up|ECONNRESET/);
  });

  test('slow at the handshake delays the open', async () => {
    backend.faults.add({ route: 'responses.ws', action: { kind: 'slow', delayMs: 120 } });
    const started = Date.now();
    const ws = await open();
    assert.ok(Date.now() - started >= 115);
    ws.close();
  });

  test('a handshake disconnect after N events counts the events of the whole socket', async () => {
    const probe = await open();
    const perResponse = (await create(probe)).frames.length;
    probe.close();
    backend.faults.add({
      route: 'responses.ws',
      action: { kind: 'disconnect', afterEvents: perResponse + 2 },
    });
    const ws = await open();
    const first = await create(ws);
    assert.equal(first.frames.length, perResponse);
    assert.equal(first.closed, null);
    const second = await create(ws);
    assert.deepEqual(
      second.frames.map((f) => f.type),
      ['response.created', 'response.output_item.added'],
    );
    assert.equal(second.closed, 1006); // cut, no close frame
  });

  test('a response.create disconnect cuts that response; status sends an error frame and keeps the socket', async () => {
    const ws = await open();
    backend.faults.add({
      route: 'responses.ws.create',
      action: { kind: 'status', status: 429, body: 'rate limited' },
    });
    const limited = await create(ws);
    assert.deepEqual(limited.frames, [
      { type: 'error', status: 429, error: { type: 'scripted_fault', message: 'rate limited' } },
    ]);
    assert.equal((await create(ws, 'ok')).frames.at(-1)!.type, 'response.completed');
    backend.faults.add({ route: 'responses.ws.create', action: { kind: 'disconnect', afterEvents: 1 } });
    const cut = await create(ws);
    assert.deepEqual(
      cut.frames.map((f) => f.type),
      ['response.created'],
    );
    assert.equal(cut.closed, 1006);
  });
});

describe('control API', () => {
  test('faults, requests and revocation round trip through /__gatehouse', async () => {
    const control = new LocalBackendControl(backend.url, backend.caCertPem);
    await control.clearRequests();
    assert.deepEqual(
      await control.addFault({
        route: 'config.bundle',
        action: { kind: 'status', status: 500 },
        times: Infinity,
      }),
      {
        route: 'config.bundle',
        action: { kind: 'status', status: 500 },
        times: -1,
      },
    );
    assert.equal((await control.listFaults()).length, 1);
    assert.equal((await get('/wham/config/bundle')).status, 500);
    await control.clearFaults();
    assert.deepEqual(await control.listFaults(), []);
    assert.equal((await get('/wham/config/bundle')).status, 200);

    await assert.rejects(
      control.addFault({ route: 'nope' as never, action: { kind: 'slow', delayMs: 1 } }),
      /HTTP 400: route must be one of/,
    );

    await control.revoke('sk-gone');
    assert.equal((await get('/wham/config/bundle', { authorization: 'Bearer sk-gone' })).status, 401);

    const recorded = await control.requests();
    assert.deepEqual(
      recorded.map((r) => [r.route, r.status]),
      [
        ['config.bundle', 500],
        ['config.bundle', 200],
        ['config.bundle', 401],
      ],
    );
    assert.equal(recorded[2]!.headers.authorization, 'Bearer sk-gone');
    assert.equal((await control.requests('accounts.check')).length, 0);
    await control.clearRequests();
    assert.deepEqual(await control.requests(), []);
  });

  test('raw control requests: 201, 204, 400 with the reason, 404, 405', async () => {
    const call = (method: string, path: string, body?: string) =>
      requestLocalBackend(`${backend.url}/__gatehouse${path}`, {
        method,
        ca: backend.caCertPem,
        ...(body !== undefined ? { body, headers: { 'content-type': 'application/json' } } : {}),
      });
    const added = await call('POST', '/faults', '{"route":"*","action":{"kind":"slow","delayMs":0}}');
    assert.equal(added.status, 201);
    assert.equal((await call('DELETE', '/faults')).status, 204);
    const bad = await call('POST', '/faults', '{"route":"*","action":{"kind":"slow"}}');
    assert.deepEqual(
      [bad.status, JSON.parse(bad.body)],
      [400, { error: 'action.delayMs must be an integer from 0 to 600000; got nothing' }],
    );
    const notJson = await call('POST', '/faults', '{');
    assert.deepEqual(
      [notJson.status, JSON.parse(notJson.body)],
      [400, { error: 'request body is not JSON' }],
    );
    const badRevoke = await call('POST', '/revoke', '{}');
    assert.equal(badRevoke.status, 400);
    assert.equal((await call('GET', '/nothing')).status, 404);
    const wrongMethod = await call('PUT', '/requests');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, 'GET, DELETE');
    assert.equal((await call('DELETE', '/requests')).status, 204);
  });
});
