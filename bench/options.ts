/**
 * The bench's command line: which parts run, at which sizes, under which deadline.
 *
 * Quick (the default) keeps a whole run near two minutes on the 2-core VM, so it can be run
 * after every change to the broker; `--full` runs every part longer and with more rounds (about
 * 10 minutes) for figures steady enough to quote.
 * Parsed with node:util `parseArgs` (STYLE.md: a well-kept parser before a hand-written one).
 */
import { parseArgs } from 'node:util';

/** The parts, in the order they run, and what each measures. */
export const PARTS = {
  stdio: 'mock/experimentalMethod at 1000, 64 and 1 in flight; account/read (logged in) at 64',
  handshakes: 'cold start (spawn -> first initialize answer); warm in-process handshakes',
  'ws-handshakes':
    '1,000 WebSocket clients through initialize -> authenticated -> attested (gatehouse loadtest)',
  idle: 'broker memory per idle connection, WebSocket and in-process (forced GC)',
  relay: 'Responses relay turns vs direct to the backend; refresh and attestation cost',
  'device-keys': 'device/key/sign over stdio per provider (SoftHSM2; swtpm when installed)',
  'remote-control': 'account/read through the remote-control relay vs the same over stdio',
} as const;

export type Part = keyof typeof PARTS;

/** The in-flight depth of the account/read target (issue 7): the stdio echo ceiling is measured there too. */
export const TARGET_IN_FLIGHT = 64;
/** The WebSocket handshake target's clients, after a warm-up batch, arriving at a steady pace. */
export const WS_HANDSHAKE = { clients: 1000, warmUpClients: 100, arrivalsPerSec: 100 } as const;
/** The idle-connection target's count; a run that opens fewer says so next to the figure. */
export const IDLE_TARGET_CONNECTIONS = 10_000;

export interface Sizes {
  /** Rounds of each pipelined or sequential measurement; the figures are medians. */
  rounds: number;
  /** Pipelined mock requests per round at `deepInFlight`. */
  requests: number;
  /** The stdio part's deep depth (the stack spike's 1000). */
  deepInFlight: number;
  /** Requests per round at TARGET_IN_FLIGHT (echo, mock and account/read). */
  requestsAt64: number;
  /** Sequential requests per round (1 in flight). */
  rttRequests: number;
  /** Cold spawns per round, of the raw echo and of gatehouse. */
  coldSpawns: number;
  /** In-process handshakes per round, one at a time and all at once. */
  warmHandshakes: number;
  /** Idle connections held open at once, per kind. */
  idleConnections: number;
  /** Messages per round through the raw worker (pipelined), and round trips (1 in flight). */
  workerMessages: number;
  workerRtt: number;
  /** piscina tasks per round (pipelined); piscina is about a tenth of the raw rate. */
  piscinaTasks: number;
  /** Seconds of raw crypto.sign on every core, and of SoftHSM2 called directly. */
  signSeconds: number;
  /** device/key/sign requests per provider; swtpm signs about 1,000/s, so it gets its own count. */
  signRequests: number;
  tpmSignRequests: number;
  relayThreads: number;
  relayTurns: number;
  refreshSamples: number;
  remoteRttRequests: number;
  remoteRequests: number;
  remoteClients: number;
  remoteInFlightPerClient: number;
}

const QUICK: Sizes = {
  rounds: 3,
  requests: 100_000,
  deepInFlight: 1000,
  requestsAt64: 50_000,
  rttRequests: 5000,
  coldSpawns: 10,
  warmHandshakes: 2000,
  // The target's full count even in quick mode: it takes about 15 s, and at 2,000 connections
  // the RSS per connection came out a third higher (fixed growth spread over fewer connections).
  idleConnections: IDLE_TARGET_CONNECTIONS,
  workerMessages: 100_000,
  workerRtt: 5000,
  piscinaTasks: 20_000,
  signSeconds: 2,
  signRequests: 20_000,
  tpmSignRequests: 3000,
  relayThreads: 16,
  relayTurns: 25,
  refreshSamples: 30,
  remoteRttRequests: 1000,
  remoteRequests: 10_000,
  remoteClients: 8,
  remoteInFlightPerClient: 8,
};

