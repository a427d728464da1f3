/**
 * Backpressure (issue 8, shared/notes P3), through the built CLI:
 * - a host that stops reading stdout: the broker stops reading stdin once its unread output passes
 *   `max_pending_output_bytes` (the host's own writes then block), its memory stays bounded, and
 *   once the host reads again every request gets exactly one answer;
 * - a WebSocket client that never reads: the same on its socket, while a second connection keeps
 *   answering `account/read` with about its unloaded latency;
 * - a flood of cheap `account/read` frames written as fast as possible: the broker takes one frame
 *   per socket per event-loop turn, answers each before it holds the bound, and the client waits in
 *   TCP: none is refused, and a second connection's latency stays near its baseline;
 * - a flood of `device/key/sign` (real work on a SoftHSM2 token): what one connection holds past
 *   `max_requests_per_connection` is answered -32001 "Server overloaded; retry later." at once.
 * In both floods every request gets exactly one answer and the broker keeps no memory after them
 * (live heap after a full GC, from its SIGUSR2 diagnostics).
 * Peak broker RSS (VmRSS from /proc), the -32001 counts and the other connection's p50/p99 (with
 * its unloaded baseline, measured in the same test) are printed as diagnostics; timings are only
 * asserted with a generous bound (10x and at least 200 ms), since the machine is shared.
 *
 * Long form (10 times the requests): GATEHOUSE_BACKPRESSURE_SCALE=10 node --import tsx --test
 * test/load/backpressure.test.ts
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { TestClient, WsTestClient, type RpcMessage } from '../helpers/app-server-process.js';
import { mib, RssSampler } from '../helpers/proc-status.js';
import { floodFromChild, type FloodTally } from '../helpers/ws-flood-client.js';
import { connectionPayload } from '../helpers/device-key-cases.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';

const SCALE = Number(process.env.GATEHOUSE_BACKPRESSURE_SCALE ?? 1);
/** Requests whose answers (about 470 bytes each: the unknown-method error) pile up unread. */
const UNREAD_REQUESTS = 40_000 * SCALE;
const FLOOD_REQUESTS = 20_000 * SCALE;
/** Each sign is real work on the token (some 0.3 ms), so fewer frames already pass the bound. */
const SIGN_FLOOD_REQUESTS = 5_000 * SCALE;
const FLOOD_BOUND = 100;
/** The smallest mark allowed, so the short form crosses it many times over (8 MiB by default). */
const MARK = 1024 * 1024;
/** Generous: the broker's baseline is some 60-90 MB, and the unread output alone would be 18 MB (180 MB long). */
const RSS_GROWTH_LIMIT = 64 * 1024 * 1024;
/** Live heap a flood may leave behind, after a full GC (the broker holds at most FLOOD_BOUND of it). */
const RETAINED_HEAP_LIMIT = 8 * 1024 * 1024;
/** Ids of the load, clear of the test clients' own (from 1000). */
const FIRST_ID = 1_000_000;
const OVERLOADED = { code: -32001, message: 'Server overloaded; retry later.' };

after(() => TestClient.disposeAll());

