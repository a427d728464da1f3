/**
 * `app-server --listen ws://127.0.0.1:0` through the built CLI: one JSON-RPC message per text
 * frame, one connection state per socket, bad frames ignored, SIGTERM closes everything.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestClient, WsTestClient } from '../helpers/app-server-process.js';

const MOCK = 'mock/experimentalMethod';

describe('WebSocket listener', () => {
  let server: TestClient;
  let url: string;
  let a: WsTestClient;
  let b: WsTestClient;

  before(async () => {
    server = TestClient.spawn({ args: ['--listen', 'ws://127.0.0.1:0'] });
    url = await server.listenUrl();
    [a, b] = await Promise.all([WsTestClient.connect(url), WsTestClient.connect(url)]);
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await server.dispose();
  });

  test('the listening line names a concrete loopback port', () => {
    assert.match(url, /^ws:\/\/127\.0\.0\.1:[1-9]\d*$/);
  });

  test('each connection has its own initialize and capabilities', async () => {
    const initA = await a.initialize({ id: 1, name: 'client_a', version: '1', experimentalApi: true });
    assert.equal(initA.id, 1);
    assert.match(
      String((initA.result as { userAgent?: unknown }).userAgent),
      /^client_a\/0\.169\.0 .* \(client_a; 1\)$/,
    );

    // B is still uninitialized even though A is.
    assert.deepEqual(await b.request(MOCK, {}, 'pre'), {
      error: { code: -32600, message: 'Not initialized' },
      id: 'pre',
    });
    const initB = await b.initialize({ id: 1, name: 'client_b', version: '2' });
    assert.match(
      String((initB.result as { userAgent?: unknown }).userAgent),
      /^client_b\/0\.169\.0 .* \(client_b; 2\)$/,
    );

    assert.deepEqual(await a.initialize({ id: 2 }), {
      error: { code: -32600, message: 'Already initialized' },
      id: 2,
    });
    assert.deepEqual(await a.request(MOCK, { value: 'a' }, 3), { id: 3, result: { echoed: 'a' } });
    assert.deepEqual(await b.request(MOCK, { value: 'b' }, 3), {
      error: { code: -32600, message: `${MOCK} requires experimentalApi capability` },
      id: 3,
    });
  });

  test('a text frame is one message: no line splitting, newlines inside a frame are fine', async () => {
    // Pretty-printed JSON spans several lines but is one frame, so one message.
    await a.sendText(JSON.stringify({ id: 'pretty', method: MOCK, params: { value: 'p' } }, null, 2));
    assert.deepEqual(await a.next(), { id: 'pretty', result: { echoed: 'p' } });
    // Two JSON values in one frame are not a message.
    const two = [1, 2]
      .map((n) => JSON.stringify({ id: `two-${n}`, method: MOCK, params: { value: 'x' } }))
      .join('\n');
    await a.sendText(two);
    await a.expectNoMessage(150);
    assert.deepEqual(await a.request(MOCK, { value: 'after-two' }, 'after-two'), {
      id: 'after-two',
      result: { echoed: 'after-two' },
    });
    assert.ok(
      a.frames.every((f) => !f.includes('\n') && !f.includes('jsonrpc')),
      'every reply is one compact frame',
    );
  });

  test('a bad JSON frame gets no reply and the socket stays usable', async () => {
    for (const bad of ['not json', '{"id":7,"method":', '42', '{"id":5}']) {
      await a.sendText(bad);
    }
    await a.expectNoMessage(150);
    assert.ok(a.isOpen);
    assert.deepEqual(await a.request(MOCK, { value: 'still' }, 8), { id: 8, result: { echoed: 'still' } });
    await b.expectNoMessage(0);
  });

  test('SIGTERM closes the open sockets and the server exits 0', async () => {
    server.signal('SIGTERM');
    const [closedA, closedB, status] = await Promise.all([
      withTimeout(a.closed, 3_000, 'socket A to close'),
      withTimeout(b.closed, 3_000, 'socket B to close'),
      server.waitExit(3_000),
    ]);
    assert.deepEqual(status, { code: 0, signal: null });
    assert.ok(closedA.code > 0 && closedB.code > 0);
    assert.equal(server.stdoutText, '', 'the WebSocket mode writes nothing on stdout');
  });
});

describe('WebSocket listener shutdown', () => {
  test('SIGTERM with no client connected: exits 0', async (t) => {
    const server = TestClient.spawn({ args: ['--listen', 'ws://127.0.0.1:0'] });
    t.after(() => server.dispose());
    const url = await server.listenUrl();
    const client = await WsTestClient.connect(url);
    assert.ok((await client.initialize({ id: 1 })).result);
    await client.close();
    server.signal('SIGTERM');
    const status = await server.waitExit(5_000);
    assert.deepEqual(status, { code: 0, signal: null });
    assert.equal(server.stdoutText, '', 'the WebSocket mode writes nothing on stdout');
  });
});

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
