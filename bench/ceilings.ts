/**
 * The ceilings: what this machine does with nothing of Gatehouse in the way, measured once at the
 * top of the run, printed once, and passed to every part for its ratios (issue 7, part 3).
 *
 *  - raw stdio echo (`stdio-echo.ts`, the hand-split JSON-lines child): at the deep depth, at 64
 *    in flight (the account/read target's depth) and at 1 in flight;
 *  - the raw echo's spawn to its first answer (the cold-start target's ceiling);
 *  - raw worker round trip: a plain Worker, and piscina's `run()` (`worker-echo.ts`);
 *  - raw `crypto.sign` ECDSA P-256 on every core (`signCeiling` in `device-keys.ts`);
 *  - a bare `ws` server's memory per idle connection (`idle-connections.ts`).
 *
 * Only the ceilings the selected parts use are measured.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { signCeiling, type SignCeiling } from './device-keys.js';
import { coldSpawns, summarizeCold, type ColdResult, type ColdSummary } from './handshake.js';
import { measureIdle, type IdleMeasure } from './idle-connections.js';
import { LineChild, type SpawnSpec } from './line-child.js';
import { TARGET_IN_FLIGHT, type Part, type Sizes } from './options.js';
import { int, kb, latency, ms, rate, ratio, row } from './report.js';
import {
  loadTimeoutMs,
  requestLine,
  runLoad,
  summarizeLoads,
  type LoadResult,
  type LoadTarget,
} from './stdio-load.js';
import type { StdioCeilings } from './stdio-requests.js';
import { measureWorkerCeilings, WORKER_IN_FLIGHT, type WorkerCeilings } from './worker-echo.js';

export type CeilingKind = 'stdio-echo' | 'echo-spawn' | 'worker' | 'sign' | 'idle-ws';

/** What each part divides by. The relay and remote-control parts carry their own baselines. */
const NEEDS: Record<Part, CeilingKind[]> = {
  stdio: ['stdio-echo'],
  handshakes: ['echo-spawn'],
  // Its ceiling, a raw ws echo at the same pace, is measured next to it (loadtest-handshake.ts).
  'ws-handshakes': [],
  idle: ['idle-ws'],
  relay: [],
  'device-keys': ['stdio-echo', 'worker', 'sign'],
  'remote-control': [],
};

export interface Ceilings {
  stdioEcho?: StdioCeilings;
  echoSpawn?: ColdSummary;
  worker?: WorkerCeilings;
  sign?: SignCeiling;
  idleWs?: IdleMeasure;
}

const echoSpec: SpawnSpec = {
  label: 'raw echo',
  args: [fileURLToPath(new URL('./stdio-echo.js', import.meta.url))],
};

export async function measureCeilings(
  parts: Part[],
  sizes: Sizes,
  progress: (message: string) => void,
): Promise<Ceilings> {
  const kinds = new Set(parts.flatMap((p) => NEEDS[p]));
  const ceilings: Ceilings = {};
  if (kinds.has('stdio-echo')) ceilings.stdioEcho = await stdioEcho(sizes, progress);
  if (kinds.has('echo-spawn')) ceilings.echoSpawn = await echoSpawn(sizes, progress);
  if (kinds.has('worker')) ceilings.worker = await measureWorkerCeilings(sizes, progress);
  if (kinds.has('sign')) {
    const threads = availableParallelism();
    progress(`sign ceiling: raw crypto.sign on ${threads} threads for ${sizes.signSeconds} s`);
    ceilings.sign = { threads, signPerSec: await signCeiling(threads, sizes.signSeconds) };
  }
  if (kinds.has('idle-ws')) {
    progress(`idle ceiling: ${sizes.idleConnections} connections to a bare ws server`);
    ceilings.idleWs = await measureIdle('bare-ws', sizes.idleConnections);
  }
  return ceilings;
}

