/**
 * `npm run bench`: Gatehouse over stdio against the raw stdio ceiling, in one run.
 *
 *  1. Raw JSON-lines echo child (hand-split parser, one write per chunk): pipelined req/s with
 *     p50/p99, and the 1-in-flight round trip.
 *  2. `gatehouse app-server` over stdio after one initialize, same requests (mock/experimentalMethod).
 *  3. Handshakes: cold (spawn -> initialized -> exit, against spawning the raw echo) and warm
 *     (in-process connections to an embedded broker).
 *  4. The ratios between them.
 *  5. The Responses relay against the local backend (`relay.ts`): turn throughput against turns
 *     sent straight to the backend, the cost of a 401 -> refresh -> retry round trip, and the
 *     latency attestation adds to an outbound request.
 *
 * Every answer is correlated by id and checked; any mismatch fails the run with exit code 1.
 * Medians of BENCH_ROUNDS rounds after a warm-up; figures also go to bench-results/stdio.json.
 *
 * Environment: BENCH_N (pipelined requests, 100000), BENCH_ROUNDS (3), BENCH_IN_FLIGHT (1000),
 * BENCH_RTT_N (5000), BENCH_COLD (spawns per round, 10), BENCH_WARM (in-process handshakes, 2000),
 * BENCH_CPU_PROF (a directory: profile the gatehouse children of the request rounds and of the relay with --cpu-prof),
 * BENCH_RELAY_THREADS (16), BENCH_RELAY_TURNS (turns per thread, 25), BENCH_REFRESH (samples of
 * the refresh and of the attestation comparisons, 30),
 *  6. `device/key/sign` over stdio per provider (SoftHSM2; swtpm when installed) against raw
 *     `crypto.sign` on every core (`device-keys.ts`).
 *
 *  7. `account/read` from remote clients through the local backend's remote-control relay against
 *     the same request over stdio to the same gatehouse process (`remote-control.ts`).
 *
 * BENCH_ONLY (`stdio`, `relay`, `device-keys` or `remote-control`: run one part), BENCH_SIGN_N
 * (sign requests per provider, 20000), BENCH_SIGN_IN_FLIGHT (256), BENCH_RC_RTT_N (sequential
 * account/read per round and path, 1000), BENCH_RC_N (account/read per round and path at
 * BENCH_RC_CLIENTS x BENCH_RC_IN_FLIGHT in flight, 10000), BENCH_RC_CLIENTS (remote clients, 8),
 * BENCH_RC_IN_FLIGHT (per remote client, 8).
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBroker } from '../src/index.js';
import { silentLogger } from '../src/util/logger.js';
import { LineChild, killAll, withTimeout, type SpawnSpec } from './line-child.js';
import { requestLine, runLoad, type LoadResult, type LoadTarget } from './stdio-load.js';
import {
  checkInitialize,
  coldSpawns,
  INITIALIZE,
  warmHandshakes,
  type ColdResult,
  type WarmResult,
} from './handshake.js';
import { median } from './stats.js';
import { runRelayBench, type RelayReport } from './relay.js';
import { runDeviceKeyBench } from './device-keys.js';
import { runRemoteControlBench, type ReadSummary } from './remote-control.js';

function envInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

const N = envInt('BENCH_N', 100_000);
const ROUNDS = envInt('BENCH_ROUNDS', 3);
const IN_FLIGHT = envInt('BENCH_IN_FLIGHT', 1000);
const RTT_N = envInt('BENCH_RTT_N', 5000);
const COLD = envInt('BENCH_COLD', 10);
const WARM = envInt('BENCH_WARM', 2000);
const CPU_PROF = process.env.BENCH_CPU_PROF;
const RELAY_THREADS = envInt('BENCH_RELAY_THREADS', 16);
const RELAY_TURNS = envInt('BENCH_RELAY_TURNS', 25);
const REFRESH_SAMPLES = envInt('BENCH_REFRESH', 30);
const SIGN_N = envInt('BENCH_SIGN_N', 20_000);
const SIGN_IN_FLIGHT = envInt('BENCH_SIGN_IN_FLIGHT', 256);
const RC_RTT_N = envInt('BENCH_RC_RTT_N', 1000);
const RC_N = envInt('BENCH_RC_N', 10_000);
const RC_CLIENTS = envInt('BENCH_RC_CLIENTS', 8);
const RC_IN_FLIGHT = envInt('BENCH_RC_IN_FLIGHT', 8);
const PARTS = ['stdio', 'relay', 'device-keys', 'remote-control'];
const ONLY = process.env.BENCH_ONLY;
if (ONLY !== undefined && !PARTS.includes(ONLY)) {
  throw new Error(`BENCH_ONLY must be one of ${PARTS.join(', ')}, got '${ONLY}'`);
}
const runs = (part: string) => ONLY === undefined || ONLY === part;
const WARMUP_N = Math.min(N, 20_000);
const WARMUP_RTT = Math.min(RTT_N, 1000);
const WARMUP_HANDSHAKES = Math.min(WARM, 200);
/** The whole bench is killed past this (children included) so nothing can hang CI. */
const WATCHDOG_MS = envInt('BENCH_TIMEOUT_MS', 300_000);
const loadAtStart = loadavg()[0] ?? 0;

