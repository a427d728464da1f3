/**
 * `gatehouse loadtest` options: parsing, defaults and the help text. Every option is checked
 * here, so a typo stops the run before anything starts, with the option's name in the message.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { LoopMode, RunConfig, SoakConfig, TransportKind } from './results.js';
import { WORK_OPERATIONS } from './session.js';
import { MINIMUM_SOAK_DURATION_MS, soakConfig } from './soak.js';

export const FAULTS = ['silent', 'disconnect', 'backend-401'] as const;
const TRANSPORTS: TransportKind[] = ['websocket', 'stdio', 'in-process', 'remote'];
/** One app-server process per stdio client: past this the machine, not the broker, is measured. */
export const MAX_STDIO_CLIENTS = 256;
/** What `--soak` runs when not told otherwise: the 500 clients for 10 minutes, with faults. */
const SOAK_DEFAULTS = {
  clients: '500',
  duration: '10m',
  'ramp-up': '10s',
  think: '1s',
  'session-ops': '20',
  faults: 'silent=2%,disconnect=2%,backend-401=1%',
};

export interface LoadtestOptions extends RunConfig {
  /** `-c key=value` for every broker. */
  config: string[];
  /** Node.js flags for every app-server child. */
  nodeArgs: string[];
  thinkMs: number;
  requestTimeoutMs: number;
  maxErrorRate: number;
  seed: number;
  /** Clients whose handshake steps are not recorded. */
  warmUpClients: number;
  progress: boolean;
  /** Report paths; null when that report is not wanted. */
  jsonPath: string | null;
  htmlPath: string | null;
}

