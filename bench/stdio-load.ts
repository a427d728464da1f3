/**
 * Request load over a JSON-lines child: `inFlight` requests outstanding at a time, each answer
 * correlated by id and checked, replacements for a whole stdout chunk sent with one write().
 * With inFlight = 1 this is the sequential round trip. Latency runs from enqueue to the parse of
 * the answer (stack-spike §3 method).
 *
 * `runClosedLoop` is the driver, told how to build a request line and how to check an answer;
 * `measureLoop` summarizes a run, `runLoad` is the mock-method load on top of it. Every bench
 * that drives a JSON-lines child (account/read, device/key/sign) uses the same loop.
 */
import { median, percentile, sortedCopy } from './stats.js';
import { withTimeout, type LineChild } from './line-child.js';

/** A JSON-lines connection and the next request id unused on it. */
export interface Connection {
  child: LineChild;
  nextId: number;
}

export interface LoadTarget extends Connection {
  /** The key of the result object that must carry the request's value back. */
  resultKey: string;
}

export interface LoadResult {
  requests: number;
  inFlight: number;
  elapsedMs: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** An answer the loop has matched by id to one of its outstanding requests. */
export interface Answer {
  id: number;
  result?: unknown;
  error?: unknown;
}

export interface ClosedLoop {
  /** The request line (no newline) for `id`. */
  request: (id: number) => string;
  /** Why `answer` is not the right answer to its request, or undefined when it is. */
  check: (answer: Answer) => string | undefined;
  /** Pass over notifications (a method, no id) rather than failing the run on them. */
  skipNotifications?: boolean;
}

export interface ClosedLoopRun {
  elapsedMs: number;
  /** Milliseconds from enqueue to the parse of the answer, in request order. */
  latency: Float64Array;
}

/** Same line for both targets: codex's mock method, whose params the raw echo sends back as-is. */
export function requestLine(id: number): string {
  return `{"id":${id},"method":"mock/experimentalMethod","params":{"value":"v${id}"}}`;
}

export async function runLoad(
  target: LoadTarget,
  requests: number,
  inFlight: number,
  timeoutMs: number,
): Promise<LoadResult> {
  const { resultKey } = target;
  const check = (m: Answer): string | undefined => {
    if (m.error !== undefined) return `error answer to id ${m.id}`;
    const result = m.result as Record<string, unknown> | null | undefined;
    if (typeof result !== 'object' || result === null || result[resultKey] !== `v${m.id}`) {
      return `wrong result for id ${m.id} (expected ${resultKey}: "v${m.id}")`;
    }
    return undefined;
  };
  // Gatehouse may announce login or status changes while the load runs: passed over.
  const loop = { request: requestLine, check, skipNotifications: true };
  return measureLoop(target, loop, requests, inFlight, timeoutMs);
}

/** `runClosedLoop`, summarized: rate and latency percentiles. */
export async function measureLoop(
  connection: Connection,
  loop: ClosedLoop,
  requests: number,
  inFlight: number,
  timeoutMs: number,
): Promise<LoadResult> {
  const { elapsedMs, latency } = await runClosedLoop(connection, loop, requests, inFlight, timeoutMs);
  return loadResult(latency, inFlight, elapsedMs);
}

/** Rate and percentiles of one run from its latencies (ms, any order) and wall time. */
export function loadResult(latency: ArrayLike<number>, inFlight: number, elapsedMs: number): LoadResult {
  const sorted = sortedCopy(latency);
  return {
    requests: sorted.length,
    inFlight,
    elapsedMs,
    reqPerSec: (sorted.length / elapsedMs) * 1000,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

/** Medians over rounds of the same load, with the rounds kept for the JSON. */
export type LoadSummary = LoadResult & { rounds: LoadResult[] };

export function summarizeLoads(rounds: LoadResult[]): LoadSummary {
  return {
    requests: rounds[0]?.requests ?? 0,
    inFlight: rounds[0]?.inFlight ?? 0,
    elapsedMs: median(rounds.map((r) => r.elapsedMs)),
    reqPerSec: median(rounds.map((r) => r.reqPerSec)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    rounds,
  };
}

/** Pipelined runs get a deadline that scales with their size: a floor of 2,000 req/s, at least 30 s. */
export function loadTimeoutMs(requests: number): number {
  return Math.max(30_000, requests / 2);
}

/**
 * Sends `requests` requests on `connection` (ids from its `nextId` on, which it advances), keeping
 * `inFlight` outstanding; rejects on the first line that is not a good answer to one of them.
 */
export function runClosedLoop(
  connection: Connection,
  loop: ClosedLoop,
  requests: number,
  inFlight: number,
  timeoutMs: number,
): Promise<ClosedLoopRun> {
  const { child } = connection;
  const base = connection.nextId;
  connection.nextId += requests;
  const started = new Float64Array(requests);
  const latency = new Float64Array(requests);
  const seen = new Uint8Array(requests);
  let sent = 0;
  let received = 0;
  let out: string[] = [];
  let done = false;
  let t0 = 0;

  const enqueue = (): void => {
    const i = sent++;
    started[i] = performance.now();
    out.push(loop.request(base + i));
  };

  const finished = new Promise<number>((resolve, reject) => {
    const fail = (reason: string): void => {
      if (done) return;
      done = true;
      reject(child.failure(`${reason} (after ${received}/${requests} answers)`));
    };
    child.onLine = (line) => {
      if (done) return fail(`unexpected line after the run ended: ${line.slice(0, 200)}`);
      const now = performance.now();
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        return fail(`unparseable line: ${line.slice(0, 200)}`);
      }
      if (loop.skipNotifications && isNotification(msg)) return;
      const problem = correlate(msg, base, requests, seen) ?? loop.check(msg as Answer);
      if (problem !== undefined) return fail(`${problem}: ${line.slice(0, 200)}`);
      const i = (msg as Answer).id - base;
      seen[i] = 1;
      latency[i] = now - (started[i] as number);
      received++;
      if (sent < requests) enqueue();
    };
    child.onChunkEnd = () => {
      if (done) return;
      if (out.length > 0) {
        child.write(out.join('\n') + '\n');
        out = [];
      }
      if (received === requests) {
        done = true;
        resolve(performance.now());
      }
    };
    t0 = performance.now();
    while (sent < Math.min(inFlight, requests)) enqueue();
    child.write(out.join('\n') + '\n');
    out = [];
  });

  return withTimeout(finished, timeoutMs, () => {
    done = true;
    return child.failure(`timed out after ${timeoutMs} ms with ${received}/${requests} answers`);
  }).then((t1) => {
    if (received !== requests) throw child.failure(`expected ${requests} answers, got ${received}`);
    return { elapsedMs: t1 - t0, latency };
  });
}

function isNotification(msg: unknown): boolean {
  if (typeof msg !== 'object' || msg === null) return false;
  const m = msg as { id?: unknown; method?: unknown };
  return m.method !== undefined && m.id === undefined;
}

/** Why `msg` is not an answer to an outstanding request (ids `base` on), or undefined when it is. */
function correlate(msg: unknown, base: number, requests: number, seen: Uint8Array): string | undefined {
  if (typeof msg !== 'object' || msg === null) return 'not a JSON object';
  const m = msg as { id?: unknown };
  if (typeof m.id !== 'number') return 'answer without a numeric id';
  const i = m.id - base;
  if (!Number.isInteger(i) || i < 0 || i >= requests) return `answer to an unknown id ${m.id}`;
  if (seen[i]) return `second answer to id ${m.id}`;
  return undefined;
}