const echoScript = fileURLToPath(new URL('./stdio-echo.js', import.meta.url));
const gatehouseCli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const resultsDir = resolve('bench-results');

/** Pipelined runs get a deadline that scales with their size (floor 20 k req/s, at least 30 s). */
function loadTimeoutMs(requests: number): number {
  return Math.max(30_000, requests / 20);
}

interface LoadRound {
  echo: LoadResult;
  gatehouse: LoadResult;
}

async function main(): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  const homes = [home, realpathSync(home)];
  try {
    header();
    if (runs('stdio')) await bench(home, homes);
    if (runs('relay')) await relayBench();
    if (runs('device-keys')) await deviceKeyBench();
    if (runs('remote-control')) await remoteControlBench();
    return 0;
  } finally {
    killAll();
    rmSync(home, { recursive: true, force: true });
  }
}

async function bench(home: string, homes: string[]): Promise<void> {
  const echoSpec: SpawnSpec = { label: 'raw echo', args: [echoScript] };
  const gatehouseEnv = { ...process.env, CODEX_HOME: home, GATEHOUSE_LOG: 'warn' };
  const gatehouseSpec: SpawnSpec = {
    label: 'gatehouse',
    args: [gatehouseCli, 'app-server'],
    env: gatehouseEnv,
  };
  const loadSpec: SpawnSpec = { ...gatehouseSpec, args: [...profArgs(), gatehouseCli, 'app-server'] };

  // 1 + 2: request round trips, raw and gatehouse interleaved in each round.
  progress('request round trips: starting the raw echo and gatehouse children');
  const echo: LoadTarget = { child: new LineChild(echoSpec), resultKey: 'value', nextId: 1 };
  const gatehouse: LoadTarget = { child: new LineChild(loadSpec), resultKey: 'echoed', nextId: 2 };
  await initializeOverStdio(gatehouse.child, homes);

  progress(`warm-up: ${WARMUP_N} pipelined + ${WARMUP_RTT} sequential requests each`);
  for (const t of [echo, gatehouse]) {
    await runLoad(t, WARMUP_N, IN_FLIGHT, loadTimeoutMs(WARMUP_N));
    await runLoad(t, WARMUP_RTT, 1, loadTimeoutMs(WARMUP_RTT));
  }
  const pipelined: LoadRound[] = [];
  const rtt: LoadRound[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    progress(`round ${r}/${ROUNDS}: ${N} requests at ${IN_FLIGHT} in flight, then ${RTT_N} at 1 in flight`);
    pipelined.push({
      echo: await runLoad(echo, N, IN_FLIGHT, loadTimeoutMs(N)),
      gatehouse: await runLoad(gatehouse, N, IN_FLIGHT, loadTimeoutMs(N)),
    });
    rtt.push({
      echo: await runLoad(echo, RTT_N, 1, loadTimeoutMs(RTT_N)),
      gatehouse: await runLoad(gatehouse, RTT_N, 1, loadTimeoutMs(RTT_N)),
    });
  }
  await echo.child.close();
  await gatehouse.child.close();

  // 3a: cold handshakes.
  progress(`cold handshakes: ${COLD} sequential spawns per round (plus 1 warm-up) of each`);
  const echoFirst = requestLine(1);
  const checkEcho = (msg: unknown): string | undefined =>
    (msg as { id?: unknown; result?: { value?: unknown } } | null)?.result?.value === 'v1' &&
    (msg as { id?: unknown }).id === 1
      ? undefined
      : 'not the echo of request 1';
  const initLine = JSON.stringify(INITIALIZE);
  const checkInit = (msg: unknown): string | undefined => checkInitialize(msg, homes);
  await coldSpawns(echoSpec, echoFirst, checkEcho, 1, 10_000);
  await coldSpawns(gatehouseSpec, initLine, checkInit, 1, 15_000);
  const cold: { echo: ColdResult; gatehouse: ColdResult }[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    progress(`cold round ${r}/${ROUNDS}`);
    cold.push({
      echo: await coldSpawns(echoSpec, echoFirst, checkEcho, COLD, 10_000),
      gatehouse: await coldSpawns(gatehouseSpec, initLine, checkInit, COLD, 15_000),
    });
  }

  // 3b: warm handshakes over the in-process library API.
  progress(`warm handshakes: ${WARM} in-process connections per round, one at a time and all at once`);
  const broker = createBroker({ codexHome: home, log: silentLogger() });
  const warm: { sequential: WarmResult; concurrent: WarmResult }[] = [];
  try {
    await warmHandshakes(broker, homes, WARMUP_HANDSHAKES, 1, 30_000);
    await warmHandshakes(broker, homes, WARMUP_HANDSHAKES, WARMUP_HANDSHAKES, 30_000);
    for (let r = 1; r <= ROUNDS; r++) {
      warm.push({
        sequential: await warmHandshakes(broker, homes, WARM, 1, 60_000),
        concurrent: await warmHandshakes(broker, homes, WARM, WARM, 60_000),
      });
    }
  } finally {
    await withTimeout(broker.close(), 15_000, () => new Error('broker.close() did not settle within 15 s'));
  }

  const report = summarize(pipelined, rtt, cold, warm);
  printTable(report);
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'stdio.json');
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`\nFigures written to ${file}`);
  if (CPU_PROF) console.log(`CPU profile of the gatehouse request child in ${resolve(CPU_PROF)}`);
}

