/**
 * Graceful shutdown under load (issue 8), through the built CLI against the local backend: SIGTERM
 * with 1,000 requests in flight. The requests are held for real: one `account/login/start` of a
 * workspace plan waits on a slowed `config.bundle`, and the `account/read`s queue behind it on the
 * account queue. Then:
 * - every id gets exactly one answer before the process exits, a result or an explicit error:
 *   when the work finishes within `shutdown_timeout_ms`, results; when it cannot, -32603 "Server
 *   shut down before the request finished" with data.reason "serverShuttingDown";
 * - a request sent after SIGTERM gets -32600 "Server is draining; retry after reconnecting";
 * - the exit code is 0, within the deadline plus a margin, and no child process of the broker
 *   remains (worker threads end with the process, which exited);
 * - over `--listen ws://`, every socket gets its answers and then a 1001 close.
 *
 * Long form (10,000 in flight): GATEHOUSE_SHUTDOWN_IN_FLIGHT=10000 node --import tsx --test
 * test/load/shutdown-under-load.test.ts
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TestClient, WsTestClient, type RpcId, type RpcMessage } from '../helpers/app-server-process.js';
import { backendArgs, chatgptToken, useLocalBackend } from '../helpers/local-backend.js';
import { childrenOf, isAlive } from '../helpers/proc-status.js';

const IN_FLIGHT = Number(process.env.GATEHOUSE_SHUTDOWN_IN_FLIGHT ?? 1_000);
/** Exit may take the deadline, one second to flush and close (TRANSPORT_CLOSE_MS), and this. */
const EXIT_MARGIN_MS = 4_000;
const SHUTTING_DOWN = { reason: 'serverShuttingDown' };
const ABORTED = {
  code: -32603,
  message: 'Server shut down before the request finished',
  data: SHUTTING_DOWN,
};
const DRAINING = {
  code: -32600,
  message: 'Server is draining; retry after reconnecting',
  data: SHUTTING_DOWN,
};

const backend = useLocalBackend();

function spawnBroker(t: { after(fn: () => Promise<void>): void }, shutdownMs: number, extra: string[] = []) {
  const client = TestClient.spawn({
    args: backendArgs(backend, [
      '-c',
      `gatehouse.shutdown_timeout_ms=${shutdownMs}`,
      '-c',
      `gatehouse.mailbox_capacity=${Math.max(4096, 2 * IN_FLIGHT)}`,
      '-c',
      `gatehouse.max_requests_per_connection=${Math.max(4096, 2 * IN_FLIGHT)}`,
      ...extra,
    ]),
    env: { CODEX_CA_CERTIFICATE: backend.caCertPath },
    logLevel: 'info',
    readTimeoutMs: 20_000,
  });
  t.after(() => client.dispose());
  return client;
}

/** The lines of `count` held requests: a login held by the slowed backend, then reads behind it. */
function heldRequests(prefix: string, count: number, withLogin: boolean): { ids: RpcId[]; text: string } {
  const ids: RpcId[] = [];
  const lines: string[] = [];
  if (withLogin) {
    ids.push(`${prefix}login`);
    lines.push(
      JSON.stringify({
        id: `${prefix}login`,
        method: 'account/login/start',
        params: {
          type: 'chatgptAuthTokens',
          accessToken: chatgptToken({ planType: 'business' }),
          chatgptAccountId: 'acct-1',
          chatgptPlanType: 'business',
        },
      }),
    );
  }
  while (ids.length < count) {
    const id = `${prefix}${ids.length}`;
    ids.push(id);
    lines.push(JSON.stringify({ id, method: 'account/read', params: {} }));
  }
  return { ids, text: lines.join('\n') + '\n' };
}

