/**
 * The shape of one `gatehouse loadtest` run's results: what the JSON report holds verbatim and
 * what the table and the HTML report are drawn from. Times are milliseconds from the start of
 * the run (`performance.now()` based); sizes are bytes.
 */

export type TransportKind = 'stdio' | 'websocket' | 'in-process' | 'remote';
export type LoopMode = 'closed' | 'open';

/** The options the run was started with, after defaults were applied. */
export interface RunConfig {
  transport: TransportKind;
  clients: number;
  rampUpMs: number;
  /** Work phase length; null when the run is bounded by `requests` instead. */
  durationMs: number | null;
  /** Total operations of the work phase; null when bounded by `durationMs`. */
  requests: number | null;
  mode: LoopMode;
  /** Open loop: operations started per second across all clients; null in closed loop. */
  ratePerSec: number | null;
  /** Closed loop: operations each client keeps outstanding. */
  inFlight: number;
  /** Operation name -> relative weight of the work phase. */
  mix: Record<string, number>;
  /** Fault name -> fraction of clients (or of turns, for backend faults), 0..1. */
  faults: Record<string, number>;
  /** Hard stop for the whole run. */
  timeoutMs: number;
  /** `--session-ops`: each client ends its session after 1 to this many operations and comes back. */
  sessionOps?: number;
  /** `--soak`: the leak check's settings; absent for an ordinary run. */
  soak?: SoakConfig;
}

export interface SoakConfig {
  /** Diagnostics (after a full GC in the broker) are taken this often during the work phase. */
  sampleEveryMs: number;
  /** Memory growth is measured from this point of the work phase (duration / 5, at least 30 s) to its end. */
  fromMs: number;
  /** How long counts may take to come back to the baseline once the clients have left. */
  settleMs: number;
  /** Growth of heap or RSS at or above this fraction fails the run (0.05: 5%). */
  maxGrowth: number;
}

/** One diagnostics sample of a soak, taken after a full GC in the broker. */
export interface SoakSample {
  /** Milliseconds from the start of the work phase. */
  tMs: number;
  heapUsedBytes: number;
  rssBytes: number;
  connections: number;
  actors: number;
  listeners: number;
  handles: number;
  workerThreads: number;
}

/** Samples taken in a row with the load at rest (see soak.ts). */
export interface Checkpoint {
  /** Milliseconds from the start of the work phase. */
  tMs: number;
  connections: number;
  /** Threads of the broker's crypto pool, each of which adds to RSS. */
  workerThreads: number;
  heapUsedBytes: number[];
  rssBytes: number[];
}

/** Memory at the start and end of the measured window (see soak.ts for how each is estimated). */
export interface Growth {
  fromBytes: number;
  toBytes: number;
  /** (to - from) / from, as a fraction (0.012: 1.2%). */
  growth: number;
}

/** A count that did not come back to its baseline once the clients left. */
export interface CountChange {
  name: string;
  baseline: number;
  after: number;
}

/** The leak check of a `--soak` run. */
export interface SoakResults {
  samples: SoakSample[];
  /** Samples (each end of the window) whose median is taken. */
  medianOf: number;
  /** The two ends of the growth window. */
  checkpoints: { from: Checkpoint | null; to: Checkpoint | null };
  /** Work operations started, and those of them neither answered nor failed. */
  operationsStarted: number;
  operationsLost: number;
  /** Heap used: medians of the two checkpoints' samples. */
  heap: Growth | null;
  /** RSS: a least-squares line through the window's samples, from its start to its end. */
  rss: Growth | null;
  /** RSS at the checkpoints, for reference (not checked: single readings swing, see soak.ts). */
  rssCheckpoints: Growth | null;
  /**
   * Counts (connections, actors, queued and pending work, listeners by emitter and event, handles
   * by type) when only the login owner was connected, after a warm-up client had come and gone;
   * then again after every simulated client had left.
   */
  baseline: Record<string, number>;
  after: Record<string, number>;
  /** Counts above their baseline after the clients left; empty when everything came back. */
  notReturned: CountChange[];
  /** How long the counts took to come back (or the settle time, when they did not). */
  settledInMs: number;
  /** What was still above the baseline at the last poll before everything came back. */
  lastToSettle: CountChange[];
  /** Memory at the baseline and after the clients left, for reference (not checked). */
  baselineMemory: { heapUsedBytes: number; rssBytes: number };
  afterMemory: { heapUsedBytes: number; rssBytes: number };
  /** Why the soak failed; empty when it passed. */
  failures: string[];
}

/** Latency distribution of one operation (or handshake step), from an HdrHistogram. */
export interface LatencySummary {
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** One bar of a latency histogram: `count` samples in (previous upToMs, upToMs]. */
export interface HistogramBucket {
  upToMs: number;
  count: number;
}

export interface OperationStats {
  /** `initialize`, `login`, `attest` (handshake steps), or a work operation (`account/read`, `turn`, `sign`). */
  name: string;
  /** True for the handshake steps. */
  step: boolean;
  completed: number;
  errors: number;
  /** Completed per second of the phase the operation ran in. */
  throughputPerSec: number;
  latencyMs: LatencySummary;
  histogram: HistogramBucket[];
}

/** Errors grouped by operation and JSON-RPC code (or a local string code such as `timeout`, `closed`). */
export interface ErrorCount {
  operation: string;
  code: number | string;
  /** The first message seen for this group, secrets redacted. */
  message: string;
  count: number;
}

/** Server requests the simulated clients answered or (playing `silent`) left unanswered. */
export interface ServerRequestCounts {
  answered: number;
  ignored: number;
  byMethod: Record<string, { answered: number; ignored: number }>;
}

/** One second of the run. */
export interface TimelinePoint {
  tMs: number;
  completed: number;
  errors: number;
  /** Latency of what completed in this second, all operations together; null when nothing did. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Simulated clients connected at the end of the second. */
  activeClients: number;
}

/** The broker's process (or processes, summed, for stdio children) sampled over time. */
export interface BrokerSample {
  tMs: number;
  /** CPU time used since the previous sample over wall time, in percent of one core. */
  cpuPercent: number;
  rssBytes: number;
  /** Only known for an in-process broker. */
  heapUsedBytes: number | null;
}

export interface LoadtestResults {
  tool: 'gatehouse loadtest';
  version: string;
  startedAt: string;
  /** Wall time of the whole run, ramp-up and drain included. */
  elapsedMs: number;
  /** Wall time of the work phase, the divisor of the throughputs. */
  workPhaseMs: number;
  config: RunConfig;
  environment: {
    node: string;
    platform: string;
    cpus: number;
    cpuModel: string;
    loadAverage: { start: number; end: number };
  };
  totals: {
    clientsStarted: number;
    /** Clients whose session ended as scripted (faulty ones included). */
    clientsFinished: number;
    disconnects: number;
    /** Sessions ended and replaced under `--session-ops` (not counting the disconnect fault's). */
    sessionsRecycled?: number;
    completed: number;
    errors: number;
    throughputPerSec: number;
    /** Server requests (`attestation/generate`, `account/chatgptAuthTokens/refresh`) answered and left unanswered. */
    serverRequests: ServerRequestCounts;
  };
  operations: OperationStats[];
  errors: ErrorCount[];
  timeline: TimelinePoint[];
  broker: { pids: number[]; samples: BrokerSample[] };
  /** True when the run ended by `timeoutMs` rather than by finishing its work. */
  timedOut: boolean;
  /** Only for `--soak` runs. */
  soak?: SoakResults;
}
