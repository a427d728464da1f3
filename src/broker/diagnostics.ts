/**
 * A broker's diagnostics: memory and the counts a leak shows in (connections, actors, queued and
 * pending work, event listeners, the event loop's active handles). Taken on demand, after a full
 * garbage collection when Node runs with --expose-gc, so memory figures are live data rather
 * than garbage not yet collected. `gatehouse app-server` prints one as a line on stderr on
 * SIGUSR2; `gatehouse loadtest --soak` reads those lines.
 *
 * Counts are grouped by name (listeners by emitter and event, handles by type) so a leak points
 * at its source: `broker.connectionClosed` growing, or `Timeout` never going back down.
 */
import type { ActorSystemStats } from '../runtime/actor-system.js';

/** What the broker knows about itself. */
export interface BrokerState {
  connections: number;
  /** Client requests accepted and not yet answered. */
  inFlight: number;
  /** Server-to-client requests (attestation, token refresh) waiting for a client's answer. */
  pendingServerRequests: number;
  actors: ActorSystemStats;
  /** Threads of the crypto pool (0 until its first task). */
  workerThreads: number;
  /** The pool's size limit: threads above 1 come under load and retire after being idle a while. */
  workerThreadsMax: number;
}

export interface BrokerDiagnostics extends BrokerState {
  /** ISO time when taken. */
  at: string;
  uptimeMs: number;
  /** A full GC ran first (the process runs with --expose-gc). */
  gcForced: boolean;
  memory: {
    heapUsedBytes: number;
    heapTotalBytes: number;
    externalBytes: number;
    arrayBuffersBytes: number;
    /** The whole process: worker threads included. */
    rssBytes: number;
  };
  /** `emitter.event` -> listeners, for every long-lived emitter the broker knows; zeros left out. */
  listeners: Record<string, number>;
  /** The event loop's active resources by type (`process.getActiveResourcesInfo()`): Timeout, TCPSocketWrap... */
  handles: Record<string, number>;
}

/** The part of an event emitter diagnostics reads (Node's EventEmitter and eventemitter3 alike). */
export interface ListenerSource {
  eventNames(): (string | symbol)[];
  listenerCount(event: string | symbol): number;
}

/** The broker's state and its long-lived emitters; the rest is read from the process. */
export interface BrokerCounts extends BrokerState {
  emitters: Record<string, ListenerSource>;
}

/**
 * Takes diagnostics, forcing a GC first when `global.gc` exists (`gc: false` skips it). The GC runs
 * twice with a macrotask between: the first pass queues finalizers and weak-reference cleanup, the
 * second collects what they released.
 */
export async function takeDiagnostics(
  counts: () => BrokerCounts,
  options: { gc?: boolean } = {},
): Promise<BrokerDiagnostics> {
  const gc = options.gc === false ? undefined : (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  const { emitters, ...state } = counts();
  const memory = process.memoryUsage();
  return {
    at: new Date().toISOString(),
    uptimeMs: Math.round(process.uptime() * 1000),
    gcForced: gc !== undefined,
    memory: {
      heapUsedBytes: memory.heapUsed,
      heapTotalBytes: memory.heapTotal,
      externalBytes: memory.external,
      arrayBuffersBytes: memory.arrayBuffers,
      rssBytes: memory.rss,
    },
    ...state,
    listeners: listenerCounts(emitters),
    handles: countBy(process.getActiveResourcesInfo()),
  };
}

function listenerCounts(emitters: Record<string, ListenerSource>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, emitter] of Object.entries(emitters)) {
    for (const event of emitter.eventNames()) {
      const n = emitter.listenerCount(event);
      if (n > 0) out[`${name}.${String(event)}`] = n;
    }
  }
  return out;
}

function countBy(names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of names) out[name] = (out[name] ?? 0) + 1;
  return out;
}

/** The `msg` of a diagnostics line, which readers look for. */
export const DIAGNOSTICS_MSG = 'broker diagnostics';

/**
 * One stderr line, shaped like the structured log lines around it. It is written whatever
 * GATEHOUSE_LOG says: it answers an explicit request (a signal), it is not chatter.
 */
export function diagnosticsLine(d: BrokerDiagnostics, seq: number): string {
  return `${JSON.stringify({ level: 30, time: d.at, msg: DIAGNOSTICS_MSG, seq, diagnostics: d })}\n`;
}

/** The diagnostics a stderr line carries, or undefined for any other line. */
export function parseDiagnosticsLine(
  line: string,
): { seq: number; diagnostics: BrokerDiagnostics } | undefined {
  if (!line.includes(DIAGNOSTICS_MSG)) return undefined;
  try {
    const parsed = JSON.parse(line) as { msg?: unknown; seq?: unknown; diagnostics?: BrokerDiagnostics };
    if (parsed.msg !== DIAGNOSTICS_MSG || typeof parsed.seq !== 'number' || !parsed.diagnostics)
      return undefined;
    return { seq: parsed.seq, diagnostics: parsed.diagnostics };
  } catch {
    return undefined;
  }
}
