/**
 * Issue #8's soak, short form: 500 simulated clients for 60 s with every fault mixed in, through
 * the built CLI (`gatehouse loadtest --soak`), against a real app-server child and the local
 * backend. The long form (10 minutes) is `npm run soak`. Also the diagnostics facility the soak
 * reads: `app-server` answers SIGUSR2 with one line on stderr and nothing on stdout.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { LoadtestResults } from '../../src/loadtest/results.js';
import { CLI_PATH, TestClient, WsTestClient } from '../helpers/app-server-process.js';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-soak-test-'));
after(async () => {
  await TestClient.disposeAll();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  results: LoadtestResults | undefined;
}

/** `gatehouse loadtest` with its JSON report in the test folder, killed after `limitMs`. */
async function loadtest(limitMs: number, ...args: string[]): Promise<Run> {
  const json = join(dir, `soak-${Date.now()}.json`);
  const child = spawn(
    process.execPath,
    [CLI_PATH, 'loadtest', '--json', json, '--html', '-', '--no-progress', ...args],
    { env: { ...process.env, GATEHOUSE_LOG: 'warn' } },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(killer);
  const results = existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as LoadtestResults) : undefined;
  return { code, stdout, stderr, results };
}

describe('soak', () => {
  test('app-server on SIGUSR2: one diagnostics line on stderr after a GC, nothing on stdout; counts follow connections', async () => {
    const server = TestClient.spawn({
      args: ['--listen', 'ws://127.0.0.1:0'],
      logLevel: 'info',
      env: { NODE_OPTIONS: '--expose-gc' },
    });
    const url = await server.listenUrl(15_000);
    const idle = await server.diagnostics();
    assert.equal(idle.gcForced, true);
    assert.equal(idle.connections, 0);
    assert.ok(idle.memory.heapUsedBytes > 0 && idle.memory.rssBytes > idle.memory.heapUsedBytes);
    assert.equal(idle.listeners['process.SIGUSR2'], 1);
    assert.equal(idle.handles.TCPServerWrap, 1, JSON.stringify(idle.handles));

    const clients = await Promise.all([1, 2, 3].map(() => WsTestClient.connect(url)));
    for (const c of clients) assert.ok((await c.initialize()).result);
    const busy = await server.diagnostics();
    assert.equal(busy.connections, 3);
    assert.equal(busy.actors.byKind.connection, 3);
    assert.equal(busy.actors.byKind.wire, 3);
    assert.ok((busy.handles.TCPSocketWrap ?? 0) >= 3, JSON.stringify(busy.handles));

    for (const c of clients) await c.close();
    let back = await server.diagnostics();
    for (let tries = 0; back.connections > 0 && tries < 16; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      back = await server.diagnostics();
    }
    assert.equal(back.connections, 0);
    assert.deepEqual(back.actors.byKind, idle.actors.byKind);
    assert.deepEqual(back.listeners, idle.listeners);
    assert.equal(back.inFlight, 0);
    assert.equal(back.pendingServerRequests, 0);
    assert.equal(server.stdoutText, '', 'stdout is the protocol: nothing but JSON-RPC goes there');
  });

  test('--soak refuses a transport without one broker to ask, and a work phase too short to measure', async () => {
    const stdio = await loadtest(30_000, '--soak', '-t', 'stdio', '-n', '2');
    assert.equal(stdio.code, 2);
    assert.match(stdio.stderr, /--soak needs one broker child to ask for diagnostics/);
    const short = await loadtest(30_000, '--soak', '-d', '5s');
    assert.equal(short.code, 2);
    assert.match(short.stderr, /--soak needs --duration of at least 40s/);
  });

  test('500 clients for 60 s with faults: heap and RSS after GC flat, counts back to baseline, nothing lost', async (t) => {
    const run = await loadtest(
      200_000,
      ...['--soak', '-n', '500', '-d', '60s', '--ramp-up', '5s', '--think', '1s', '--session-ops', '20'],
      ...['--faults', 'silent=2%,disconnect=2%,backend-401=1%', '--seed', '8'],
    );
    const r = run.results;
    assert.ok(r?.soak, `no soak results: exit ${run.code}\n${run.stdout}\n${run.stderr.slice(-3000)}`);
    const soak = r.soak;
    const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
    t.diagnostic(
      `heap after GC ${mib(soak.heap?.fromBytes ?? 0)} -> ${mib(soak.heap?.toBytes ?? 0)} (${((soak.heap?.growth ?? NaN) * 100).toFixed(2)}%), ` +
        `RSS fitted ${mib(soak.rss?.fromBytes ?? 0)} -> ${mib(soak.rss?.toBytes ?? 0)} (${((soak.rss?.growth ?? NaN) * 100).toFixed(2)}%), ` +
        `RSS at rest ${mib(soak.rssCheckpoints?.fromBytes ?? 0)} -> ${mib(soak.rssCheckpoints?.toBytes ?? 0)}, ` +
        `${r.totals.completed} operations, ${r.totals.errors} errors, ${soak.operationsLost} lost, ` +
        `${r.totals.disconnects} disconnects, ${r.totals.sessionsRecycled} sessions recycled, ` +
        `server requests ${JSON.stringify(r.totals.serverRequests.byMethod)}, ` +
        `settled in ${soak.settledInMs} ms (last: ${JSON.stringify(soak.lastToSettle)}), run ${Math.round(r.elapsedMs)} ms`,
    );
    t.diagnostic(`baseline ${JSON.stringify(soak.baseline)}`);
    t.diagnostic(`after    ${JSON.stringify(soak.after)}`);
    assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr.slice(-3000)}`);
    assert.deepEqual(soak.failures, []);

    assert.ok(soak.heap && soak.heap.growth < 0.05, `heap growth ${soak.heap?.growth}`);
    assert.ok(soak.rss && soak.rss.growth < 0.05, `RSS growth ${soak.rss?.growth}`);
    // Both ends of the window at rest with every client connected (the owner and 499 others).
    assert.equal(soak.checkpoints.from?.connections, 500);
    assert.equal(soak.checkpoints.to?.connections, 500);
    assert.equal(soak.checkpoints.from?.heapUsedBytes.length, soak.medianOf);
    assert.ok(soak.checkpoints.from.tMs >= 30_000, `from checkpoint at ${soak.checkpoints.from.tMs} ms`);
    assert.deepEqual(soak.notReturned, []);
    for (const name of ['connections', 'actors', 'inFlight', 'pendingServerRequests', 'mailboxEntries']) {
      assert.equal(soak.after[name], soak.baseline[name], name);
    }
    assert.equal(soak.baseline.connections, 1, 'the login owner alone at the baseline');
    const timers = (c: Record<string, number>) => c['handles.Timeout'] ?? 0;
    assert.ok(timers(soak.after) <= timers(soak.baseline), 'timers back to the baseline');

    // The load and its faults happened, and nothing was lost.
    assert.equal(r.totals.clientsStarted, 500);
    assert.equal(r.totals.errors, 0, JSON.stringify(r.errors));
    assert.equal(soak.operationsLost, 0);
    assert.ok(soak.operationsStarted >= 10_000, `${soak.operationsStarted} operations`);
    assert.ok(r.totals.disconnects > 0, 'disconnect fault played');
    assert.ok((r.totals.sessionsRecycled ?? 0) > 500, 'sessions came and went');
    assert.ok(r.totals.serverRequests.ignored > 0, 'silent fault played');
    assert.ok(
      (r.totals.serverRequests.byMethod['account/chatgptAuthTokens/refresh']?.answered ?? 0) > 0,
      'backend-401 fault played: refreshes answered',
    );
    assert.match(run.stdout, /soak passed/);
  });
});