async function relayBench(): Promise<void> {
  const report = await runRelayBench({
    threads: RELAY_THREADS,
    turnsPerThread: RELAY_TURNS,
    refreshSamples: REFRESH_SAMPLES,
    rounds: ROUNDS,
    nodeArgs: profArgs(),
    progress,
  });
  const w = [44, 11, 9, 9, 28];
  console.log('');
  console.log(
    row(
      [
        `Relay turns (${RELAY_THREADS} threads x ${RELAY_TURNS})`,
        'turns/s',
        'p50 ms',
        'p99 ms',
        'turns/s per round',
      ],
      w,
    ),
  );
  const turnRow = (label: string, x: RelayReport['direct']) =>
    console.log(
      row(
        [
          label,
          int(x.turnsPerSec),
          ms(x.p50Ms),
          ms(x.p99Ms),
          x.rounds.map((o) => int(o.turnsPerSec)).join(' / '),
        ],
        w,
      ),
    );
  turnRow('  direct to the local backend (WebSocket)', report.direct);
  turnRow('  gatehouse app-server relay', report.gatehouse);
  const { refresh } = report;
  console.log('');
  console.log(row([`Refresh round trip (median of ${REFRESH_SAMPLES})`, 'ms'], [44, 11]));
  console.log(row(['  turn on a new thread', ms(refresh.plainTurnMs)], [44, 11]));
  console.log(
    row(['  same, after a revocation (401, refresh, retry)', ms(refresh.refreshedTurnMs)], [44, 11]),
  );
  console.log(row(['  cost of the refresh round trip', ms(refresh.costMs)], [44, 11]));
  const { attestation } = report;
  console.log('');
  console.log(row([`Attestation per outbound request (median of ${REFRESH_SAMPLES})`, 'ms'], [44, 11]));
  console.log(row(['  turn on a new thread, client not capable', ms(attestation.plainTurnMs)], [44, 11]));
  console.log(row(['  same, capable client answering at once', ms(attestation.attestedTurnMs)], [44, 11]));
  console.log(row(['  added latency of attestation', ms(attestation.costMs)], [44, 11]));
  console.log('');
  console.log(
    row(
      ['  gatehouse turns/s / direct turns/s', ratio(report.ratios.gatehouseTurnsPerSecOverDirect)],
      [44, 11],
    ),
  );
  if (report.retries.count > 0) {
    console.log(
      `  (gatehouse announced ${report.retries.count} retries or fallbacks; first: ${report.retries.first})`,
    );
  }
  console.log(row(['  refresh cost / plain turn', ratio(report.ratios.refreshCostOverPlainTurn)], [44, 11]));
  console.log(
    row(['  attested turn / plain turn', ratio(report.ratios.attestedTurnOverPlainTurn)], [44, 11]),
  );
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'relay.json');
  writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), ...report }, null, 2) + '\n');
  console.log(`\nFigures written to ${file}`);
}

