/**
 * `npm run bench`: every benchmark of the project in one run (`--help` lists the parts and the
 * options; `options.ts`).
 *
 *  1. The ceilings the selected parts need, measured once and printed at the top
 *     (`ceilings.ts`): raw stdio echo, raw worker round trip (plain Worker and piscina), raw
 *     crypto.sign on every core, the raw echo's spawn, a bare ws server's idle memory.
 *  2. The parts, each printing its figures as ratios to those ceilings: `stdio`
 *     (`stdio-requests.ts`), `handshakes` (`handshake.ts`), `idle` (`idle-connections.ts`),
 *     `relay`, `device-keys`, `remote-control`.
 *  3. The Targets table of issue 7 (`targets.ts`): figure | ceiling | ratio | target | verdict.
 *
 * Every answer of every load is correlated and checked; any mismatch fails the run with exit
 * code 1. Figures are medians over rounds after a warm-up. Figures go to stdout, progress to
 * stderr, JSON to bench-results/<part>.json, ceilings.json and targets.json. A watchdog kills the
 * run, children included, past its deadline.
 */
import { resolve } from 'node:path';
import { measureCeilings, printCeilings, type Ceilings } from './ceilings.js';
import { printDeviceKeyReport, runDeviceKeyBench, type DeviceKeyReport } from './device-keys.js';
import { printHandshakeReport, runHandshakeBench, type HandshakeReport } from './handshake.js';
import { printIdleReport, runIdleBench, type IdleReport } from './idle-connections.js';
import { printWsHandshakeReport, runWsHandshakeBench, type WsHandshakeReport } from './loadtest-handshake.js';
import { killAll } from './line-child.js';
import {
  HELP,
  IDLE_TARGET_CONNECTIONS,
  parseBenchOptions,
  TARGET_IN_FLIGHT,
  UsageError,
  WS_HANDSHAKE,
  type BenchOptions,
  type Part,
} from './options.js';
import { printRelayReport, runRelayBench, type RelayReport } from './relay.js';
import {
  printRemoteControlReport,
  runRemoteControlBench,
  type RemoteControlReport,
} from './remote-control.js';
import { environment, int, load, progress, writeResults } from './report.js';
import { printStdioReport, runStdioBench, type StdioReport } from './stdio-requests.js';
import { TargetsTable, type NotMeasured } from './targets.js';

interface Results {
  stdio?: StdioReport;
  handshakes?: HandshakeReport;
  wsHandshakes?: WsHandshakeReport;
  idle?: IdleReport;
  relay?: RelayReport;
  deviceKeys?: DeviceKeyReport;
  remoteControl?: RemoteControlReport;
}

