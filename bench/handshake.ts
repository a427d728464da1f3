/**
 * Handshake cost. Cold: spawn a process, send its first request, time the answer, then close
 * stdin and wait for a clean exit. Warm: connections to a broker embedded in this process through
 * the library API, each sending initialize and awaiting the answer.
 */
import { percentile, sortedCopy } from './stats.js';
import { LineChild, withTimeout, type SpawnSpec } from './line-child.js';
import type { Broker } from '../src/index.js';

export const INITIALIZE = {
  id: 1,
  method: 'initialize',
  params: { clientInfo: { name: 'bench', version: '1' }, capabilities: { experimentalApi: true } },
} as const;

/** Why `msg` is not a successful initialize answer for `codexHome`, or undefined when it is. */
export function checkInitialize(msg: unknown, codexHomes: readonly string[]): string | undefined {
  if (typeof msg !== 'object' || msg === null) return 'not a JSON object';
  const m = msg as { id?: unknown; result?: { userAgent?: unknown; codexHome?: unknown }; error?: unknown };
  if (m.id !== INITIALIZE.id) return `answer to id ${JSON.stringify(m.id)}, expected ${INITIALIZE.id}`;
  if (m.error !== undefined) return `initialize failed: ${JSON.stringify(m.error)}`;
  if (typeof m.result?.userAgent !== 'string') return 'initialize result without userAgent';
  if (!codexHomes.includes(m.result.codexHome as string)) {
    return `initialize result codexHome ${JSON.stringify(m.result.codexHome)} is not the bench's`;
  }
  return undefined;
}

export interface ColdResult {
  spawns: number;
  /** Spawn to the parsed answer of the first request. */
  readyMs: number[];
  /** Spawn to the exit after stdin closed. */
  cycleMs: number[];
  medianReadyMs: number;
  p90ReadyMs: number;
  /** Full sequential cycles (spawn, answer, exit) per second of wall time. */
  cyclesPerSec: number;
}

export async function coldSpawns(
  spec: SpawnSpec,
  firstLine: string,
  check: (msg: unknown) => string | undefined,
  spawns: number,
  timeoutMs: number,
): Promise<ColdResult> {
  const readyMs: number[] = [];
  const cycleMs: number[] = [];
  const wall0 = performance.now();
  for (let i = 0; i < spawns; i++) {
    const t0 = performance.now();
    const child = new LineChild(spec);
    const answered = new Promise<number>((resolve, reject) => {
      child.onLine = (line) => {
        const now = performance.now();
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          return reject(child.failure(`unparseable first line: ${line.slice(0, 200)}`));
        }
        const problem = check(msg);
        if (problem !== undefined) reject(child.failure(`${problem}: ${line.slice(0, 200)}`));
        else resolve(now);
      };
      void child.exited.then((code) =>
        reject(child.failure(`exited (code ${String(code)}) before answering`)),
      );
    });
    child.write(firstLine + '\n');
    const t1 = await withTimeout(answered, timeoutMs, () => {
      child.kill();
      return child.failure(`no answer within ${timeoutMs} ms of spawning`);
    });
    let stray: string | undefined;
    child.onLine = (line) => {
      stray ??= line;
    };
    await child.close(timeoutMs);
    if (stray !== undefined) throw child.failure(`unexpected line after the answer: ${stray.slice(0, 200)}`);
    const t2 = performance.now();
    readyMs.push(t1 - t0);
    cycleMs.push(t2 - t0);
  }
  const wallMs = performance.now() - wall0;
  const sorted = sortedCopy(readyMs);
  return {
    spawns,
    readyMs,
    cycleMs,
    medianReadyMs: percentile(sorted, 0.5),
    p90ReadyMs: percentile(sorted, 0.9),
    cyclesPerSec: (spawns / wallMs) * 1000,
  };
}

export interface WarmResult {
  handshakes: number;
  concurrency: number;
  handshakesPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** `handshakes` in-process connections, at most `concurrency` at a time, each closed once initialized. */
export async function warmHandshakes(
  broker: Broker,
  codexHomes: readonly string[],
  handshakes: number,
  concurrency: number,
  timeoutMs: number,
): Promise<WarmResult> {
  const latency = new Float64Array(handshakes);
  let next = 0;
  let completed = 0;
  const one = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const client = broker.connectInProcess();
      client.on('message', (msg) => {
        const now = performance.now();
        const problem = checkInitialize(msg, codexHomes);
        client.close();
        if (problem !== undefined) return reject(new Error(`in-process handshake ${i}: ${problem}`));
        latency[i] = now - t0;
        completed++;
        resolve();
      });
      client.send(INITIALIZE);
    });
  const lane = async (): Promise<void> => {
    while (next < handshakes) await one(next++);
  };
  const t0 = performance.now();
  const lanes = Array.from({ length: Math.min(concurrency, handshakes) }, () => lane());
  await withTimeout(
    Promise.all(lanes),
    timeoutMs,
    () =>
      new Error(`in-process handshakes timed out after ${timeoutMs} ms (${completed}/${handshakes} done)`),
  );
  const elapsedMs = performance.now() - t0;
  if (completed !== handshakes)
    throw new Error(`expected ${handshakes} in-process handshakes, got ${completed}`);
  latency.sort();
  return {
    handshakes,
    concurrency,
    handshakesPerSec: (handshakes / elapsedMs) * 1000,
    p50Ms: percentile(latency, 0.5),
    p99Ms: percentile(latency, 0.99),
  };
}
