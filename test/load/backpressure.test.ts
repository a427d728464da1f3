/**
 * Backpressure (issue 8, shared/notes P3), through the built CLI:
 * - a host that stops reading stdout: the broker stops reading stdin once its unread output passes
 *   `max_pending_output_bytes` (the host's own writes then block), its memory stays bounded, and
 *   once the host reads again every request gets exactly one answer;
 * - a WebSocket client that never reads: the same on its socket, while a second connection keeps
 *   answering `account/read` with about its unloaded latency;
 * - a flood of `account/read` frames written as fast as possible: what one connection holds past
 *   `max_requests_per_connection` is answered -32001 "Server overloaded; retry later." at once,
 *   every request gets exactly one answer, memory stays bounded, and the second connection's
 *   latency stays near its baseline.
 * Peak broker RSS (VmRSS from /proc), the -32001 counts and the other connection's p50/p99 (with
 * its unloaded baseline, measured in the same test) are printed as diagnostics; timings are only
 * asserted with a generous bound (10x and at least 1 s), since the machine is shared.
 *
 * Long form (10 times the requests): GATEHOUSE_BACKPRESSURE_SCALE=10 node --import tsx --test
 * test/load/backpressure.test.ts
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { TestClient, WsTestClient, type RpcMessage } from '../helpers/app-server-process.js';
import { mib, RssSampler } from '../helpers/proc-status.js';
import { floodFromChild } from '../helpers/ws-flood-client.js';

const SCALE = Number(process.env.GATEHOUSE_BACKPRESSURE_SCALE ?? 1);
/** Requests whose answers (about 470 bytes each: the unknown-method error) pile up unread. */
const UNREAD_REQUESTS = 40_000 * SCALE;
const FLOOD_REQUESTS = 20_000 * SCALE;
const FLOOD_BOUND = 100;
/** The smallest mark allowed, so the short form crosses it many times over (8 MiB by default). */
const MARK = 1024 * 1024;
/** Generous: the broker's baseline is some 60-90 MB, and the unread output alone would be 18 MB (180 MB long). */
const RSS_GROWTH_LIMIT = 64 * 1024 * 1024;
/** Ids of the load, clear of the test clients' own (from 1000). */
const FIRST_ID = 1_000_000;
const OVERLOADED = { code: -32001, message: 'Server overloaded; retry later.' };

after(() => TestClient.disposeAll());

function spawnServer(t: { after(fn: () => Promise<void>): void }, args: string[]): TestClient {
  const server = TestClient.spawn({
    args: ['-c', `gatehouse.max_pending_output_bytes=${MARK}`, ...args],
    logLevel: 'info',
    readTimeoutMs: 60_000,
  });
  t.after(() => server.dispose());
  return server;
}

function unknownMethodLines(from: number, count: number): string {
  let text = '';
  for (let id = from; id < from + count; id++) text += `{"id":${id},"method":"no/such/method"}\n`;
  return text;
}

/** Each id in [from, from+count) answered exactly once; returns how many were -32001. */
function assertAnsweredOnce(messages: readonly RpcMessage[], from: number, count: number): number {
  const answers = new Uint32Array(count);
  let overloaded = 0;
  for (const m of messages) {
    if (m.method !== undefined || typeof m.id !== 'number' || m.id < from || m.id >= from + count) continue;
    answers[m.id - from]!++;
    if (m.error?.code === -32001) {
      assert.deepEqual(m.error, OVERLOADED);
      overloaded++;
    }
  }
  const wrong = [...answers.entries()].filter(([, n]) => n !== 1);
  assert.deepEqual(
    wrong.slice(0, 5).map(([i, n]) => ({ id: from + i, answers: n })),
    [],
    `${wrong.length} ids not answered exactly once`,
  );
  return overloaded;
}

/** Counts the answers to the load's ids as they arrive. */
function countLoadAnswers(peer: { onMessage(fn: (m: RpcMessage) => void): void }): () => number {
  let n = 0;
  peer.onMessage((m) => {
    if (m.method === undefined && typeof m.id === 'number' && m.id >= FIRST_ID) n++;
  });
  return () => n;
}

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Latencies of `count` sequential account/read requests, sorted (ms). */
async function readLatencies(client: WsTestClient, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const reply = await client.request('account/read', {});
    out.push(performance.now() - started);
    assert.ok(reply.result, JSON.stringify(reply));
  }
  return out.sort((a, b) => a - b);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function latencyLine(sorted: number[]): string {
  return `p50 ${pct(sorted, 50).toFixed(2)} ms, p99 ${pct(sorted, 99).toFixed(2)} ms`;
}