/** How each id was answered; fails on an id answered twice or not at all. */
function tally(
  messages: readonly RpcMessage[],
  ids: RpcId[],
): { results: number; errors: Map<string, number> } {
  const wanted = new Set(ids);
  const seen = new Map<RpcId, number>();
  let results = 0;
  const errors = new Map<string, number>();
  for (const m of messages) {
    if (m.method !== undefined || m.id === undefined || m.id === null || !wanted.has(m.id)) continue;
    seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    if ('result' in m) results++;
    else {
      const key = JSON.stringify(m.error);
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
  }
  const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  const missing = ids.filter((id) => !seen.has(id));
  assert.deepEqual(twice, [], 'ids answered more than once');
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} ids never answered`);
  return { results, errors };
}

/** No process the broker started outlives it. */
function assertNoOrphans(pid: number, childrenBefore: number[]): void {
  assert.deepEqual(childrenOf(pid), [], 'processes whose parent is the exited broker');
  assert.deepEqual(
    childrenBefore.filter((p) => isAlive(p)),
    [],
    'children of the broker still alive',
  );
}

async function stdioShutdown(
  t: { after(fn: () => Promise<void>): void; diagnostic(s: string): void },
  opts: { shutdownMs: number; backendDelayMs: number },
) {
  const client = spawnBroker(t, opts.shutdownMs);
  assert.ok((await client.initialize({ experimentalApi: true })).result);
  backend.faults.add({ route: 'config.bundle', action: { kind: 'slow', delayMs: opts.backendDelayMs } });
  const { ids, text } = heldRequests('r', IN_FLIGHT, true);
  await client.write(text);
  // Answered at once by the connection actor, after every request before it was taken in.
  assert.ok((await client.request('no/such/method', undefined, 'probe')).error);
  const wanted = new Set(ids);
  const early = client.messages.filter((m) => m.method === undefined && wanted.has(m.id as RpcId));
  assert.deepEqual(early, [], 'all of them are still in flight');
  const pid = client.child.pid!;
  const childrenBefore = childrenOf(pid);

  const started = Date.now();
  client.signal('SIGTERM');
  await client.waitForStderr('"msg":"shutting down"');
  const late = await client.request('account/read', {}, 'after-sigterm');
  const exit = await client.waitExit(opts.shutdownMs + EXIT_MARGIN_MS);
  const exitMs = Date.now() - started;
  assert.deepEqual(exit, { code: 0, signal: null });
  assertNoOrphans(pid, childrenBefore);
  assert.deepEqual(late.error, DRAINING);
  assert.deepEqual(client.badStdoutLines, []);
  const outcome = tally(client.messages, ids);
  const failed = [...outcome.errors.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(
    `shutdown (stdio, deadline ${opts.shutdownMs} ms, backend ${opts.backendDelayMs} ms): in flight ${ids.length}, ` +
      `answered ${outcome.results}, failed ${failed} ${JSON.stringify([...outcome.errors])}, exit after ${exitMs} ms`,
  );
  return { outcome, exitMs, ids };
}

describe('SIGTERM with requests in flight', () => {
  test(`stdio: ${IN_FLIGHT} requests that finish within the deadline are all answered with results`, async (t) => {
    const { outcome, exitMs, ids } = await stdioShutdown(t, { shutdownMs: 20_000, backendDelayMs: 1_500 });
    assert.equal(outcome.results, ids.length, JSON.stringify([...outcome.errors]));
    // It left when the work was done, not at the deadline.
    assert.ok(exitMs < 15_000, `exit took ${exitMs} ms`);
  });

  test(`stdio: ${IN_FLIGHT} requests still running at the deadline each get the shutdown error`, async (t) => {
    const shutdownMs = 1_000;
    const { outcome, exitMs, ids } = await stdioShutdown(t, { shutdownMs, backendDelayMs: 60_000 });
    assert.equal(outcome.results, 0);
    assert.deepEqual([...outcome.errors], [[JSON.stringify(ABORTED), ids.length]]);
    assert.ok(exitMs >= shutdownMs, `exit after ${exitMs} ms, before the deadline`);
    assert.ok(exitMs < shutdownMs + EXIT_MARGIN_MS, `exit took ${exitMs} ms`);
  });

  test('--listen ws://: every socket gets its answers, then a 1001 close', async (t) => {
    const server = spawnBroker(t, 20_000, ['--listen', 'ws://127.0.0.1:0']);
    const url = await server.listenUrl();
    const clients = await Promise.all([WsTestClient.connect(url, 20_000), WsTestClient.connect(url, 20_000)]);
    t.after(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
    for (const c of clients) assert.ok((await c.initialize({ experimentalApi: true })).result);
    backend.faults.add({ route: 'config.bundle', action: { kind: 'slow', delayMs: 1_500 } });
    const perClient = Math.ceil(IN_FLIGHT / clients.length);
    const sent = clients.map((c, i) => {
      const { ids, text } = heldRequests(`c${i}-`, perClient, i === 0);
      return {
        ids,
        sending: Promise.all(
          text
            .trimEnd()
            .split('\n')
            .map((line) => c.sendText(line)),
        ),
      };
    });
    await Promise.all(sent.map((s) => s.sending));
    for (const c of clients) assert.ok((await c.request('no/such/method', undefined, 'probe')).error);
    const pid = server.child.pid!;
    const childrenBefore = childrenOf(pid);

    const started = Date.now();
    server.signal('SIGTERM');
    const closes = await Promise.all(clients.map((c) => c.closed));
    const exit = await server.waitExit(20_000 + EXIT_MARGIN_MS);
    const exitMs = Date.now() - started;
    assert.deepEqual(exit, { code: 0, signal: null });
    assertNoOrphans(pid, childrenBefore);
    let results = 0;
    for (const [i, c] of clients.entries()) {
      assert.equal(closes[i]!.code, 1001);
      const outcome = tally(c.messages, sent[i]!.ids);
      assert.equal(outcome.results, sent[i]!.ids.length, JSON.stringify([...outcome.errors]));
      results += outcome.results;
    }
    t.diagnostic(
      `shutdown (2 WebSockets): in flight ${results}, answered ${results}, failed 0, ` +
        `closed 1001, exit after ${exitMs} ms`,
    );
  });
});
