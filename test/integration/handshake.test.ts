/**
 * Spec A.5, A.6 and B (`initialize`) through the built CLI over stdio: exact error texts, the
 * order of checks, the response shape, process lifecycle (EOF, SIGTERM), CLI options and the
 * mailbox bound (-32001).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { initializeParams, TestClient, type RpcId, type RpcMessage } from '../helpers/app-server-process.js';

const MOCK = 'mock/experimentalMethod';

after(async () => {
  await TestClient.disposeAll();
});

/** A fresh server, killed when the test ends. */
function spawnFor(t: { after(fn: () => Promise<void>): void }, args: string[] = []): TestClient {
  const client = TestClient.spawn({ args });
  t.after(() => client.dispose());
  return client;
}

/**
 * Checks an error reply exactly: `{"error":{"code":C,"message":M},"id":ID}` with that key order,
 * no `data`, no `jsonrpc`.
 */
function assertError(client: TestClient, reply: RpcMessage, id: RpcId, message: string, code = -32600): void {
  assert.deepEqual(reply, { error: { code, message }, id });
  assert.equal(
    client.rawLine(reply),
    `{"error":${JSON.stringify({ code, message })},"id":${JSON.stringify(id)}}`,
  );
}

describe('before initialize (spec A.6 order)', () => {
  let client: TestClient;
  before(() => {
    client = TestClient.spawn();
  });
  after(() => client.dispose());

  test('a known method gets `Not initialized`', async () => {
    assertError(client, await client.request(MOCK, { value: 'x' }, 1), 1, 'Not initialized');
  });

  test('an unknown method gets the unknown-variant decode error, not `Not initialized`', async () => {
    const reply = await client.request('no/such/method', {}, 2);
    assert.equal(reply.id, 2);
    assert.equal(reply.error?.code, -32600);
    const message = reply.error?.message ?? '';
    assert.ok(message.startsWith('Invalid request: unknown variant `no/such/method`, expected '), message);
    assert.ok(message.includes('`initialize`') && message.includes(`\`${MOCK}\``), message);
    assert.deepEqual(Object.keys(reply), ['error', 'id']);
    assert.deepEqual(Object.keys(reply.error ?? {}), ['code', 'message']);
  });

  test('bad params on a known method get the decode error first', async () => {
    assertError(
      client,
      await client.request(MOCK, undefined, 3),
      3,
      'Invalid request: missing field `params`',
    );
    assertError(
      client,
      await client.request(MOCK, 'nope', 4),
      4,
      'Invalid request: invalid type: string "nope", expected struct MockExperimentalMethodParams',
    );
  });

  test('an experimental method gets `Not initialized` (init gate before experimental gate)', async () => {
    assertError(client, await client.request(MOCK, {}, 'exp'), 'exp', 'Not initialized');
  });

  test('notifications before initialize get no reply, and initialize then works', async () => {
    await client.write('{"method":"initialized"}\n{"method":"no/such/notification"}\n');
    await client.expectNoOutput(100);
    const reply = await client.initialize({ id: 5 });
    assert.ok(reply.result, JSON.stringify(reply));
    assertError(client, await client.initialize({ id: 6 }), 6, 'Already initialized');
  });
});

describe('initialize validation: failures do not consume initialize (spec A.5, B.3)', () => {
  let client: TestClient;
  before(() => {
    client = TestClient.spawn();
  });
  after(() => client.dispose());

  const cases: [string, unknown, string][] = [
    ['missing params', undefined, 'Invalid request: missing field `params`'],
    [
      'params of the wrong type',
      'nope',
      'Invalid request: invalid type: string "nope", expected struct InitializeParams',
    ],
    ['missing clientInfo', {}, 'Invalid request: missing field `clientInfo`'],
    ['missing clientInfo.version', { clientInfo: { name: 'x' } }, 'Invalid request: missing field `version`'],
    ['missing clientInfo.name', { clientInfo: { version: '1' } }, 'Invalid request: missing field `name`'],
    [
      'capabilities.experimentalApi not a boolean',
      { clientInfo: { name: 'x', version: '1' }, capabilities: { experimentalApi: 'yes' } },
      'Invalid request: invalid type: string "yes", expected a boolean',
    ],
    [
      'optOutNotificationMethods not a sequence',
      {
        clientInfo: { name: 'x', version: '1' },
        capabilities: { optOutNotificationMethods: 'configWarning' },
      },
      'Invalid request: invalid type: string "configWarning", expected a sequence',
    ],
    [
      'clientInfo.name not a valid header value',
      { clientInfo: { name: 'bad\nname', version: '1' } },
      "Invalid clientInfo.name: 'bad\nname'. Must be a valid HTTP header value.",
    ],
  ];

  let nextId = 1;
  for (const [label, params, message] of cases) {
    test(label, async () => {
      const id = nextId++;
      assertError(client, await client.request('initialize', params, id), id, message);
    });
  }

  test('the connection is still uninitialized, and a valid initialize then succeeds', async () => {
    assertError(client, await client.request(MOCK, {}, 'gate'), 'gate', 'Not initialized');
    const reply = await client.initialize({ id: 'ok', name: 'name', version: 'version' });
    assert.equal(reply.id, 'ok');
    assert.ok(reply.result, JSON.stringify(reply));
    assertError(client, await client.initialize({ id: 'again' }), 'again', 'Already initialized');
  });
});