/**
 * The generous bound "keeps its latency" is held to: 10 times the unloaded p99, and at least 2 s.
 * The floor is 2 s rather than 1: during a flood the other connection shares one event loop and
 * two shared cores with it, and its worst request (the p99 of a few dozen) has been seen at 0.5 to
 * 1.8 s on a loaded CI machine while its p50 stayed under a millisecond.
 */
function assertLatencyKept(loaded: number[], baseline: number[]): void {
  const bound = Math.max(10 * pct(baseline, 99), 2_000);
  assert.ok(pct(loaded, 99) <= bound, `p99 ${pct(loaded, 99)} ms over ${bound} ms`);
}

describe('backpressure', () => {
  test('a host that stops reading stdout: stdin is no longer read, memory stays bounded, nothing is lost', async (t) => {
    const server = spawnServer(t, []);
    assert.ok((await server.initialize()).result);
    const rss = new RssSampler(server.child.pid!);
    t.after(() => void rss.stop());
    const baseline = rss.sample();
    const answered = countLoadAnswers(server);
    server.child.stdout.pause();

    const batch = 500;
    let written = 0;
    let stalledAt: number | undefined;
    let stdinBacklogAtStall = 0;
    let peakWhileStalled = 0;
    const drained = (ms: number) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          server.child.stdin.off('drain', done);
          resolve(false);
        }, ms);
        const done = () => {
          clearTimeout(timer);
          resolve(true);
        };
        server.child.stdin.once('drain', done);
      });
    while (written < UNREAD_REQUESTS) {
      const n = Math.min(batch, UNREAD_REQUESTS - written);
      const ok = server.child.stdin.write(unknownMethodLines(FIRST_ID + written, n));
      written += n;
      if (ok) continue;
      if (stalledAt === undefined && !(await drained(1_000))) {
        // A second without the broker taking any input: it stopped reading. Read again.
        stalledAt = written;
        stdinBacklogAtStall = server.child.stdin.writableLength;
        rss.sample();
        peakWhileStalled = rss.peak;
        server.child.stdout.resume();
        assert.ok(await drained(30_000), 'the broker did not read stdin again');
      } else if (stalledAt !== undefined) {
        assert.ok(await drained(30_000), 'the broker stopped reading stdin while its output was read');
      }
    }
    if (stalledAt === undefined) server.child.stdout.resume();
    await waitFor('every answer', () => answered() >= UNREAD_REQUESTS, 60_000);
    const peak = rss.stop();
    const overloaded = assertAnsweredOnce(server.messages, FIRST_ID, UNREAD_REQUESTS);
    t.diagnostic(
      `stdout unread: ${UNREAD_REQUESTS} requests (~${mib(UNREAD_REQUESTS * 470)} of answers), mark ${MARK} B; ` +
        `stdin stopped being read after ${stalledAt ?? 'never'} written (${stdinBacklogAtStall} B waiting in our pipe); ` +
        `RSS baseline ${mib(baseline)}, peak until then ${mib(peakWhileStalled)} ` +
        `(+${mib(peakWhileStalled - baseline)}), peak overall ${mib(peak)} (+${mib(peak - baseline)}); ` +
        `-32001: ${overloaded}`,
    );
    assert.ok(
      stalledAt !== undefined && stalledAt < UNREAD_REQUESTS,
      'the broker never stopped reading stdin',
    );
    assert.match(server.stderrText, /the stdio host is not reading its output: its input is no longer read/);
    // The bound is about the time the host does not read. Once it reads again the broker answers
    // some 100,000 requests a second and its heap grows with the garbage of that (printed above).
    assert.ok(
      peakWhileStalled - baseline < RSS_GROWTH_LIMIT,
      `RSS grew by ${mib(peakWhileStalled - baseline)} while stdout was not read`,
    );
    assert.deepEqual(server.badStdoutLines, []);
  });

  test('a WebSocket client that never reads: its socket is no longer read; another keeps its latency', async (t) => {
    const server = spawnServer(t, ['--listen', 'ws://127.0.0.1:0']);
    const url = await server.listenUrl();
    const [silent, other] = await Promise.all([
      WsTestClient.connect(url, 60_000),
      WsTestClient.connect(url, 60_000),
    ]);
    t.after(async () => {
      silent.socket.terminate();
      await other.close();
    });
    assert.ok((await silent.initialize()).result);
    assert.ok((await other.initialize()).result);
    const baselineLatency = await readLatencies(other, 200);
    const rss = new RssSampler(server.child.pid!);
    t.after(() => void rss.stop());
    const baselineRss = rss.sample();
    const answered = countLoadAnswers(silent);

    silent.socket.pause();
    // Padded, so that what the server has not read overflows the kernel's socket buffers too and
    // shows on our side.
    const pad = 'p'.repeat(Math.ceil(1_000 / SCALE));
    for (let id = FIRST_ID; id < FIRST_ID + UNREAD_REQUESTS; id++)
      silent.socket.send(`{"id":${id},"method":"no/such/method","params":{"pad":"${pad}"}}`);
    // Our own sends back up once the server stops reading the socket.
    let last = -1;
    let steadySince = Date.now();
    await waitFor(
      'the server to stop reading the silent socket',
      () => {
        const now = silent.socket.bufferedAmount;
        if (now !== last) {
          last = now;
          steadySince = Date.now();
        }
        return now > 0 && Date.now() - steadySince > 1_000;
      },
      60_000,
    );
    const unsentAtStall = silent.socket.bufferedAmount;
    const loadedLatency = await readLatencies(other, 200);
    const peak = rss.sample() > rss.peak ? rss.sample() : rss.peak;

    silent.socket.resume();
    await waitFor('every answer on the silent socket', () => answered() >= UNREAD_REQUESTS, 60_000);
    rss.stop();
    const overloaded = assertAnsweredOnce(silent.messages, FIRST_ID, UNREAD_REQUESTS);
    t.diagnostic(
      `WebSocket never reading: ${UNREAD_REQUESTS} requests, mark ${MARK} B; ${unsentAtStall} B of them still ` +
        `unsent on our side when the server stopped reading; RSS baseline ${mib(baselineRss)}, peak while ` +
        `stalled ${mib(peak)} (+${mib(peak - baselineRss)}); -32001: ${overloaded}; other connection ` +
        `account/read: unloaded ${latencyLine(baselineLatency)}, during the stall ${latencyLine(loadedLatency)}`,
    );
    assert.ok(unsentAtStall > 0);
    assert.match(
      server.stderrText,
      /a WebSocket client is not reading its output: its input is no longer read/,
    );
    assert.ok(peak - baselineRss < RSS_GROWTH_LIMIT, `RSS grew by ${mib(peak - baselineRss)}`);
    assertLatencyKept(loadedLatency, baselineLatency);
  });

  test('a flood faster than the broker answers: -32001 for the excess, one answer each', async (t) => {
    // A small bound, so that what one WebSocket read delivers at once (about a thousand frames)
    // passes it although the broker answers account/read in microseconds.
    const server = spawnServer(t, [
      '--listen',
      'ws://127.0.0.1:0',
      '-c',
      `gatehouse.max_requests_per_connection=${FLOOD_BOUND}`,
    ]);
    const url = await server.listenUrl();
    const other = await WsTestClient.connect(url, 60_000);
    t.after(() => other.close());
    assert.ok((await other.initialize()).result);
    const baselineLatency = await readLatencies(other, 200);
    const rss = new RssSampler(server.child.pid!);
    t.after(() => void rss.stop());
    const baselineRss = rss.sample();

    // The flood comes from another process, so this one only measures the other connection.
    let flooding = true;
    const flood = floodFromChild(url, FLOOD_REQUESTS, FIRST_ID, 120_000);
    flood.then(
      () => (flooding = false),
      () => (flooding = false),
    );
    await Promise.race([server.waitForStderr('requests refused with -32001', 60_000), flood]);
    const loadedLatency: number[] = [];
    while (flooding) loadedLatency.push(...(await readLatencies(other, 1)));
    loadedLatency.sort((a, b) => a - b);
    const tally = await flood;
    const peak = rss.stop();
    t.diagnostic(
      `flood: ${FLOOD_REQUESTS} account/read frames at once, bound ${FLOOD_BOUND}; -32001: ${tally.overloaded}, ` +
        `results: ${tally.results}; RSS baseline ${mib(baselineRss)}, peak ${mib(peak)} ` +
        `(+${mib(peak - baselineRss)}); other connection account/read: unloaded ${latencyLine(baselineLatency)}, ` +
        `during the flood ${latencyLine(loadedLatency)} (${loadedLatency.length} requests)`,
    );
    assert.deepEqual(
      { duplicates: tally.duplicates, missing: tally.missing, otherErrors: tally.otherErrors },
      { duplicates: 0, missing: 0, otherErrors: 0 },
    );
    assert.equal(tally.results + tally.overloaded, FLOOD_REQUESTS);
    assert.ok(tally.overloaded > 0, 'no request was refused: the flood never passed the bound');
    assert.ok(loadedLatency.length > 0, 'the flood ended before the other connection could be measured');
    assert.ok(peak - baselineRss < RSS_GROWTH_LIMIT, `RSS grew by ${mib(peak - baselineRss)}`);
    assertLatencyKept(loadedLatency, baselineLatency);
  });
});
