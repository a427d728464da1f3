/**
 * The WebSocket handshake figure of issue 7: 1,000 clients arriving at a steady pace, each going
 * initialize -> authenticated -> attested against one `gatehouse app-server --listen`, measured
 * by `gatehouse loadtest`'s own runner (`--requests 0`: handshakes only), p99 per step. Steady
 * state: a first batch of warm-up clients (`--warm-up`) pays for module loading, JIT and worker
 * start-up and is left out, as is the echo's first batch.
 *
 * Ceiling: the same clients, at the same pace, each making three JSON round trips on a
 * WebSocket to a raw echo child (`ws-echo.ts`): what a step costs when the server does nothing.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocketLink } from '../src/loadtest/client-link.js';
import { parseLoadtestArgs, type LoadtestOptions } from '../src/loadtest/options.js';
import { Recorder } from '../src/loadtest/recorder.js';
import type { LatencySummary, LoadtestResults } from '../src/loadtest/results.js';
import { RpcClient } from '../src/loadtest/rpc-client.js';
import { runLoadtest } from '../src/loadtest/run-loadtest.js';
import { ms, ratio, row } from './report.js';

export const HANDSHAKE_STEPS = ['initialize', 'authenticated', 'attested'] as const;

export interface WsHandshakeReport {
  clients: number;
  warmUpClients: number;
  arrivalsPerSec: number;
  steps: Record<(typeof HANDSHAKE_STEPS)[number], LatencySummary & { completed: number; errors: number }>;
  /** The raw echo's round trip at the same pace: the ceiling of one step. */
  ceiling: LatencySummary & { completed: number };
  /** The slowest step's p99. */
  worstStepP99Ms: number;
  brokerPeakRssBytes: number | null;
}

export async function runWsHandshakeBench(options: {
  clients: number;
  warmUpClients: number;
  arrivalsPerSec: number;
  progress(message: string): void;
}): Promise<WsHandshakeReport> {
  const { clients, warmUpClients, arrivalsPerSec } = options;
  const total = clients + warmUpClients;
  const rampUpMs = Math.round((total * 1000) / arrivalsPerSec);
  options.progress(`ws handshakes: raw echo ceiling, ${total} clients over ${rampUpMs} ms`);
  const ceiling = await rawEchoRoundTrips(total, warmUpClients, rampUpMs);
  options.progress(
    `ws handshakes: ${total} gatehouse loadtest clients over ${rampUpMs} ms (handshakes only)`,
  );
  const run = parseLoadtestArgs([
    ...[
      '-n',
      String(total),
      '--warm-up',
      String(warmUpClients),
      '--ramp-up',
      `${rampUpMs}ms`,
      '--requests',
      '0',
    ],
    ...['--no-progress', '--json', '-', '--html', '-'],
  ]) as LoadtestOptions;
  const results = await runLoadtest(run);
  if (results.timedOut || results.totals.errors > 0) {
    throw new Error(
      `ws handshakes: the run had ${results.totals.errors} errors: ${JSON.stringify(results.errors)}`,
    );
  }
  const steps = Object.fromEntries(
    HANDSHAKE_STEPS.map((name) => [name, stepOf(results, name)]),
  ) as WsHandshakeReport['steps'];
  const rss = results.broker.samples.map((s) => s.rssBytes);
  return {
    clients,
    warmUpClients,
    arrivalsPerSec,
    steps,
    ceiling,
    worstStepP99Ms: Math.max(...HANDSHAKE_STEPS.map((s) => steps[s].p99)),
    brokerPeakRssBytes: rss.length ? Math.max(...rss) : null,
  };
}

function stepOf(
  results: LoadtestResults,
  name: string,
): LatencySummary & { completed: number; errors: number } {
  const op = results.operations.find((o) => o.name === name);
  if (!op) throw new Error(`ws handshakes: no '${name}' step in the results`);
  return { ...op.latencyMs, completed: op.completed, errors: op.errors };
}

async function rawEchoRoundTrips(
  clients: number,
  warmUpClients: number,
  rampUpMs: number,
): Promise<LatencySummary & { completed: number }> {
  const script = fileURLToPath(new URL('./ws-echo.js', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.setEncoding('utf8').once('data', (line: string) => resolve(line.trim()));
      child.once('exit', (code) => reject(new Error(`ws-echo exited (${code}) before listening`)));
    });
    const recorder = new Recorder();
    const links: WebSocketLink[] = [];
    const start = performance.now();
    const arrivals: Promise<void>[] = [];
    for (let i = 0; i < clients; i++) {
      const wait = start + (i * rampUpMs) / clients - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      arrivals.push(
        (async () => {
          const link = await WebSocketLink.open(url);
          links.push(link);
          const rpc = new RpcClient(link, () => undefined, 30_000);
          for (let step = 0; step < HANDSHAKE_STEPS.length; step++) {
            const sent = performance.now();
            const outcome = await rpc.request('echo', { client: i, step });
            if (!outcome.ok) throw new Error(`ws-echo: ${outcome.error.message}`);
            if (i >= warmUpClients) recorder.record('round trip', performance.now() - sent, true);
          }
        })(),
      );
    }
    await Promise.all(arrivals);
    for (const link of links) link.close();
    const op = recorder.summary(1, performance.now() - start).operations[0]!;
    return { ...op.latencyMs, completed: op.completed };
  } finally {
    child.stdin.end();
  }
}

export function printWsHandshakeReport(r: WsHandshakeReport): void {
  const w = [44, 11, 9, 9, 9, 11];
  console.log('');
  console.log(
    row(
      [
        `WebSocket handshakes (${r.clients} clients, ${r.arrivalsPerSec}/s)`,
        'completed',
        'p50 ms',
        'p99 ms',
        'max ms',
        'p99 x ceil',
      ],
      w,
    ),
  );
  console.log(
    row(
      [
        '  ceiling: raw ws echo, one round trip',
        String(r.ceiling.completed),
        ms(r.ceiling.p50),
        ms(r.ceiling.p99),
        ms(r.ceiling.max),
        ratio(1),
      ],
      w,
    ),
  );
  for (const name of HANDSHAKE_STEPS) {
    const s = r.steps[name];
    console.log(
      row(
        [`  ${name}`, String(s.completed), ms(s.p50), ms(s.p99), ms(s.max), ratio(s.p99 / r.ceiling.p99)],
        w,
      ),
    );
  }
}