describe('initialize success (spec B.2)', () => {
  test('the response has exactly userAgent, codexHome, platformFamily, platformOs', async (t) => {
    const client = spawnFor(t);
    const reply = await client.initialize({ id: 1, name: 'name', version: 'version', title: null });
    assert.deepEqual(Object.keys(reply), ['id', 'result']);
    assert.ok(client.rawLine(reply).startsWith('{"id":1,"result":{'));
    const result = reply.result as Record<string, unknown>;
    assert.deepEqual(Object.keys(result).sort(), ['codexHome', 'platformFamily', 'platformOs', 'userAgent']);
    assert.equal(result.codexHome, client.codexHome);
    assert.equal(result.platformFamily, 'unix');
    assert.equal(result.platformOs, 'linux');
    assert.match(String(result.userAgent), /^name\/0\.169\.0 \(.+; x86_64\) \S+ \(name; version\)$/);
  });

  test('a non-ASCII clientInfo.name is accepted as-is', async (t) => {
    const client = spawnFor(t);
    const reply = await client.initialize({ id: 1, name: 'ok name é', version: '1.2.3' });
    const ua = String((reply.result as { userAgent?: unknown } | undefined)?.userAgent);
    assert.ok(ua.startsWith('ok name é/0.169.0 ('), ua);
    assert.ok(ua.endsWith(' (ok name é; 1.2.3)'), ua);
  });

  test('capabilities null, unknown capability members and unknown params members are ignored', async (t) => {
    const client = spawnFor(t);
    const params = { ...initializeParams({ name: 'n', version: '1' }), capabilities: null, bogus: 1 };
    assert.ok((await client.request('initialize', params, 1)).result);

    const other = spawnFor(t);
    const reply = await other.request(
      'initialize',
      {
        clientInfo: { name: 'n', version: '1', extra: true },
        capabilities: { experimentalApi: true, futureThing: { a: 1 } },
      },
      1,
    );
    assert.ok(reply.result, JSON.stringify(reply));
    assert.deepEqual(await other.request(MOCK, { value: 'x', bogus: 1 }, 2), {
      id: 2,
      result: { echoed: 'x' },
    });
  });
});

describe('experimental gate (spec A.5)', () => {
  test('without opt-in the experimental method is refused', async (t) => {
    const client = spawnFor(t);
    assert.ok((await client.initialize({ id: 1 })).result);
    assertError(
      client,
      await client.request(MOCK, { value: 'x' }, 2),
      2,
      `${MOCK} requires experimentalApi capability`,
    );
  });

  test('experimentalApi:false is the same as no opt-in', async (t) => {
    const client = spawnFor(t);
    assert.ok((await client.initialize({ id: 1, experimentalApi: false })).result);
    assertError(client, await client.request(MOCK, {}, 2), 2, `${MOCK} requires experimentalApi capability`);
  });

  test('with opt-in it is served', async (t) => {
    const client = spawnFor(t);
    assert.ok((await client.initialize({ id: 1, experimentalApi: true })).result);
    const reply = await client.request(MOCK, { value: 'x' }, 2);
    assert.deepEqual(reply, { id: 2, result: { echoed: 'x' } });
    assert.equal(client.rawLine(reply), '{"id":2,"result":{"echoed":"x"}}');
    assert.deepEqual(await client.request(MOCK, {}, 3), { id: 3, result: { echoed: null } });
    assert.deepEqual(await client.request(MOCK, { value: null }, 4), { id: 4, result: { echoed: null } });
  });
});