export const LOADTEST_USAGE = `Usage: gatehouse loadtest [options]

Runs simulated clients against Gatehouse and the local backend (started on loopback for the run),
then prints a results table on stdout and writes a JSON and a self-contained HTML report.

Each client plays a host's session: initialize (attestation-capable), authenticated (it logs in
with host-owned ChatGPT tokens, or confirms the login another client made on the same broker),
attested (its first turn makes the broker ask attestation/generate, answered at once). Then the
work phase runs operations from --mix until --duration or --requests is reached; refresh
requests are answered with fresh tokens. Progress is shown on stderr.

Clients and brokers:
  -n, --clients N           simulated clients (default 100)
  -t, --transport KIND      websocket: one app-server child with --listen, clients on WebSockets (default)
                            stdio: one app-server child per client, over its stdin/stdout (at most ${MAX_STDIO_CLIENTS})
                            in-process: a broker embedded in this process, in-process connections
                            remote: one app-server child with remote control enabled; clients connect
                            through the local backend's relay, as remote (phone) clients
  -c, --config key=value    passed to every app-server as -c key=value (repeatable)
      --node-arg FLAG       a Node.js flag for every app-server child, e.g. --node-arg=--cpu-prof
                            (repeatable; not for in-process)

Load:
      --ramp-up TIME        spread client arrivals over this time (default 5s; 0: all at once)
  -d, --duration TIME       length of the work phase (default 30s)
      --requests N          end the work phase after N operations instead (0: handshakes only)
      --mode closed|open    closed loop: each client keeps --in-flight operations going (default)
                            open loop: operations start at --rate per second whatever the answers;
                            latency counts from when each was due
      --rate N              open loop: operations started per second across all clients
      --in-flight N         closed loop: operations each client keeps outstanding (default 1)
      --think TIME          closed loop: pause between a client's operations (default 0)
      --mix SPEC            operation weights (default account/read=8,turn=2):
                              account/read  one account/read round trip
                              turn          turn/start until its turn/completed (Responses relay)
                              sign          device/key/sign with a key the client creates on first
                                            use (needs SoftHSM2: apt-get install softhsm2)
      --faults SPEC         fractions, as 0.05 or 5% (default none):
                              silent=F       clients that never answer server requests
                              disconnect=F   clients that drop their connection every 1-20
                                             operations and come back with a new session
                              backend-401=F  turns whose Responses request gets a 401 from the
                                             backend, then a 401 handshake: the broker asks the
                                             owning client to refresh and retries
                            The first client of a shared broker owns its login and plays no fault.
      --session-ops N       each client (but the login owner) ends its session after 1 to N operations
                            (drawn evenly) and comes back with a new one, as host windows close and
                            open; a conversation's state (a thread's history) is bounded by its
                            session, not by the run (default: sessions last the whole run)
      --seed N              seed of the fault and operation choices (default 1)
      --warm-up N           the first N clients warm the broker up (module loading, JIT, worker
                            threads): they run as the others but their handshake steps are left
                            out of the results (default 0)

Soak (leak check):
      --soak                run as a soak: the broker child runs with --expose-gc and reports its
                            diagnostics after a full GC (SIGUSR2; see app-server --help). A baseline
                            is taken after warm-up clients have come and gone; heap used and RSS are
                            sampled during the work phase; then the clients leave. Exit 1 when heap
                            or RSS grew by --max-growth or more from duration/5 of the work phase
                            (minute 2 of 10; at least 30 s) to its end, each end measured at rest
                            (every client connected, nothing in flight; medians of 5 samples), when a
                            count (connections, actors, pending work, listeners, handles and timers
                            by type) stays above its baseline once the clients left (the crypto
                            pool's threads: above the pool's size), or when an operation was lost
                            (started, neither answered nor failed). websocket and remote only.
                            Defaults under --soak: -n ${SOAK_DEFAULTS.clients} -d ${SOAK_DEFAULTS.duration} --ramp-up ${SOAK_DEFAULTS['ramp-up']} --think ${SOAK_DEFAULTS.think} --session-ops ${SOAK_DEFAULTS['session-ops']}
                            --faults ${SOAK_DEFAULTS.faults}
      --soak-sample TIME    time between diagnostics samples (default duration/30, from 2s to 10s)
      --soak-settle TIME    how long counts may take to come back once the clients left (default 30s)
      --max-growth F        heap and RSS growth limit, as 0.05 or 5% (default 5%)

Limits and output:
      --request-timeout TIME  an answer later than this counts as an error (default 30s)
      --timeout TIME        stop the whole run after this (default: ramp-up + duration + 60s)
      --max-error-rate F    exit 1 when more operations than this fraction failed (default 0.001)
  -o, --out DIR             folder for the reports (default loadtest-results)
      --json FILE           JSON report path (default DIR/loadtest-<time>.json; "-" for none)
      --html FILE           HTML report path (default DIR/loadtest-<time>.html; "-" for none)
      --no-progress         no progress bar on stderr
  -h, --help                show this help

TIME is a number with ms, s or m (a bare number is seconds). Exit status: 0 when the run finished
within its limits, 1 when it timed out or failed too often, 2 for bad options.

Example: gatehouse loadtest -n 1000 -d 30s --mix account/read=8,turn=2 --faults silent=2%,disconnect=2%
`;

