/**
 * Spec A (framing) through the built CLI over stdio. One long-lived server takes all the bad
 * input in turn; after each bad input a valid request must still get its answer, and nothing
 * else may appear on stdout in between.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestClient, type RpcId } from '../helpers/app-server-process.js';

const MOCK = 'mock/experimentalMethod';
/**
 * How long a bad input gets to produce (wrongly) some output. The check that follows it is
 * stricter: the very next message must be the answer to the valid request sent afterwards.
 */
const NO_OUTPUT_MS = 50;

/** The valid request that must be answered after bad input, and be the very next message. */
async function assertStillServing(client: TestClient, label: string): Promise<void> {
  const id = `alive-${label}`;
  await client.sendRequest(MOCK, { value: label }, id);
  const next = await client.next();
  assert.deepEqual(next, { id, result: { echoed: label } }, `first message after ${label}`);
}

/** Sends raw input, checks it produced nothing on stdout, then checks the server still answers. */
async function assertIgnored(client: TestClient, label: string, input: string | Buffer): Promise<void> {
  await client.write(input);
  await client.expectNoOutput(NO_OUTPUT_MS);
  await assertStillServing(client, label);
}

describe('stdio framing (spec A)', () => {
  let client: TestClient;

  before(async () => {
    client = TestClient.spawn();
    const init = await client.initialize({
      id: 0,
      name: 'framing_test',
      version: '1.0.0',
      experimentalApi: true,
    });
    assert.ok(init.result, `initialize failed: ${JSON.stringify(init)}`);
  });

  after(async () => {
    await client.dispose();
  });

  test('malformed JSON gets no reply and is logged', async () => {
    await assertIgnored(client, 'truncated', '{"id": 4, "method": "mock/experimentalMethod", \n');
    await assertIgnored(client, 'not-json', 'not json\n');
    await assertIgnored(client, 'unbalanced', '{"id":4,"method":"mock/experimentalMethod"}}\n');
    await client.waitForStderr('Failed to deserialize JSONRPCMessage');
  });

  test('JSON that is not an object gets no reply', async () => {
    await assertIgnored(client, 'number', '42\n');
    await assertIgnored(client, 'array', '[1,2,3]\n');
    await assertIgnored(client, 'string', '"hello"\n');
    await assertIgnored(client, 'null', 'null\n');
    await assertIgnored(client, 'bool', 'true\n');
    const batch = JSON.stringify([
      { id: 'b1', method: MOCK, params: { value: 'b1' } },
      { id: 'b2', method: MOCK, params: { value: 'b2' } },
    ]);
    await assertIgnored(client, 'batch', `${batch}\n`);
    await client.waitForStderr('data did not match any variant of untagged enum JSONRPCMessage');
  });

  test('objects with neither method nor result/error get no reply', async () => {
    await assertIgnored(client, 'id-only', '{"id":5}\n');
    await assertIgnored(client, 'foo', '{"foo":"bar"}\n');
    await assertIgnored(client, 'empty', '{}\n');
    await assertIgnored(client, 'method-not-string', '{"id":6,"method":7}\n');
  });

  test('a request whose id is null, a float or an object is a notification: no reply', async () => {
    for (const [label, id] of [
      ['null-id', 'null'],
      ['float-id', '1.5'],
      ['float-1.0-id', '1.0'],
      ['object-id', '{"n":1}'],
    ] as const) {
      await assertIgnored(client, label, `{"id":${id},"method":"${MOCK}","params":{"value":"x"}}\n`);
    }
    const logged = client.logRecords.some((r) => r.msg === '<- notification' && r.method === MOCK);
    assert.ok(logged, 'the dropped request is logged as a notification');
  });

  test('unknown client notifications and `initialized` get no reply', async () => {
    await assertIgnored(client, 'initialized', '{"method":"initialized"}\n');
    await assertIgnored(
      client,
      'unknown-notification',
      '{"method":"no/such/notification","params":{"a":1}}\n',
    );
    await assertIgnored(client, 'initialize-as-notification', '{"method":"initialize","params":{}}\n');
  });

  test('a response or error for an unknown server-request id gets no reply and is logged', async () => {
    await assertIgnored(client, 'unknown-response', '{"id":12345,"result":{}}\n');
    await client.waitForStderr('could not find callback for Integer(12345)');
    await assertIgnored(client, 'unknown-error', '{"id":12346,"error":{"code":-32000,"message":"nope"}}\n');
    await client.waitForStderr('could not find callback for Integer(12346)');
    await assertIgnored(client, 'jsonrpc-response', '{"jsonrpc":"2.0","id":12347,"result":{}}\n');
    await client.waitForStderr('could not find callback for Integer(12347)');
  });

  test('`jsonrpc:"2.0"` is accepted on requests and never written', async () => {
    await client.send({ jsonrpc: '2.0', id: 9, method: MOCK, params: { value: 'rpc' } });
    const reply = await client.next();
    assert.deepEqual(reply, { id: 9, result: { echoed: 'rpc' } });
    assert.ok(!client.rawLine(reply).includes('jsonrpc'));
  });

  test('a request may carry a `trace` member', async () => {
    const trace = {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: null,
    };
    await client.send({ id: 'traced', method: MOCK, params: { value: 't' }, trace });
    assert.deepEqual(await client.next(), { id: 'traced', result: { echoed: 't' } });
  });

  test('a request split across many 1-byte writes', async () => {
    const bytes = Buffer.from(
      `${JSON.stringify({ id: 'bytewise', method: MOCK, params: { value: 'é-split' } })}\n`,
    );
    for (let i = 0; i < bytes.length; i++) {
      await client.write(bytes.subarray(i, i + 1));
      if (i % 8 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(await client.next(), { id: 'bytewise', result: { echoed: 'é-split' } });
  });

  test('many requests in one write are all answered, in order', async () => {
    const ids = Array.from({ length: 25 }, (_, i) => 100 + i);
    await client.write(
      ids.map((id) => `${JSON.stringify({ id, method: MOCK, params: { value: `v${id}` } })}\n`).join(''),
    );
    for (const id of ids) {
      assert.deepEqual(await client.next(), { id, result: { echoed: `v${id}` } });
    }
  });

  test('CRLF line endings', async () => {
    const lines = ['crlf-1', 'crlf-2'].map(
      (id) => `${JSON.stringify({ id, method: MOCK, params: { value: id } })}\r\n`,
    );
    await client.write(lines.join(''));
    assert.deepEqual(await client.next(), { id: 'crlf-1', result: { echoed: 'crlf-1' } });
    assert.deepEqual(await client.next(), { id: 'crlf-2', result: { echoed: 'crlf-2' } });
    await assertIgnored(client, 'blank-lines', '\r\n\n');
  });

  test('a line with invalid UTF-8 is dropped', async () => {
    const line = Buffer.concat([
      Buffer.from(`{"id":"bad-utf8","method":"${MOCK}","params":{"value":"`),
      Buffer.from([0xff, 0xfe, 0xc3]),
      Buffer.from('"}}\n'),
    ]);
    await assertIgnored(client, 'invalid-utf8', line);
    await client.waitForStderr('not valid UTF-8');
  });

  test('ids are echoed verbatim: strings, negative, 2^53-1 and i64 bounds', async () => {
    for (const id of ['init-1', -5, 9007199254740991, 0, ''] as RpcId[]) {
      const reply = await client.request(MOCK, { value: 'id' }, id);
      assert.deepEqual(reply, { id, result: { echoed: 'id' } });
      assert.ok(client.rawLine(reply).startsWith(`{"id":${JSON.stringify(id)},`), client.rawLine(reply));
    }
    for (const big of ['9223372036854775807', '-9223372036854775808']) {
      await client.write(`{"id":${big},"method":"${MOCK}","params":{"value":"big"}}\n`);
      const reply = await client.next();
      assert.equal(client.rawLine(reply), `{"id":${big},"result":{"echoed":"big"}}`);
    }
  });

  test('an id can be reused after its request finished', async () => {
    assert.deepEqual(await client.request(MOCK, { value: 'first' }, 10), {
      id: 10,
      result: { echoed: 'first' },
    });
    assert.deepEqual(await client.request(MOCK, { value: 'again' }, 10), {
      id: 10,
      result: { echoed: 'again' },
    });
  });

  test('stdout carries nothing but JSON lines, without `jsonrpc`, and EOF exits 0', async () => {
    await client.expectNoOutput(200);
    client.closeStdin();
    const status = await client.waitExit();
    assert.deepEqual(status, { code: 0, signal: null });
    assert.deepEqual(client.badStdoutLines, []);
    assert.ok(client.stdoutText.endsWith('\n'));
    const lines = client.stdoutLines;
    assert.ok(lines.length > 40, `expected many answers, got ${lines.length}`);
    for (const line of lines) {
      const value: unknown = JSON.parse(line);
      assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), line);
      assert.ok(!Object.hasOwn(value, 'jsonrpc'), line);
    }
  });
});