describe('process lifecycle (spec A.1)', () => {
  test('stdin EOF: answers already read are written, then exit 0', async (t) => {
    const client = spawnFor(t);
    const init = JSON.stringify({
      id: 1,
      method: 'initialize',
      params: initializeParams({ experimentalApi: true }),
    });
    const call = JSON.stringify({ id: 2, method: MOCK, params: { value: 'last' } });
    await client.write(`${init}\n${call}\n`);
    const started = Date.now();
    client.closeStdin();
    assert.deepEqual(await client.waitExit(), { code: 0, signal: null });
    assert.ok(Date.now() - started < 3_000, `exit took ${Date.now() - started} ms`);
    assert.ok((await client.readUntilResponse(1)).result);
    assert.deepEqual(await client.readUntilResponse(2), { id: 2, result: { echoed: 'last' } });
    assert.deepEqual(client.badStdoutLines, []);
  });

  test('SIGTERM: exits 0 within a few seconds', async (t) => {
    const client = spawnFor(t);
    assert.ok((await client.initialize({ id: 1 })).result);
    const started = Date.now();
    client.signal('SIGTERM');
    assert.deepEqual(await client.waitExit(5_000), { code: 0, signal: null });
    assert.ok(Date.now() - started < 4_000, `took ${Date.now() - started} ms`);
  });
});

describe('command line', () => {
  test('codex keys Gatehouse does not use are accepted', async (t) => {
    const client = spawnFor(t, ['-c', 'model="o3"', '-c', 'openai_base_url="http://x"']);
    assert.ok((await client.initialize({ id: 1 })).result);
  });

  test('an unknown gatehouse.* setting: non-zero exit with a clear message', async (t) => {
    const client = spawnFor(t, ['-c', 'gatehouse.bogus=1']);
    const status = await client.waitExit();
    assert.notEqual(status.code, 0);
    assert.match(client.stderrText, /gatehouse\.bogus/);
    assert.equal(client.stdoutText, '');
  });

  test('app-server --help prints usage and exits 0', async (t) => {
    const client = TestClient.spawn({ rawArgs: ['app-server', '--help'] });
    t.after(() => client.dispose());
    assert.deepEqual(await client.waitExit(), { code: 0, signal: null });
    assert.match(client.stdoutText, /^Usage: gatehouse app-server/);
    assert.match(client.stdoutText, /--listen/);
  });

  test('a CODEX_HOME that does not exist: non-zero exit naming CODEX_HOME', async (t) => {
    const client = TestClient.spawn({ codexHome: '/nonexistent/gatehouse-test-home' });
    t.after(() => client.dispose());
    const status = await client.waitExit();
    assert.notEqual(status.code, 0);
    assert.match(client.stderrText, /CODEX_HOME/);
    assert.equal(client.stdoutText, '');
  });
});

describe('mailbox bound (-32001)', () => {
  test('a burst past mailbox_capacity: some requests overloaded, each answered exactly once', async (t) => {
    const client = spawnFor(t, ['-c', 'gatehouse.mailbox_capacity=4']);
    assert.ok((await client.initialize({ id: 0, experimentalApi: true })).result);
    const ids = Array.from({ length: 50 }, (_, i) => i + 1);
    await client.write(
      ids.map((id) => `${JSON.stringify({ id, method: MOCK, params: { value: `v${id}` } })}\n`).join(''),
    );

    const answers = new Map<RpcId, RpcMessage>();
    while (answers.size < ids.length) {
      const m = await client.next();
      if (m.method === 'remoteControl/status/changed') continue; // every connection's greeting
      assert.ok(typeof m.id === 'number' && ids.includes(m.id), `unexpected message ${JSON.stringify(m)}`);
      assert.ok(!answers.has(m.id), `id ${m.id} answered twice`);
      answers.set(m.id, m);
    }
    await client.expectNoOutput(200);

    let overloaded = 0;
    for (const [id, m] of answers) {
      if ('error' in m) {
        assertError(client, m, id, 'Server overloaded; retry later.', -32001);
        overloaded++;
      } else {
        assert.deepEqual(m, { id, result: { echoed: `v${id}` } });
      }
    }
    assert.ok(overloaded > 0, 'some requests are refused');
    assert.ok(overloaded < ids.length, 'some requests are served');
    assert.deepEqual(await client.request(MOCK, { value: 'after' }, 'after'), {
      id: 'after',
      result: { echoed: 'after' },
    });
  });
});
