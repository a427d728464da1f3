/**
 * Request load over a JSON-lines child: `inFlight` requests outstanding at a time, each answer
 * correlated by id and checked, replacements for a whole stdout chunk sent with one write().
 * With inFlight = 1 this is the sequential round trip. Latency runs from enqueue to the parse of
 * the answer (stack-spike §3 method).
 */
import { percentile } from './stats.js';
import { withTimeout, type LineChild } from './line-child.js';

export interface LoadTarget {
  child: LineChild;
  /** The key of the result object that must carry the request's value back. */
  resultKey: string;
  /** Next unused request id on this connection. */
  nextId: number;
}

export interface LoadResult {
  requests: number;
  inFlight: number;
  elapsedMs: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** Same line for both targets: codex's mock method, whose params the raw echo sends back as-is. */
export function requestLine(id: number): string {
  return `{"id":${id},"method":"mock/experimentalMethod","params":{"value":"v${id}"}}`;
}

export function runLoad(
  target: LoadTarget,
  requests: number,
  inFlight: number,
  timeoutMs: number,
): Promise<LoadResult> {
  const { child, resultKey } = target;
  const base = target.nextId;
  target.nextId += requests;
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
    out.push(requestLine(base + i));
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
      const problem = check(msg, base, requests, seen, resultKey);
      if (problem !== undefined) return fail(`${problem}: ${line.slice(0, 200)}`);
      const i = (msg as { id: number }).id - base;
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
    const elapsedMs = t1 - t0;
    latency.sort();
    return {
      requests,
      inFlight,
      elapsedMs,
      reqPerSec: (requests / elapsedMs) * 1000,
      p50Ms: percentile(latency, 0.5),
      p99Ms: percentile(latency, 0.99),
    };
  });
}

/** Why `msg` is not the expected answer to an outstanding request, or undefined when it is. */
function check(
  msg: unknown,
  base: number,
  requests: number,
  seen: Uint8Array,
  key: string,
): string | undefined {
  if (typeof msg !== 'object' || msg === null) return 'not a JSON object';
  const m = msg as { id?: unknown; result?: unknown; error?: unknown };
  if (typeof m.id !== 'number') return 'answer without a numeric id';
  const i = m.id - base;
  if (!Number.isInteger(i) || i < 0 || i >= requests) return `answer to an unknown id ${m.id}`;
  if (seen[i]) return `second answer to id ${m.id}`;
  if (m.error !== undefined) return `error answer to id ${m.id}`;
  const result = m.result as Record<string, unknown> | null | undefined;
  if (typeof result !== 'object' || result === null || result[key] !== `v${m.id}`) {
    return `wrong result for id ${m.id} (expected ${key}: "v${m.id}")`;
  }
  return undefined;
}