describe('max_line_bytes (spec A.1, Gatehouse setting)', () => {
  let client: TestClient;

  before(async () => {
    client = TestClient.spawn({ args: ['-c', 'gatehouse.max_line_bytes=1024'] });
    const init = await client.initialize({ id: 0, experimentalApi: true });
    assert.ok(init.result, `initialize failed: ${JSON.stringify(init)}`);
  });

  after(async () => {
    await client.dispose();
  });

  /** A valid request line of exactly `bytes` bytes (without the newline). */
  function requestOfSize(id: string, bytes: number): string {
    const shell = JSON.stringify({ id, method: MOCK, params: { value: '' } });
    const line = JSON.stringify({ id, method: MOCK, params: { value: 'x'.repeat(bytes - shell.length) } });
    assert.equal(Buffer.byteLength(line), bytes);
    return line;
  }

  test('a 100 KB line sent in several chunks is dropped and logged; input resyncs after it', async () => {
    const line = requestOfSize('huge', 100 * 1024);
    const chunk = 10 * 1024;
    for (let at = 0; at < line.length; at += chunk) {
      await client.write(line.slice(at, at + chunk));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    // The newline ending the long line shares its write with a valid request.
    await client.write(`\n${JSON.stringify({ id: 'after-huge', method: MOCK, params: { value: 'ok' } })}\n`);
    assert.deepEqual(await client.next(), { id: 'after-huge', result: { echoed: 'ok' } });
    await client.expectNoOutput(NO_OUTPUT_MS);
    await client.waitForStderr('longer than max_line_bytes');
    await assertStillServing(client, 'oversized');
  });

  test('a line of exactly max_line_bytes is served, one byte more is dropped', async () => {
    await client.write(`${requestOfSize('exact', 1024)}\n`);
    assert.equal((await client.next()).id, 'exact');
    await assertIgnored(client, 'one-over', `${requestOfSize('over', 1025)}\n`);
  });
});