async function deviceKeyBench(): Promise<void> {
  const report = await runDeviceKeyBench({
    requests: SIGN_N,
    inFlight: SIGN_IN_FLIGHT,
    ceilingSeconds: 2,
    nodeArgs: profArgs(),
    progress,
  });
  const w = [44, 11, 9, 9, 11];
  console.log('');
  console.log(
    row(
      [`device/key/sign over stdio (${SIGN_IN_FLIGHT} in flight)`, 'req/s', 'p50 ms', 'p99 ms', 'x ceiling'],
      w,
    ),
  );
  console.log(
    row(
      [
        `  ceiling: raw crypto.sign, ${report.ceiling.threads} threads`,
        int(report.ceiling.signPerSec),
        '',
        '',
        '1.00',
      ],
      w,
    ),
  );
  if (report.softhsmDirect) {
    const direct = report.softhsmDirect.signPerSec;
    console.log(
      row(
        [
          '  SoftHSM2 C_Sign alone, 1 thread, in-process',
          int(direct),
          '',
          '',
          ratio(direct / report.ceiling.signPerSec),
        ],
        w,
      ),
    );
  }
  for (const p of report.providers) {
    console.log(
      row([`  ${p.provider}`, int(p.reqPerSec), ms(p.p50Ms), ms(p.p99Ms), ratio(p.overCeiling)], w),
    );
  }
  for (const s of report.skipped) console.log(`  skipped: ${s}`);
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'device-keys.json');
  writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), ...report }, null, 2) + '\n');
  console.log(`\nFigures written to ${file}`);
}

async function remoteControlBench(): Promise<void> {
  const report = await runRemoteControlBench({
    rttRequests: RC_RTT_N,
    requests: RC_N,
    clients: RC_CLIENTS,
    inFlightPerClient: RC_IN_FLIGHT,
    rounds: ROUNDS,
    nodeArgs: profArgs(),
    progress,
  });
  const inFlight = RC_CLIENTS * RC_IN_FLIGHT;
  const w = [44, 11, 9, 9, 28];
  console.log('');
  console.log(row(['Remote control (account/read)', 'msgs/s', 'p50 ms', 'p99 ms', 'msgs/s per round'], w));
  const loadRow = (label: string, x: ReadSummary) =>
    console.log(
      row(
        [
          label,
          int(x.msgsPerSec),
          ms(x.p50Ms),
          ms(x.p99Ms),
          x.rounds.map((o) => int(o.msgsPerSec)).join(' / '),
        ],
        w,
      ),
    );
  loadRow('  local stdio, 1 in flight (RTT)', report.local.rtt);
  loadRow('  remote via the relay, 1 in flight (RTT)', report.remote.rtt);
  loadRow(`  local stdio, ${inFlight} in flight`, report.local.pipelined);
  loadRow(`  remote, ${RC_CLIENTS} clients x ${RC_IN_FLIGHT} in flight`, report.remote.pipelined);
  const q = [44, 11];
  const { ratios, overheadUs } = report;
  console.log('');
  console.log('Ratios remote / local');
  console.log(row(['  RTT p50', ratio(ratios.rttP50)], q));
  console.log(row(['  RTT p99', ratio(ratios.rttP99)], q));
  console.log(row([`  msgs/s at ${inFlight} in flight`, ratio(ratios.pipelinedMsgsPerSec)], q));
  console.log(row([`  p50 at ${inFlight} in flight`, ratio(ratios.pipelinedP50)], q));
  console.log(row([`  p99 at ${inFlight} in flight`, ratio(ratios.pipelinedP99)], q));
  console.log('');
  console.log(row(['Relay overhead', 'µs'], q));
  console.log(row(['  per round trip (RTT p50 remote - local)', overheadUs.roundTripP50.toFixed(1)], q));
  console.log(
    row([`  per message at ${inFlight} in flight (1/rate)`, overheadUs.perMessageUnderLoad.toFixed(1)], q),
  );
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'remote-control.json');
  writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), ...report }, null, 2) + '\n');
  console.log(`\nFigures written to ${file}`);
}

