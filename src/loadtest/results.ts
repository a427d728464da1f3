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
}