const FULL: Sizes = {
  ...QUICK,
  rounds: 5,
  requests: 300_000,
  requestsAt64: 200_000,
  rttRequests: 20_000,
  coldSpawns: 30,
  warmHandshakes: 10_000,
  workerMessages: 500_000,
  workerRtt: 20_000,
  piscinaTasks: 100_000,
  signSeconds: 5,
  signRequests: 100_000,
  tpmSignRequests: 10_000,
  relayTurns: 100,
  refreshSamples: 100,
  remoteRttRequests: 5000,
  remoteRequests: 50_000,
};

export interface BenchOptions {
  mode: 'quick' | 'full';
  parts: Part[];
  sizes: Sizes;
  /** A directory for `--cpu-prof` of the gatehouse children, or undefined. */
  cpuProfDir: string | undefined;
  /** The whole run is killed past this, children included, so nothing can hang CI. */
  timeoutMs: number;
}

export class UsageError extends Error {}

export const HELP = `Usage: npm run bench -- [--full] [--only <part>[,<part>...]] [--cpu-prof <dir>] [--timeout <s>]

Runs Gatehouse's benchmarks in one process. The ceilings the selected parts need (raw stdio
echo, raw worker round trip, raw crypto.sign on every core, a bare ws server's idle memory, the
raw echo's spawn) are measured first, printed once, and every figure after is printed as a
ratio to its ceiling. A Targets table (issue 7) closes the run: figure | ceiling | ratio |
target | verdict. Targets are reported, never asserted. Figures go to stdout, progress to
stderr, JSON to bench-results/*.json (targets.json holds the Targets table).

Options:
  --full            long runs: 5 rounds instead of 3 and 3-5x the requests, spawns and
                    turns (about 10 minutes; quick takes about 2). Both hold the idle
                    target's 10,000 connections.
  --only <parts>    run these parts only (comma-separated or repeated); BENCH_ONLY=<parts>
                    in the environment does the same
  --cpu-prof <dir>  profile the gatehouse children with --cpu-prof into <dir>
                    (summarize with node dist/bench/cpu-profile-summary.js <file>)
  --timeout <s>     watchdog: kill the run after this many seconds (quick 300, full 1800)
  -h, --help        this text

Parts:
${Object.entries(PARTS)
  .map(([name, what]) => `  ${name.padEnd(16)}${what}`)
  .join('\n')}
`;

/** Parses argv (without node and the script) and BENCH_ONLY; throws UsageError on bad input. */
export function parseBenchOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        full: { type: 'boolean', default: false },
        only: { type: 'string', multiple: true },
        'cpu-prof': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  if (values.help) return 'help';
  const full = values.full;
  const only = values.only ?? (env.BENCH_ONLY ? [env.BENCH_ONLY] : undefined);
  const parts = only === undefined ? (Object.keys(PARTS) as Part[]) : parseParts(only);
  let timeoutMs = (full ? 1800 : 300) * 1000;
  if (values.timeout !== undefined) {
    const s = Number(values.timeout);
    if (!Number.isFinite(s) || s <= 0)
      throw new UsageError(`--timeout must be a number of seconds, got '${values.timeout}'`);
    timeoutMs = s * 1000;
  }
  return {
    mode: full ? 'full' : 'quick',
    parts,
    sizes: full ? FULL : QUICK,
    cpuProfDir: values['cpu-prof'],
    timeoutMs,
  };
}

function parseParts(lists: string[]): Part[] {
  const names = lists
    .flatMap((l) => l.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const unknown = names.filter((n) => !(n in PARTS));
  if (unknown.length > 0 || names.length === 0) {
    throw new UsageError(
      `--only (or BENCH_ONLY): unknown part ${unknown.map((u) => `'${u}'`).join(', ') || '(none given)'}; parts: ${Object.keys(PARTS).join(', ')}`,
    );
  }
  // Run order is the table's, whatever order they were named in.
  return (Object.keys(PARTS) as Part[]).filter((p) => names.includes(p));
}