function spawnServer(t: { after(fn: () => Promise<void>): void }, args: string[]): TestClient {
  const server = TestClient.spawn({
    args: ['-c', `gatehouse.max_pending_output_bytes=${MARK}`, ...args],
    logLevel: 'info',
    readTimeoutMs: 60_000,
    // Diagnostics (SIGUSR2) then report the heap after a full GC.
    env: { NODE_OPTIONS: '--expose-gc' },
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
 * "Keeps its latency", held to 10 times the unloaded p99 and at least 200 ms. Measured here during
 * the floods: p99 3 to 11 ms against 2 to 8 ms unloaded. Before the WebSocket listener took one
 * frame per socket per turn, a 20,000-frame flood held the event loop for its whole burst and the
 * other connection's p99 was 0.4 to 1.8 s.
 */
function assertLatencyKept(loaded: number[], baseline: number[]): void {
  const bound = Math.max(10 * pct(baseline, 99), 200);
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

  test('a flood of cheap requests: read at the pace the broker answers, none refused, another keeps its latency', async (t) => {
    const server = spawnServer(t, [
      '--listen',
      'ws://127.0.0.1:0',
      '-c',
      `gatehouse.max_requests_per_connection=${FLOOD_BOUND}`,
    ]);
    const url = await server.listenUrl();
    const other = await otherConnection(t, url);
    const run = await measureFlood(server, other, floodFromChild(url, FLOOD_REQUESTS, FIRST_ID, 120_000));
    const { tally } = run;
    t.diagnostic(`account/read ${run.line}`);
    assertFloodAnsweredOnce(tally);
    // One frame per socket per turn: the broker answers account/read faster than it takes the
    // next frame, so the flood never holds FLOOD_BOUND requests; the client waits in TCP instead.
    assert.equal(tally.overloaded, 0, 'a client that is only fast was refused');
    run.assertBounded();
  });

  test('a flood of device/key/sign faster than the token signs: -32001 for the excess, one answer each', async (t) => {
    if (skippedFor(t, softhsmMissing())) return;
    const server = spawnServer(t, [
      '--listen',
      'ws://127.0.0.1:0',
      '-c',
      `gatehouse.max_requests_per_connection=${FLOOD_BOUND}`,
      '-c',
      'gatehouse.device_key_tpm="off"',
    ]);
    const url = await server.listenUrl();
    const other = await otherConnection(t, url);
    const created = await other.request('device/key/create', {
      accountUserId: 'account-user-1',
      clientId: 'cli_123',
      protectionPolicy: 'allow_os_protected_nonextractable',
    });
    const keyId = (created.result as { keyId?: string } | undefined)?.keyId;
    assert.ok(keyId, JSON.stringify(created.error));
    const sign = {
      method: 'device/key/sign',
      params: { keyId, payload: connectionPayload(Math.floor(Date.now() / 1000)) },
    };
    // Enough at once to start every key-store thread, whose heaps would otherwise count as growth.
    const warmIds = new Set(
      await Promise.all(Array.from({ length: 50 }, () => other.sendRequest(sign.method, sign.params))),
    );
    const warm = () => other.messages.filter((m) => m.method === undefined && warmIds.has(m.id!));
    await waitFor('the signs before the flood', () => warm().length === warmIds.size, 30_000);
    const failed = warm().find((answer) => !answer.result);
    assert.equal(failed, undefined, `signs before the flood: ${JSON.stringify(failed?.error)}`);

    const flood = floodFromChild(url, SIGN_FLOOD_REQUESTS, FIRST_ID, 120_000, sign);
    const run = await measureFlood(server, other, flood);
    const { tally } = run;
    t.diagnostic(`device/key/sign ${run.line}`);
    assertFloodAnsweredOnce(tally);
    assert.ok(tally.overloaded > 0, 'no request was refused: the flood never passed the bound');
    assert.ok(tally.results > 0, 'no sign succeeded during the flood');
    assert.match(server.stderrText, /requests refused with -32001/);
    run.assertBounded();
  });
});

/** A second WebSocket connection, initialised, whose account/read latency is measured. */
async function otherConnection(
  t: { after(fn: () => Promise<void>): void },
  url: string,
): Promise<WsTestClient> {
  const other = await WsTestClient.connect(url, 60_000);
  t.after(() => other.close());
  assert.ok((await other.initialize()).result);
  return other;
}

/**
 * The other connection's account/read latency before and during `flood` (started by the caller,
 * from another process), and the broker's RSS meanwhile.
 */
async function measureFlood(server: TestClient, other: WsTestClient, flood: Promise<FloodTally>) {
  const baselineLatency = await readLatencies(other, 200);
  const heapBefore = (await server.diagnostics()).memory.heapUsedBytes;
  const rss = new RssSampler(server.child.pid!);
  const baselineRss = rss.sample();
  let flooding = true;
  const settled = () => (flooding = false);
  flood.then(settled, settled);
  const loadedLatency: number[] = [];
  while (flooding) loadedLatency.push(...(await readLatencies(other, 1)));
  loadedLatency.sort((a, b) => a - b);
  const tally = await flood;
  const peak = rss.stop();
  const heapAfter = (await server.diagnostics()).memory.heapUsedBytes;
  return {
    tally,
    line:
      `flood: ${tally.sent} frames at once in ${tally.elapsedMs} ms, bound ${FLOOD_BOUND}; -32001: ` +
      `${tally.overloaded}, results: ${tally.results}; RSS baseline ${mib(baselineRss)}, peak ${mib(peak)} ` +
      `(+${mib(peak - baselineRss)}); heap after GC ${mib(heapBefore)} before, ${mib(heapAfter)} after; other connection account/read: unloaded ${latencyLine(baselineLatency)}, ` +
      `during the flood ${latencyLine(loadedLatency)} (${loadedLatency.length} requests)`,
    assertBounded() {
      assert.ok(loadedLatency.length > 0, 'the flood ended before the other connection could be measured');
      // Peak RSS is printed, not bounded: it counts garbage V8 has not collected yet, and V8 lets
      // that grow with the length of a burst (200,000 frames: +62 MiB, with +0.6 MiB of live heap).
      // What the broker keeps is the live heap after a full GC.
      assert.ok(
        heapAfter - heapBefore < RETAINED_HEAP_LIMIT,
        `the broker kept ${mib(heapAfter - heapBefore)} of heap after the flood`,
      );
      assertLatencyKept(loadedLatency, baselineLatency);
    },
  };
}

function assertFloodAnsweredOnce(tally: FloodTally): void {
  assert.deepEqual(
    { duplicates: tally.duplicates, missing: tally.missing, otherErrors: tally.otherErrors },
    { duplicates: 0, missing: 0, otherErrors: 0 },
  );
  assert.equal(tally.results + tally.overloaded, tally.sent);
}