async function main(options: BenchOptions): Promise<void> {
  const { mode, sizes, parts } = options;
  const loadAtStart = load();
  console.log(
    `Gatehouse bench (${mode}): node ${process.version}, ${String(environment().cpus)} CPUs, ` +
      `parts: ${parts.join(', ')}; ${sizes.rounds} rounds after a warm-up (medians); ` +
      `load average ${loadAtStart.toFixed(2)}`,
  );
  const nodeArgs = options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(options.cpuProfDir)}`] : [];

  const ceilings = await measureCeilings(parts, sizes, progress);
  printCeilings(ceilings);
  writeResults('ceilings', mode, { environment: environment(), sizes, ceilings });

  const results: Results = {};
  for (const part of parts) {
    switch (part) {
      case 'stdio':
        results.stdio = await runStdioBench(sizes, nodeArgs, progress);
        printStdioReport(results.stdio, ceilings.stdioEcho);
        writeResults('stdio', mode, results.stdio);
        break;
      case 'handshakes':
        results.handshakes = await runHandshakeBench(sizes, progress);
        printHandshakeReport(results.handshakes, ceilings.echoSpawn);
        writeResults('handshakes', mode, results.handshakes);
        break;
      case 'ws-handshakes':
        results.wsHandshakes = await runWsHandshakeBench({ ...WS_HANDSHAKE, progress });
        printWsHandshakeReport(results.wsHandshakes);
        writeResults('ws-handshakes', mode, results.wsHandshakes);
        break;
      case 'idle':
        results.idle = await runIdleBench(sizes.idleConnections, progress);
        printIdleReport(results.idle, ceilings.idleWs);
        writeResults('idle-connections', mode, { ceiling: ceilings.idleWs, ...results.idle });
        break;
      case 'relay':
        results.relay = await runRelayBench({
          threads: sizes.relayThreads,
          turnsPerThread: sizes.relayTurns,
          refreshSamples: sizes.refreshSamples,
          rounds: sizes.rounds,
          nodeArgs,
          progress,
        });
        printRelayReport(results.relay);
        writeResults('relay', mode, results.relay);
        break;
      case 'device-keys': {
        const { sign, worker, stdioEcho } = ceilings;
        if (!sign || !worker || !stdioEcho) throw new Error('device-keys: its ceilings were not measured');
        results.deviceKeys = await runDeviceKeyBench({
          requests: sizes.signRequests,
          tpmRequests: sizes.tpmSignRequests,
          inFlight: SIGN_IN_FLIGHT,
          rttRequests: Math.min(sizes.rttRequests, 2000),
          ceiling: sign,
          echoRttMs: stdioEcho.rtt.p50Ms,
          workerRttMs: worker.raw.rtt.p50Ms,
          directSeconds: sizes.signSeconds,
          nodeArgs,
          progress,
        });
        printDeviceKeyReport(results.deviceKeys, SIGN_IN_FLIGHT);
        writeResults('device-keys', mode, results.deviceKeys);
        break;
      }
      case 'remote-control':
        results.remoteControl = await runRemoteControlBench({
          rttRequests: sizes.remoteRttRequests,
          requests: sizes.remoteRequests,
          clients: sizes.remoteClients,
          inFlightPerClient: sizes.remoteInFlightPerClient,
          rounds: sizes.rounds,
          nodeArgs,
          progress,
        });
        printRemoteControlReport(results.remoteControl);
        writeResults('remote-control', mode, results.remoteControl);
        break;
    }
  }

  const targets = targetsOf(results, ceilings, options);
  targets.print();
  const loadAtEnd = load();
  writeResults('targets', mode, {
    environment: environment(),
    parts,
    loadAverage: { start: loadAtStart, end: loadAtEnd },
    targets: targets.rows,
  });
  console.log(
    `\nLoad average (1 min): ${loadAtStart.toFixed(2)} at the start, ${loadAtEnd.toFixed(2)} at the end`,
  );
  if (options.cpuProfDir)
    console.log(`CPU profiles of the gatehouse children in ${resolve(options.cpuProfDir)}`);
}

/** device/key/sign requests outstanding, as the stack spike's 256-in-flight WebCrypto figure. */
const SIGN_IN_FLIGHT = 256;

/** Issue 7's targets, one `add` per row, in the issue's order. */
function targetsOf(r: Results, c: Ceilings, options: BenchOptions): TargetsTable {
  const t = new TargetsTable();
  const skipped = (part: Part): NotMeasured => ({ notMeasured: `the ${part} part did not run (--only)` });
  const echo64 = c.stdioEcho && {
    label: `raw stdio echo, ${TARGET_IN_FLIGHT} in flight`,
    value: c.stdioEcho.at64.reqPerSec,
  };
  const accountRead = r.stdio && { figure: r.stdio.accountRead.reqPerSec, ceiling: echo64 };
  t.add(
    {
      id: 'account-read-rate',
      label: `account/read over stdio, ${TARGET_IN_FLIGHT} in flight`,
      unit: 'req/s',
      goal: { kind: 'at-least', value: 100_000 },
    },
    accountRead ?? skipped('stdio'),
  );
  t.add(
    {
      id: 'account-read-share-of-echo',
      label: `account/read / raw stdio echo, ${TARGET_IN_FLIGHT} in flight`,
      unit: 'req/s',
      goal: { kind: 'share-of-ceiling', value: 0.3 },
    },
    accountRead ?? skipped('stdio'),
  );
  t.add(
    {
      id: 'ws-handshake-p99-per-step',
      label: '1,000 WebSocket clients: handshake p99 per step',
      unit: 'ms',
      goal: { kind: 'under', value: 50 },
    },
    r.wsHandshakes
      ? {
          figure: r.wsHandshakes.worstStepP99Ms,
          ceiling: { label: 'raw ws echo round trip p99', value: r.wsHandshakes.ceiling.p99 },
          note:
            `initialize -> authenticated -> attested, ${int(WS_HANDSHAKE.clients)} clients arriving ` +
            `${WS_HANDSHAKE.arrivalsPerSec} per second after ${WS_HANDSHAKE.warmUpClients} warm-up clients; ` +
            `figure = the slowest step's p99`,
        }
      : skipped('ws-handshakes'),
  );
  const held = r.idle?.connections ?? options.sizes.idleConnections;
  const heldNote =
    held === IDLE_TARGET_CONNECTIONS
      ? `${int(held)} connections`
      : `${int(held)} connections, fewer than the target's ${int(IDLE_TARGET_CONNECTIONS)}`;
  const idleNote = (x: IdleReport['webSocket']) =>
    `${heldNote}; figure = the larger of heap-used and RSS delta per connection after forced GC: ` +
    `${x.larger === 'rss' ? 'RSS' : 'heap used'} here`;
  t.add(
    {
      id: 'idle-websocket-bytes-each',
      label: 'idle WebSocket connections: broker memory each',
      unit: 'bytes',
      goal: { kind: 'under', value: 16 * 1024 },
    },
    r.idle
      ? {
          figure: r.idle.webSocket.bytesEach,
          ceiling: c.idleWs && { label: 'bare ws server', value: c.idleWs.bytesEach },
          note: idleNote(r.idle.webSocket),
        }
      : skipped('idle'),
  );
  t.add(
    {
      id: 'idle-in-process-bytes-each',
      label: 'idle in-process connections: broker memory each',
      unit: 'bytes',
      goal: { kind: 'under', value: 16 * 1024 },
    },
    r.idle ? { figure: r.idle.inProcess.bytesEach, note: idleNote(r.idle.inProcess) } : skipped('idle'),
  );
  t.add(
    {
      id: 'cold-start-ms',
      label: 'cold start: spawn -> first initialize answer (median)',
      unit: 'ms',
      goal: { kind: 'under', value: 150 },
    },
    r.handshakes
      ? {
          figure: r.handshakes.cold.medianReadyMs,
          ceiling: c.echoSpawn && { label: 'raw echo spawn', value: c.echoSpawn.medianReadyMs },
        }
      : skipped('handshakes'),
  );
  return t;
}

// ---------------------------------------------------------------------------------------------

function start(): void {
  let options: BenchOptions | 'help';
  try {
    options = parseBenchOptions(process.argv.slice(2), process.env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`bench: ${e.message} (see npm run bench -- --help)\n`);
    process.exit(2);
  }
  if (options === 'help') {
    process.stdout.write(HELP);
    return;
  }
  // The sizes used to come from BENCH_N and friends; say so rather than ignore them silently.
  const stale = Object.keys(process.env).filter((k) => k.startsWith('BENCH_') && k !== 'BENCH_ONLY');
  if (stale.length > 0)
    process.stderr.write(
      `bench: ignoring ${stale.join(', ')}: sizes come from quick or --full (see --help)\n`,
    );

  const timeoutMs = options.timeoutMs;
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: watchdog: still running after ${timeoutMs} ms, killing children\n`);
    killAll();
    process.exit(1);
  }, timeoutMs);
  watchdog.unref();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(1);
    });
  }
  main(options).then(
    () => {
      clearTimeout(watchdog);
      process.exit(0);
    },
    (e: unknown) => {
      killAll();
      process.stderr.write(`bench FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}

start();