async function stdioEcho(sizes: Sizes, progress: (m: string) => void): Promise<StdioCeilings> {
  const { rounds, requests, deepInFlight, requestsAt64, rttRequests } = sizes;
  const echo: LoadTarget = { child: new LineChild(echoSpec), resultKey: 'value', nextId: 1 };
  const load = (n: number, inFlight: number) => runLoad(echo, n, inFlight, loadTimeoutMs(n));
  progress('stdio echo ceiling: warm-up');
  await load(Math.min(requests, 20_000), deepInFlight);
  await load(Math.min(rttRequests, 1000), 1);
  const results: Record<keyof StdioCeilings, LoadResult>[] = [];
  for (let r = 1; r <= rounds; r++) {
    progress(
      `stdio echo ceiling round ${r}/${rounds}: ${requests} at ${deepInFlight} in flight, ` +
        `${requestsAt64} at ${TARGET_IN_FLIGHT}, ${rttRequests} at 1`,
    );
    results.push({
      deep: await load(requests, deepInFlight),
      at64: await load(requestsAt64, TARGET_IN_FLIGHT),
      rtt: await load(rttRequests, 1),
    });
  }
  await echo.child.close();
  const of = (key: keyof StdioCeilings) => summarizeLoads(results.map((r) => r[key]));
  return { deep: of('deep'), at64: of('at64'), rtt: of('rtt') };
}

async function echoSpawn(sizes: Sizes, progress: (m: string) => void): Promise<ColdSummary> {
  progress(`echo spawn ceiling: ${sizes.coldSpawns} sequential spawns per round (plus 1 warm-up)`);
  const first = requestLine(1);
  const check = (msg: unknown): string | undefined => {
    const m = msg as { id?: unknown; result?: { value?: unknown } } | null;
    return m?.id === 1 && m.result?.value === 'v1' ? undefined : 'not the echo of request 1';
  };
  await coldSpawns(echoSpec, first, check, 1, 10_000);
  const results: ColdResult[] = [];
  for (let r = 1; r <= sizes.rounds; r++)
    results.push(await coldSpawns(echoSpec, first, check, sizes.coldSpawns, 10_000));
  return summarizeCold(results);
}

export function printCeilings(c: Ceilings): void {
  const w = [52, 11, 7, 10, 10, 9];
  console.log('');
  console.log(
    row(['Ceilings (measured once, the base of every ratio)', 'rate', '', 'p50', 'p99', 'x raw'], w),
  );
  const load = (label: string, x: LoadResult, unit: string, raw?: number) =>
    console.log(
      row(
        [
          label,
          int(x.reqPerSec),
          unit,
          latency(x.p50Ms),
          latency(x.p99Ms),
          raw === undefined ? '' : ratio(raw),
        ],
        w,
      ),
    );
  if (c.stdioEcho) {
    const e = c.stdioEcho;
    load(`  raw stdio echo, ${e.deep.inFlight} in flight`, e.deep, 'req/s');
    load(`  raw stdio echo, ${TARGET_IN_FLIGHT} in flight`, e.at64, 'req/s');
    load('  raw stdio echo, 1 in flight (RTT)', e.rtt, 'req/s');
  }
  if (c.worker) {
    const { raw, piscina } = c.worker;
    load('  raw worker_threads Worker postMessage, 1 in flight', raw.rtt, 'msg/s');
    load(`  raw worker_threads Worker postMessage, ${WORKER_IN_FLIGHT} in fl.`, raw.pipelined, 'msg/s');
    load(
      '  piscina run() (the broker pool), 1 in flight',
      piscina.rtt,
      'task/s',
      piscina.rtt.p50Ms / raw.rtt.p50Ms,
    );
    load(
      `  piscina run() (the broker pool), ${WORKER_IN_FLIGHT} in flight`,
      piscina.pipelined,
      'task/s',
      piscina.pipelined.reqPerSec / raw.pipelined.reqPerSec,
    );
    console.log(
      '  (one worker thread each; x raw: piscina p50 / raw p50 at 1 in flight, rate / raw rate pipelined)',
    );
  }
  if (c.sign) {
    console.log(
      row([`  raw crypto.sign ECDSA P-256, ${c.sign.threads} threads`, int(c.sign.signPerSec), 'sign/s'], w),
    );
  }
  if (c.echoSpawn) {
    const s = c.echoSpawn;
    const n = s.rounds[0]?.spawns ?? 0;
    console.log(
      row(
        [
          `  raw echo spawn -> first answer (median of ${n}, p90)`,
          rate(s.handshakesPerSec),
          'spawn/s',
          `${ms(s.medianReadyMs)} ms`,
          `${ms(s.p90ReadyMs)} ms`,
        ],
        w,
      ),
    );
  }
  if (c.idleWs) {
    const m = c.idleWs;
    console.log(
      row(
        [
          `  bare ws server, ${int(m.connections)} idle connections`,
          kb(m.bytesEach),
          'each',
          `(${m.larger === 'rss' ? 'RSS' : 'heap'}: the larger)`,
        ],
        w,
      ),
    );
  }
}