/** Every option `gatehouse loadtest` takes (the help text documents each; a test checks). */
export const LOADTEST_OPTIONS = {
  clients: { type: 'string', short: 'n' },
  transport: { type: 'string', short: 't' },
  config: { type: 'string', short: 'c', multiple: true, default: [] as string[] },
  'node-arg': { type: 'string', multiple: true, default: [] as string[] },
  'ramp-up': { type: 'string' },
  duration: { type: 'string', short: 'd' },
  requests: { type: 'string' },
  mode: { type: 'string' },
  rate: { type: 'string' },
  'in-flight': { type: 'string' },
  think: { type: 'string' },
  mix: { type: 'string' },
  faults: { type: 'string' },
  seed: { type: 'string' },
  'session-ops': { type: 'string' },
  'warm-up': { type: 'string' },
  'request-timeout': { type: 'string' },
  timeout: { type: 'string' },
  'max-error-rate': { type: 'string' },
  out: { type: 'string', short: 'o' },
  json: { type: 'string' },
  html: { type: 'string' },
  'no-progress': { type: 'boolean', default: false },
  soak: { type: 'boolean', default: false },
  'soak-sample': { type: 'string' },
  'soak-settle': { type: 'string' },
  'max-growth': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies NonNullable<ParseArgsConfig['options']>;

export class LoadtestUsageError extends Error {}

export function parseLoadtestArgs(args: string[], now = new Date()): LoadtestOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: LOADTEST_OPTIONS,
    });
  } catch (e) {
    throw new LoadtestUsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (!v.soak) {
    for (const name of ['soak-sample', 'soak-settle', 'max-growth'] as const) {
      if (v[name] !== undefined) throw new LoadtestUsageError(`--${name} applies to --soak only`);
    }
  } else {
    if (v.requests !== undefined)
      throw new LoadtestUsageError('--soak runs for a --duration, not --requests');
    // The checkpoints hold the closed loop's lanes; an open loop has none to hold.
    if (v.mode === 'open') throw new LoadtestUsageError('--soak runs a closed loop, not --mode open');
    for (const [name, value] of Object.entries(SOAK_DEFAULTS)) {
      (v as Record<string, unknown>)[name] ??= value;
    }
    if (!v['node-arg'].includes('--expose-gc')) v['node-arg'] = [...v['node-arg'], '--expose-gc'];
  }

  const transport = (v.transport ?? 'websocket') as TransportKind;
  if (!TRANSPORTS.includes(transport)) {
    throw new LoadtestUsageError(`--transport must be one of ${TRANSPORTS.join(', ')}, got '${v.transport}'`);
  }
  const clients = integer('--clients', v.clients, 100, 1, 100_000);
  if (transport === 'stdio' && clients > MAX_STDIO_CLIENTS) {
    throw new LoadtestUsageError(
      `--transport stdio runs one app-server process per client: at most ${MAX_STDIO_CLIENTS} clients (use websocket for more)`,
    );
  }
  const mode = (v.mode ?? 'closed') as LoopMode;
  if (mode !== 'closed' && mode !== 'open')
    throw new LoadtestUsageError(`--mode must be closed or open, got '${v.mode}'`);
  if (mode === 'open' && v.rate === undefined) throw new LoadtestUsageError('--mode open needs --rate N');
  if (mode === 'closed' && v.rate !== undefined)
    throw new LoadtestUsageError('--rate applies to --mode open only');
  if (v.duration !== undefined && v.requests !== undefined) {
    throw new LoadtestUsageError('give --duration or --requests, not both');
  }
  const requests = v.requests === undefined ? null : integer('--requests', v.requests, 0, 0, 1e9);
  const durationMs = requests === null ? duration('--duration', v.duration, 30_000) : null;
  const rampUpMs = duration('--ramp-up', v['ramp-up'], 5_000);
  const soak = v.soak ? soakOptions(v, transport, durationMs!) : undefined;
  const out = v.out ?? 'loadtest-results';
  const stamp = now
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d{3}Z$/, 'Z');
  const reportPath = (given: string | undefined, ext: string) =>
    given === '-' ? null : (given ?? `${out}/loadtest-${stamp}.${ext}`);

  return {
    transport,
    clients,
    rampUpMs,
    durationMs,
    requests,
    mode,
    ratePerSec: mode === 'open' ? number('--rate', v.rate, 0.001, 1e7) : null,
    inFlight: integer('--in-flight', v['in-flight'], 1, 1, 1000),
    mix: weights('--mix', v.mix ?? 'account/read=8,turn=2', WORK_OPERATIONS, false),
    faults: weights('--faults', v.faults ?? '', FAULTS, true),
    timeoutMs: duration(
      '--timeout',
      v.timeout,
      // A soak also waits for its baseline, its two checkpoints and the counts after the clients leave.
      rampUpMs + (durationMs ?? 120_000) + 60_000 + (soak ? 2 * soak.settleMs + 90_000 : 0),
    ),
    ...(soak ? { soak } : {}),
    config: v.config,
    nodeArgs: v['node-arg'],
    thinkMs: duration('--think', v.think, 0),
    requestTimeoutMs: duration('--request-timeout', v['request-timeout'], 30_000),
    maxErrorRate: fraction('--max-error-rate', v['max-error-rate'] ?? '0.001'),
    seed: integer('--seed', v.seed, 1, 0, 2 ** 32 - 1),
    ...(v['session-ops'] !== undefined
      ? { sessionOps: integer('--session-ops', v['session-ops'], 0, 1, 1e9) }
      : {}),
    warmUpClients: integer('--warm-up', v['warm-up'], 0, 0, clients - 1),
    progress: !v['no-progress'],
    jsonPath: reportPath(v.json, 'json'),
    htmlPath: reportPath(v.html, 'html'),
  };
}

