/**
 * `gatehouse loadtest --soak`: the leak check. The broker child runs with --expose-gc and is asked
 * for its diagnostics (SIGUSR2, see src/broker/diagnostics.ts), each taken after a full GC:
 *
 * 1. Baseline: the login owner is connected, and warm-up clients have come and gone, so the pool,
 *    lazily loaded modules and first-use caches exist before anything is counted. The baseline is
 *    the first sample whose counts equal the previous sample's (nothing still closing).
 * 2. Work: samples every `sampleEveryMs`. Heap used and RSS must grow less than `maxGrowth` from
 *    `fromMs` to the end of the work phase. `fromMs` is duration / 5 (minute 2 of the 10-minute
 *    soak) but no earlier than 30 s: under full load RSS grew about 6% over the first 25 s (the
 *    young generation, TLS buffers and malloc arenas sizing up) and then held.
 *    - Heap: both ends are checkpoints taken in the same state: the lanes are held between
 *      operations until nothing is in flight and every client is connected, then `MEDIAN_OF`
 *      samples are taken and the medians compared. Under load the heap swings by 5% and more
 *      with the clients that happen to be reconnecting and the requests in flight; at rest it
 *      repeats to 0.1%, so a leak is what differs.
 *    - RSS: a least-squares line through every sample of the window, its rise over the window.
 *      RSS after GC is what the allocator keeps, which depends on recent peaks: single readings,
 *      at rest too, swung by 4% with no trend over 10 minutes (210.9 then 220.2 MiB at the
 *      checkpoints, 1.2% along the fitted line). A leak is a trend; the line measures the trend.
 * 3. The clients leave (all but the login owner, as at the baseline). Every count (connections,
 *    actors, queued and pending work, listeners by emitter and event, handles by type) must come
 *    back to at most its baseline within `settleMs`.
 */
import type { BrokerDiagnostics } from '../broker/diagnostics.js';
import type { BrokerTarget } from './broker-target.js';
import { Recorder } from './recorder.js';
import type {
  Checkpoint,
  CountChange,
  Growth,
  OperationStats,
  SoakConfig,
  SoakResults,
  SoakSample,
} from './results.js';
import { SimulatedSession, type SessionContext, type WorkOperation } from './session.js';

/** Each end of the growth window is the median of this many samples. */
export const MEDIAN_OF = 5;
const DIAGNOSTICS_TIMEOUT_MS = 15_000;
const POLL_MS = 1_000;
/** The growth window never starts earlier than this into the work phase (see above). */
const EARLIEST_FROM_MS = 30_000;
/** A checkpoint waits at most this long for the lanes to come to rest. */
const QUIESCE_TIMEOUT_MS = 30_000;

/**
 * Settings for a work phase of `durationMs`. About 30 samples per run, 2 to 10 s apart: each one
 * is a full GC in the broker, which a sample every second would make part of the load.
 */
export function soakConfig(
  durationMs: number,
  given: { sampleEveryMs?: number; settleMs?: number; maxGrowth?: number } = {},
): SoakConfig {
  return {
    sampleEveryMs: given.sampleEveryMs ?? Math.min(10_000, Math.max(2_000, Math.round(durationMs / 30))),
    fromMs: Math.max(EARLIEST_FROM_MS, Math.round(durationMs / 5)),
    settleMs: given.settleMs ?? 30_000,
    maxGrowth: given.maxGrowth ?? 0.05,
  };
}

/** The shortest work phase a soak accepts: 10 s of window after its earliest start. */
export const MINIMUM_SOAK_DURATION_MS = EARLIEST_FROM_MS + 10_000;

/**
 * Holds the closed loop's lanes between operations while a checkpoint is taken. Lanes call
 * `gate()` before each operation and count themselves `busy` while one runs.
 */
export class LoadPause {
  busy = 0;
  private held: Promise<void> | undefined;
  private release: (() => void) | undefined;

  async gate(): Promise<void> {
    while (this.held) await this.held;
  }

