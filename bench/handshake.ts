/**
 * Handshake cost, the `handshakes` part. Cold: spawn a process, send its first request, time the
 * answer, then close stdin and wait for a clean exit (the issue 7 cold-start target, against the
 * raw echo's spawn measured by the run's ceilings with the same `coldSpawns`). Warm: connections
 * to a broker embedded in this process through the library API, each sending initialize and
 * awaiting the answer, one at a time and all at once.
 */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, percentile, sortedCopy } from './stats.js';
import { LineChild, withTimeout, type SpawnSpec } from './line-child.js';
import { createBroker, type Broker } from '../src/index.js';
import { silentLogger } from '../src/util/logger.js';
import { int, ms, rate, ratio, row } from './report.js';

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

// ---------------------------------------------------------------------------------------------
// The part.

/** Medians over rounds of cold spawns. */
export interface ColdSummary {
  medianReadyMs: number;
  p90ReadyMs: number;
  /** 1000 / the median spawn-to-answer. */
  handshakesPerSec: number;
  cyclesPerSec: number;
  medianCycleMs: number;
  rounds: ColdResult[];
}

export function summarizeCold(rounds: ColdResult[]): ColdSummary {
  const medianReadyMs = median(rounds.map((r) => r.medianReadyMs));
  return {
    medianReadyMs,
    p90ReadyMs: median(rounds.map((r) => r.p90ReadyMs)),
    handshakesPerSec: 1000 / medianReadyMs,
    cyclesPerSec: median(rounds.map((r) => r.cyclesPerSec)),
    medianCycleMs: median(rounds.map((r) => median(r.cycleMs))),
    rounds,
  };
}

export type WarmSummary = Omit<WarmResult, 'handshakes' | 'concurrency'> & { rounds: WarmResult[] };

export interface HandshakeReport {
  parameters: HandshakeBenchOptions;
  cold: ColdSummary;
  warm: { sequential: WarmSummary; concurrent: WarmSummary };
}

export interface HandshakeBenchOptions {
  rounds: number;
  coldSpawns: number;
  warmHandshakes: number;
}

const gatehouseCli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export async function runHandshakeBench(
  options: HandshakeBenchOptions,
  progress: (message: string) => void,
): Promise<HandshakeReport> {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-bench-hs-'));
  const homes = [home, realpathSync(home)];
  const check = (msg: unknown): string | undefined => checkInitialize(msg, homes);
  const spec: SpawnSpec = {
    label: 'gatehouse',
    args: [gatehouseCli, 'app-server'],
    env: { ...process.env, CODEX_HOME: home, GATEHOUSE_LOG: 'warn' },
  };
  const initLine = JSON.stringify(INITIALIZE);
  const { rounds, coldSpawns: spawns, warmHandshakes: warmN } = options;
  const broker = createBroker({ codexHome: home, log: silentLogger() });
  try {
    progress(`cold start: ${spawns} sequential gatehouse spawns per round (plus 1 warm-up)`);
    await coldSpawns(spec, initLine, check, 1, 15_000);
    const cold: ColdResult[] = [];
    for (let r = 1; r <= rounds; r++) {
      progress(`cold round ${r}/${rounds}`);
      cold.push(await coldSpawns(spec, initLine, check, spawns, 15_000));
    }

    progress(`warm handshakes: ${warmN} in-process connections per round, one at a time and all at once`);
    const warmUp = Math.min(warmN, 200);
    await warmHandshakes(broker, homes, warmUp, 1, 30_000);
    await warmHandshakes(broker, homes, warmUp, warmUp, 30_000);
    const warm: { sequential: WarmResult; concurrent: WarmResult }[] = [];
    for (let r = 1; r <= rounds; r++) {
      warm.push({
        sequential: await warmHandshakes(broker, homes, warmN, 1, 60_000),
        concurrent: await warmHandshakes(broker, homes, warmN, warmN, 60_000),
      });
    }
    const warmOf = (mode: 'sequential' | 'concurrent'): WarmSummary => ({
      handshakesPerSec: median(warm.map((r) => r[mode].handshakesPerSec)),
      p50Ms: median(warm.map((r) => r[mode].p50Ms)),
      p99Ms: median(warm.map((r) => r[mode].p99Ms)),
      rounds: warm.map((r) => r[mode]),
    });
    return {
      parameters: { rounds, coldSpawns: spawns, warmHandshakes: warmN },
      cold: summarizeCold(cold),
      warm: { sequential: warmOf('sequential'), concurrent: warmOf('concurrent') },
    };
  } finally {
    await withTimeout(broker.close(), 15_000, () => new Error('broker.close() did not settle within 15 s'));
    rmSync(home, { recursive: true, force: true });
  }
}

export function printHandshakeReport(report: HandshakeReport, echoSpawn: ColdSummary | undefined): void {
  const { coldSpawns: spawns, warmHandshakes: warmN } = report.parameters;
  const h = [46, 11, 9, 13, 22];
  console.log('');
  console.log(row(['Handshakes', 'median ms', 'p90 ms', 'handshakes/s', 'full cycle (ms, /s)'], h));
  const coldRow = (label: string, x: ColdSummary) =>
    console.log(
      row(
        [
          label,
          ms(x.medianReadyMs),
          ms(x.p90ReadyMs),
          rate(x.handshakesPerSec),
          `${ms(x.medianCycleMs)}, ${x.cyclesPerSec.toFixed(1)}`,
        ],
        h,
      ),
    );
  if (echoSpawn)
    coldRow(`  ceiling: spawn raw echo -> 1 echo (x${echoSpawn.rounds[0]?.spawns ?? 0})`, echoSpawn);
  coldRow(`  cold: spawn gatehouse -> initialized (x${spawns})`, report.cold);
  console.log(row(['', 'p50 ms', 'p99 ms', 'handshakes/s', ''], h));
  const warmRow = (label: string, x: WarmSummary) =>
    console.log(row([label, ms(x.p50Ms), ms(x.p99Ms), int(x.handshakesPerSec), ''], h));
  warmRow(`  warm: in-process, 1 at a time (x${warmN})`, report.warm.sequential);
  warmRow(`  warm: in-process, ${warmN} at once`, report.warm.concurrent);
  console.log(
    '  (cold handshakes/s = 1000 / median spawn-to-answer; full cycle = spawn -> answer -> exit 0,',
  );
  console.log('   its rate is sequential cycles per second of wall time)');
  if (echoSpawn) {
    console.log(
      row(
        [
          '  cold handshake / raw echo spawn (median)',
          ratio(report.cold.medianReadyMs / echoSpawn.medianReadyMs),
        ],
        [46, 11],
      ),
    );
  }
}