function profArgs(): string[] {
  return CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${resolve(CPU_PROF)}`] : [];
}

/** The one initialize a stdio connection needs before other requests. */
async function initializeOverStdio(child: LineChild, homes: string[]): Promise<void> {
  const answered = new Promise<void>((resolve, reject) => {
    child.onLine = (line) => {
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        return reject(child.failure(`unparseable initialize answer: ${line.slice(0, 200)}`));
      }
      const problem = checkInitialize(msg, homes);
      if (problem !== undefined) reject(child.failure(`${problem}: ${line.slice(0, 200)}`));
      else resolve();
    };
  });
  child.write(JSON.stringify(INITIALIZE) + '\n');
  await withTimeout(answered, 15_000, () => child.failure('no initialize answer within 15 s'));
}

// ---------------------------------------------------------------------------------------------
// Summary, table and JSON.

function summarize(
  pipelined: LoadRound[],
  rtt: LoadRound[],
  cold: { echo: ColdResult; gatehouse: ColdResult }[],
  warm: { sequential: WarmResult; concurrent: WarmResult }[],
) {
  const load = (rounds: LoadRound[], side: 'echo' | 'gatehouse') => ({
    reqPerSec: median(rounds.map((r) => r[side].reqPerSec)),
    p50Ms: median(rounds.map((r) => r[side].p50Ms)),
    p99Ms: median(rounds.map((r) => r[side].p99Ms)),
    rounds: rounds.map((r) => r[side]),
  });
  const coldOf = (side: 'echo' | 'gatehouse') => ({
    medianReadyMs: median(cold.map((r) => r[side].medianReadyMs)),
    p90ReadyMs: median(cold.map((r) => r[side].p90ReadyMs)),
    handshakesPerSec: 1000 / median(cold.map((r) => r[side].medianReadyMs)),
    cyclesPerSec: median(cold.map((r) => r[side].cyclesPerSec)),
    medianCycleMs: median(cold.map((r) => median(r[side].cycleMs))),
    rounds: cold.map((r) => r[side]),
  });
  const warmOf = (mode: 'sequential' | 'concurrent') => ({
    handshakesPerSec: median(warm.map((r) => r[mode].handshakesPerSec)),
    p50Ms: median(warm.map((r) => r[mode].p50Ms)),
    p99Ms: median(warm.map((r) => r[mode].p99Ms)),
    rounds: warm.map((r) => r[mode]),
  });
  const requests = {
    pipelined: { echo: load(pipelined, 'echo'), gatehouse: load(pipelined, 'gatehouse') },
    rtt: { echo: load(rtt, 'echo'), gatehouse: load(rtt, 'gatehouse') },
  };
  const handshakes = {
    cold: { echo: coldOf('echo'), gatehouse: coldOf('gatehouse') },
    warm: { sequential: warmOf('sequential'), concurrent: warmOf('concurrent') },
  };
  return {
    when: new Date().toISOString(),
    environment: {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? 'unknown',
      /** 1-minute load average at the start and the end: other work on the box makes figures noisy. */
      loadAverage: { start: loadAtStart, end: loadavg()[0] ?? 0 },
    },
    parameters: {
      requests: N,
      inFlight: IN_FLIGHT,
      rttRequests: RTT_N,
      rounds: ROUNDS,
      coldSpawnsPerRound: COLD,
      warmHandshakesPerRound: WARM,
      warmup: { requests: WARMUP_N, rttRequests: WARMUP_RTT, handshakes: WARMUP_HANDSHAKES, coldSpawns: 1 },
      requestLineBytes: requestLine(1_000_000).length + 1,
      cpuProfile: CPU_PROF !== undefined,
    },
    requests,
    handshakes,
    ratios: {
      gatehouseReqPerSecOverRawEcho:
        requests.pipelined.gatehouse.reqPerSec / requests.pipelined.echo.reqPerSec,
      gatehouseRttP50OverRawRttP50: requests.rtt.gatehouse.p50Ms / requests.rtt.echo.p50Ms,
      coldHandshakeOverRawEchoSpawn:
        handshakes.cold.gatehouse.medianReadyMs / handshakes.cold.echo.medianReadyMs,
    },
  };
}

type Report = ReturnType<typeof summarize>;

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n < 1 ? n.toFixed(3) : n < 100 ? n.toFixed(2) : n.toFixed(1));
const ratio = (n: number): string => `${n.toFixed(3)}x`;
const rate = (n: number): string => (n < 100 ? n.toFixed(1) : int(n));

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
}

function header(): void {
  console.log(
    `Gatehouse bench: node ${process.version}, ${availableParallelism()} CPUs, N=${N}, ` +
      `${IN_FLIGHT} in flight, RTT N=${RTT_N}, ${ROUNDS} rounds after a warm-up (medians), ` +
      `load average ${loadAtStart.toFixed(2)}`,
  );
}

function progress(message: string): void {
  process.stderr.write(`  .. ${message}\n`);
}

function printTable(r: Report): void {
  const { pipelined, rtt } = r.requests;
  const w = [44, 11, 9, 9, 28];
  console.log('');
  console.log(row(['Requests (mock/experimentalMethod)', 'req/s', 'p50 ms', 'p99 ms', 'req/s per round'], w));
  const loadRow = (label: string, x: Report['requests']['rtt']['echo']) =>
    console.log(
      row(
        [
          label,
          int(x.reqPerSec),
          ms(x.p50Ms),
          ms(x.p99Ms),
          x.rounds.map((o) => int(o.reqPerSec)).join(' / '),
        ],
        w,
      ),
    );
  loadRow(`  raw stdio echo, ${IN_FLIGHT} in flight`, pipelined.echo);
  loadRow(`  gatehouse app-server, ${IN_FLIGHT} in flight`, pipelined.gatehouse);
  loadRow('  raw stdio echo, 1 in flight (RTT)', rtt.echo);
  loadRow('  gatehouse app-server, 1 in flight (RTT)', rtt.gatehouse);

  const { cold, warm } = r.handshakes;
  const h = [44, 11, 9, 13, 22];
  console.log('');
  console.log(row(['Handshakes', 'median ms', 'p90 ms', 'handshakes/s', 'full cycle (ms, /s)'], h));
  const coldRow = (label: string, x: Report['handshakes']['cold']['echo']) =>
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
  coldRow(`  cold: spawn raw echo -> 1 echo (x${COLD})`, cold.echo);
  coldRow(`  cold: spawn gatehouse -> initialized (x${COLD})`, cold.gatehouse);
  console.log(row(['', 'p50 ms', 'p99 ms', 'handshakes/s', ''], h));
  const warmRow = (label: string, x: Report['handshakes']['warm']['sequential']) =>
    console.log(row([label, ms(x.p50Ms), ms(x.p99Ms), int(x.handshakesPerSec), ''], h));
  warmRow(`  warm: in-process, 1 at a time (x${WARM})`, warm.sequential);
  warmRow(`  warm: in-process, ${WARM} at once`, warm.concurrent);
  console.log(
    '  (cold handshakes/s = 1000 / median spawn-to-answer; full cycle = spawn -> answer -> exit 0,',
  );
  console.log('   its rate is sequential cycles per second of wall time)');

  console.log('');
  console.log('Ratios');
  const q = [44, 11];
  console.log(row(['  gatehouse req/s / raw echo req/s', ratio(r.ratios.gatehouseReqPerSecOverRawEcho)], q));
  console.log(
    row(['  gatehouse RTT p50 / raw echo RTT p50', ratio(r.ratios.gatehouseRttP50OverRawRttP50)], q),
  );
  console.log(
    row(['  cold handshake / raw echo spawn (median)', ratio(r.ratios.coldHandshakeOverRawEchoSpawn)], q),
  );
  console.log(
    `\nLoad average: ${loadAtStart.toFixed(2)} at the start, ${r.environment.loadAverage.end.toFixed(2)} at the end`,
  );
}

// ---------------------------------------------------------------------------------------------

const watchdog = setTimeout(() => {
  process.stderr.write(`bench: watchdog: still running after ${WATCHDOG_MS} ms, killing children\n`);
  killAll();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(1);
  });
}

main().then(
  (code) => {
    clearTimeout(watchdog);
    process.exit(code);
  },
  (e: unknown) => {
    killAll();
    process.stderr.write(`bench FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