  /** Holds the lanes and waits until `idle()` (bounded); false when it never came. */
  async hold(idle: () => boolean): Promise<boolean> {
    this.held ??= new Promise<void>((resolve) => (this.release = resolve));
    const deadline = Date.now() + QUIESCE_TIMEOUT_MS;
    while (!(this.busy === 0 && idle())) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  resume(): void {
    this.release?.();
    this.held = undefined;
  }
}

/** How the monitor brings the load to rest for a checkpoint. */
export interface LoadControl {
  /** Holds the load until nothing is in flight and every client is connected; false on timeout. */
  hold(): Promise<boolean>;
  resume(): void;
}

/** Every count of a diagnostics sample, flat: `actors.connection`, `handles.Timeout`... */
export function countsOf(d: BrokerDiagnostics): Record<string, number> {
  const out: Record<string, number> = {
    connections: d.connections,
    inFlight: d.inFlight,
    pendingServerRequests: d.pendingServerRequests,
    actors: d.actors.actors,
    mailboxEntries: d.actors.mailboxEntries,
    runningMessages: d.actors.running,
    awaitingReplies: d.actors.awaitingReplies,
    pendingAsks: d.actors.pendingAsks,
    workerThreads: d.workerThreads,
  };
  for (const [kind, n] of Object.entries(d.actors.byKind)) out[`actors.${kind}`] = n;
  for (const [name, n] of Object.entries(d.listeners)) out[`listeners.${name}`] = n;
  for (const [type, n] of Object.entries(d.handles)) out[`handles.${type}`] = n;
  return out;
}

/**
 * Counts above their baseline (a count missing on one side is 0 there). `bounds` lets a count go
 * up to a limit instead: the pool's extra threads are started under load and retire only after
 * 30 s idle; within the pool's size they are not a leak, and waiting them out would double a
 * short soak's settle time.
 */
export function countsAbove(
  baseline: Record<string, number>,
  after: Record<string, number>,
  bounds: Record<string, number> = {},
): CountChange[] {
  const names = [...new Set([...Object.keys(baseline), ...Object.keys(after)])].sort();
  return names
    .map((name) => ({ name, baseline: baseline[name] ?? 0, after: after[name] ?? 0 }))
    .filter((c) => c.after > Math.max(c.baseline, bounds[c.name] ?? 0));
}

/** Counts allowed above their baseline, up to these limits (see `countsAbove`). */
function boundsOf(d: BrokerDiagnostics): Record<string, number> {
  return { workerThreads: d.workerThreadsMax };
}

/** Growth between the medians of two checkpoints' values; null when one is missing. */
export function growthOf(from: number[], to: number[]): Growth | null {
  if (from.length === 0 || to.length === 0) return null;
  const fromBytes = median(from);
  const toBytes = median(to);
  return { fromBytes, toBytes, growth: fromBytes > 0 ? (toBytes - fromBytes) / fromBytes : 0 };
}

/**
 * Work operations started but neither answered nor failed as recorded. A failure is recorded under
 * the operation's name, or under the step that failed first (a turn's `thread/start`, a sign's
 * `device/key/create`), whose successes are not operations of their own.
 */
export function lostOperations(started: number, operations: OperationStats[]): number {
  let ended = 0;
  for (const o of operations) {
    if (o.step) continue;
    ended += o.errors;
    if (o.name !== 'thread/start' && o.name !== 'device/key/create') ended += o.completed;
  }
  return started - ended;
}

/**
 * The rise of a least-squares line through `[t, bytes]` points over their time span, relative
 * to the line's start; null with fewer than 3 points.
 */
export function trendOf(points: [number, number][]): Growth | null {
  if (points.length < 3) return null;
  const n = points.length;
  const meanT = points.reduce((a, [t]) => a + t, 0) / n;
  const meanB = points.reduce((a, [, b]) => a + b, 0) / n;
  let covariance = 0;
  let variance = 0;
  for (const [t, b] of points) {
    covariance += (t - meanT) * (b - meanB);
    variance += (t - meanT) ** 2;
  }
  if (variance === 0) return null;
  const slope = covariance / variance;
  const fromBytes = meanB + slope * (points[0]![0] - meanT);
  const toBytes = meanB + slope * (points[n - 1]![0] - meanT);
  return { fromBytes, toBytes, growth: fromBytes > 0 ? (toBytes - fromBytes) / fromBytes : 0 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const total = (counts: Record<string, number>) => Object.values(counts).reduce((n, v) => n + v, 0);

export class SoakMonitor {
  private readonly samples: SoakSample[] = [];
  private baseline: BrokerDiagnostics | undefined;
  private after: BrokerDiagnostics | undefined;
  private settledInMs = 0;
  /** The counts still above the baseline at the last poll before they all came back. */
  private lastToSettle: CountChange[] = [];
  private workStart = 0;
  private sampling: Promise<void> | undefined;
  private readonly checkpoints: { from?: Checkpoint; to?: Checkpoint } = {};
  private stopSampling: (() => void) | undefined;
  private readonly failures: string[] = [];
  private operationsStarted = 0;
  private lost = 0;

  constructor(
    private readonly target: BrokerTarget,
    readonly config: SoakConfig,
    private readonly now: () => number,
  ) {
    if (!target.diagnostics) throw new Error('--soak needs a broker that reports diagnostics');
  }

  /**
   * Warm-up clients come, run each operation of the mix, and leave; then the baseline is taken
   * once the counts hold still. `backend401` makes one warm-up turn meet the 401 fault's path.
   */
  async warmUpAndBaseline(
    ctx: SessionContext,
    operations: WorkOperation[],
    backend401: (() => void) | undefined,
    clients = 5,
  ): Promise<void> {
    const quiet: SessionContext = { ...ctx, recorder: new Recorder() };
    await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        const link = await this.target.connect(-1 - i);
        const session = new SimulatedSession(link, { index: -1 - i, owner: false, silent: false }, quiet);
        try {
          if (!(await session.handshake())) throw new Error('a warm-up client failed its handshake');
          for (const op of operations) {
            if (op === 'turn' && i === 0) backend401?.();
            for (let n = 0; n < 3; n++) await session.run(op, this.now());
          }
        } finally {
          session.close();
          await session.closed;
        }
      }),
    );
    const { diagnostics, waitedMs } = await this.settle(
      (previous, next) =>
        previous !== undefined &&
        countsAbove(countsOf(next), countsOf(previous)).length === 0 &&
        countsAbove(countsOf(previous), countsOf(next)).length === 0,
    );
    if (waitedMs >= this.config.settleMs) {
      this.failures.push(
        `the broker's counts did not hold still within ${this.config.settleMs} ms for a baseline`,
      );
    }
    this.baseline = diagnostics;
  }