function soakOptions(
  v: { 'soak-sample'?: string; 'soak-settle'?: string; 'max-growth'?: string },
  transport: TransportKind,
  durationMs: number,
): SoakConfig {
  if (transport !== 'websocket' && transport !== 'remote') {
    throw new LoadtestUsageError(
      `--soak needs one broker child to ask for diagnostics: --transport websocket or remote, not ${transport}`,
    );
  }
  const config = soakConfig(durationMs, {
    ...(v['soak-sample'] !== undefined
      ? { sampleEveryMs: duration('--soak-sample', v['soak-sample'], 0) }
      : {}),
    ...(v['soak-settle'] !== undefined ? { settleMs: duration('--soak-settle', v['soak-settle'], 0) } : {}),
    ...(v['max-growth'] !== undefined ? { maxGrowth: fraction('--max-growth', v['max-growth']) } : {}),
  });
  if (config.sampleEveryMs < 500) throw new LoadtestUsageError('--soak-sample must be at least 500ms');
  if (durationMs < MINIMUM_SOAK_DURATION_MS) {
    throw new LoadtestUsageError(
      `--soak needs --duration of at least ${MINIMUM_SOAK_DURATION_MS / 1000}s: memory growth is measured from 30 s of the work phase on`,
    );
  }
  return config;
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    throw new LoadtestUsageError(`${name} must be a whole number from ${min} to ${max}, got '${raw}'`);
  }
  return n;
}

function number(name: string, raw: string | undefined, min: number, max: number): number {
  const n = Number(raw);
  if (raw === undefined || raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new LoadtestUsageError(`${name} must be a number from ${min} to ${max}, got '${raw}'`);
  }
  return n;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000 };

/** `500ms`, `30s`, `2m`, or a bare number of seconds. */
export function duration(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|)$/.exec(raw.trim());
  if (!m) throw new LoadtestUsageError(`${name} must be a time such as 500ms, 30s or 2m, got '${raw}'`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
}

function fraction(name: string, raw: string): number {
  const percent = raw.endsWith('%');
  const n = Number(percent ? raw.slice(0, -1) : raw) / (percent ? 100 : 1);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new LoadtestUsageError(`${name} must be a fraction from 0 to 1 (or 0% to 100%), got '${raw}'`);
  }
  return n;
}

/** `a=1,b=2`: weights of known names (fractions when `asFractions`). */
function weights(
  name: string,
  raw: string,
  known: readonly string[],
  asFractions: boolean,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of raw.split(',').filter((p) => p.trim() !== '')) {
    const [key, value, ...extra] = part.split('=').map((s) => s.trim());
    if (key === undefined || value === undefined || extra.length > 0 || !known.includes(key)) {
      throw new LoadtestUsageError(
        `${name}: '${part}' is not NAME=VALUE with NAME one of ${known.join(', ')}`,
      );
    }
    out[key] = asFractions ? fraction(`${name} ${key}`, value) : number(`${name} ${key}`, value, 0, 1e6);
  }
  if (!asFractions && !Object.values(out).some((w) => w > 0)) {
    throw new LoadtestUsageError(`${name} needs at least one operation with a weight above 0`);
  }
  return out;
}