  /**
   * Samples in the background from now (the start of the work phase) until `endSampling`, and
   * takes the first checkpoint at `fromMs` through `load`.
   */
  startSampling(load: LoadControl): void {
    this.workStart = this.now();
    let stopped = false;
    let wake: (() => void) | undefined;
    this.stopSampling = () => {
      stopped = true;
      wake?.();
    };
    this.sampling = (async () => {
      for (let next = this.workStart; ;) {
        next += this.config.sampleEveryMs;
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, Math.max(0, next - this.now()));
        });
        clearTimeout(timer);
        if (stopped) return;
        if (!this.checkpoints.from && this.now() - this.workStart >= this.config.fromMs) {
          const rested = await load.hold();
          try {
            this.checkpoints.from = await this.checkpoint(rested);
          } finally {
            load.resume();
          }
          next = this.now();
        } else await this.sample();
      }
    })();
  }

  /**
   * Stops the background sampling and takes the checkpoint at the end of the window; call it once
   * the lanes have finished and every client is connected again.
   */
  async endSampling(rested: boolean): Promise<void> {
    this.stopSampling?.();
    await this.sampling;
    this.checkpoints.to = await this.checkpoint(rested);
  }

  /** Call once the clients have left: waits until every count is back to its baseline (or gives up). */
  async afterClientsLeft(): Promise<void> {
    if (!this.baseline) return;
    const baseline = countsOf(this.baseline);
    const { diagnostics, waitedMs } = await this.settle((_, next) => {
      const above = countsAbove(baseline, countsOf(next), boundsOf(next));
      if (above.length > 0) this.lastToSettle = above;
      return above.length === 0;
    });
    this.after = diagnostics;
    this.settledInMs = waitedMs;
  }

  /** Call once the work phase has ended, with the operations started and the figures recorded. */
  workEnded(started: number, operations: OperationStats[]): void {
    this.operationsStarted = started;
    this.lost = lostOperations(started, operations);
  }

  results(): SoakResults {
    const { from, to } = this.checkpoints;
    const heap = growthOf(from?.heapUsedBytes ?? [], to?.heapUsedBytes ?? []);
    const rss = trendOf(
      this.samples.filter((s) => s.tMs >= this.config.fromMs).map((s) => [s.tMs, s.rssBytes]),
    );
    const baseline = this.baseline ? countsOf(this.baseline) : {};
    const after = this.after ? countsOf(this.after) : {};
    const notReturned = this.after ? countsAbove(baseline, after, boundsOf(this.after)) : [];
    const failures = [...this.failures];
    const limit = `${(this.config.maxGrowth * 100).toFixed(1)}%`;
    for (const [name, g] of [
      ['heap used', heap],
      ['RSS', rss],
    ] as const) {
      if (!g) failures.push(`${name}: the checkpoints to measure growth were not taken`);
      else if (g.growth >= this.config.maxGrowth) {
        failures.push(
          `${name} grew ${(g.growth * 100).toFixed(2)}% from ${this.config.fromMs} ms of the work phase to its end (limit ${limit})`,
        );
      }
    }
    if (!this.baseline) failures.push('no baseline was taken');
    else if (!this.after) failures.push('no diagnostics after the clients left');
    if (from && to && from.connections !== to.connections) {
      failures.push(
        `the checkpoints saw ${from.connections} and ${to.connections} connections: their memory does not compare`,
      );
    }
    if (this.lost !== 0)
      failures.push(`${this.lost} operations were started and neither answered nor failed`);
    if (notReturned.length > 0) {
      const list = notReturned.map((c) => `${c.name} ${c.baseline} -> ${c.after}`).join(', ');
      failures.push(`counts did not come back to the baseline within ${this.config.settleMs} ms: ${list}`);
    }
    const memory = (d: BrokerDiagnostics | undefined) => ({
      heapUsedBytes: d?.memory.heapUsedBytes ?? 0,
      rssBytes: d?.memory.rssBytes ?? 0,
    });
    return {
      samples: this.samples,
      medianOf: MEDIAN_OF,
      checkpoints: { from: from ?? null, to: to ?? null },
      operationsStarted: this.operationsStarted,
      operationsLost: this.lost,
      heap,
      rss,
      rssCheckpoints: growthOf(from?.rssBytes ?? [], to?.rssBytes ?? []),
      baseline,
      after,
      notReturned,
      settledInMs: this.settledInMs,
      lastToSettle: this.lastToSettle,
      baselineMemory: memory(this.baseline),
      afterMemory: memory(this.after),
      failures,
    };
  }

  /** `MEDIAN_OF` samples in a row, with the load at rest (`rested`) or as it is. */
  private async checkpoint(rested: boolean): Promise<Checkpoint> {
    if (!rested)
      this.failures.push(`the load did not come to rest within ${QUIESCE_TIMEOUT_MS} ms for a checkpoint`);
    const point: Checkpoint = {
      tMs: Math.round(this.now() - this.workStart),
      connections: 0,
      workerThreads: 0,
      heapUsedBytes: [],
      rssBytes: [],
    };
    for (let i = 0; i < MEDIAN_OF; i++) {
      const d = await this.sample();
      if (!d) continue;
      point.connections = d.connections;
      point.workerThreads = d.workerThreads;
      point.heapUsedBytes.push(d.memory.heapUsedBytes);
      point.rssBytes.push(d.memory.rssBytes);
    }
    return point;
  }

  private async sample(): Promise<BrokerDiagnostics | undefined> {
    try {
      const d = await this.target.diagnostics!(DIAGNOSTICS_TIMEOUT_MS);
      this.samples.push({
        tMs: Math.round(this.now() - this.workStart),
        heapUsedBytes: d.memory.heapUsedBytes,
        rssBytes: d.memory.rssBytes,
        connections: d.connections,
        actors: d.actors.actors,
        listeners: total(d.listeners),
        handles: total(d.handles),
        workerThreads: d.workerThreads,
      });
      return d;
    } catch (e) {
      this.failures.push(`a diagnostics sample failed: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** Diagnostics every second until `done(previous, next)` holds or `settleMs` has passed. */
  private async settle(
    done: (previous: BrokerDiagnostics | undefined, next: BrokerDiagnostics) => boolean,
  ): Promise<{ diagnostics: BrokerDiagnostics; waitedMs: number }> {
    const start = this.now();
    let previous: BrokerDiagnostics | undefined;
    for (;;) {
      const next = await this.target.diagnostics!(DIAGNOSTICS_TIMEOUT_MS);
      const waitedMs = Math.round(this.now() - start);
      if (done(previous, next) || waitedMs >= this.config.settleMs) return { diagnostics: next, waitedMs };
      previous = next;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

/** The soak's lines of the results table. */
export function soakSummary(soak: SoakResults, config: SoakConfig): string[] {
  const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
  const growth = (name: string, g: Growth | null) =>
    g
      ? `  ${name}: ${mib(g.fromBytes)} -> ${mib(g.toBytes)} (${g.growth >= 0 ? '+' : ''}${(g.growth * 100).toFixed(2)}%, limit ${(config.maxGrowth * 100).toFixed(1)}%)`
      : `  ${name}: not measured`;
  const pick = (counts: Record<string, number>, prefix: string) =>
    Object.entries(counts)
      .filter(([k]) => k.startsWith(prefix))
      .reduce((n, [, v]) => n + v, 0);
  const pair = (label: string, name: string, prefix = false) => {
    const b = prefix ? pick(soak.baseline, name) : (soak.baseline[name] ?? 0);
    const a = prefix ? pick(soak.after, name) : (soak.after[name] ?? 0);
    return `${label} ${b} -> ${a}`;
  };
  const lastToSettle =
    soak.lastToSettle.length > 0
      ? `, last to come back: ${soak.lastToSettle.map((c) => `${c.name} ${c.after}`).join(', ')}`
      : '';
  return [
    `soak: memory after GC from ${((soak.checkpoints.from?.tMs ?? config.fromMs) / 1000).toFixed(0)} s of the work phase to its end (${((soak.checkpoints.to?.tMs ?? 0) / 1000).toFixed(0)} s)`,
    growth(`heap used at rest, medians of ${soak.medianOf}`, soak.heap),
    growth('RSS, line fitted to the samples', soak.rss),
    growth('RSS at rest (not checked)', soak.rssCheckpoints).replace(/, limit [^)]*\)/, ')'),
    `  counts, baseline -> after the clients left (${(soak.settledInMs / 1000).toFixed(0)} s to settle${lastToSettle}): ` +
      [
        pair('connections', 'connections'),
        pair('actors', 'actors'),
        pair('listeners', 'listeners.', true),
        pair('handles', 'handles.', true),
        pair('timers', 'handles.Timeout'),
        pair('pending server requests', 'pendingServerRequests'),
      ].join(', '),
    `  operations: ${soak.operationsStarted} started, ${soak.operationsLost} lost`,
    soak.failures.length === 0 ? '  soak passed' : `  soak FAILED: ${soak.failures.join('; ')}`,
  ];
}
