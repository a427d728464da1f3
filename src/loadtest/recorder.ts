/**
 * What `gatehouse loadtest` measures while it runs: every completed operation's latency and every
 * failure, per operation and per second of the run, turned into the `operations`, `errors` and
 * `timeline` of the results at the end.
 *
 * Latencies go into HdrHistograms (hdr-histogram-js, its pure-JS flavour) as integer microseconds,
 * 3 significant digits, up to an hour: fixed memory per operation whatever the request count, and
 * percentiles within 0.1%. Recording runs for every request of every simulated client, so it
 * allocates nothing of its own: one map lookup, two histogram increments, a few counters. The
 * engine calls `tick()` once per second (and once at the end) to close a second of the timeline.
 */
import { build, JsHistogram } from 'hdr-histogram-js';
import type {
  HistogramBucket,
  LatencySummary,
  LoadtestResults,
  OperationStats,
  TimelinePoint,
} from './results.js';

/** Latencies past an hour are recorded as an hour (the run's timeout ends far earlier). */
const HIGHEST_MICROS = 3_600_000_000;

/** Bars of an operation's latency histogram, log-spaced between its fastest and slowest sample. */
const HISTOGRAM_BUCKETS = 40;

/** Error messages are kept for the report, not for debugging: long ones are cut. */
const MAX_MESSAGE_CHARS = 300;

interface ErrorGroup {
  message: string;
  count: number;
}

interface OperationState {
  readonly name: string;
  readonly step: boolean;
  readonly latencies: JsHistogram;
  completed: number;
  errors: number;
  /** By JSON-RPC code (or local string code); a Map so a repeated error allocates nothing. */
  readonly errorGroups: Map<number | string, ErrorGroup>;
}

function newHistogram(): JsHistogram {
  const histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_MICROS,
    numberOfSignificantValueDigits: 3,
    // The default, said out loud: the WebAssembly flavour would need an async init and an explicit destroy().
    useWebAssembly: false,
    autoResize: false,
  });
  // build() only returns something else when WebAssembly is asked for.
  if (!(histogram instanceof JsHistogram)) throw new Error('hdr-histogram-js did not build a JS histogram');
  return histogram;
}

function toMicros(latencyMs: number): number {
  const micros = Math.round(latencyMs * 1000);
  // NaN fails both comparisons and lands on 0 with the negatives.
  if (!(micros > 0)) return 0;
  return micros > HIGHEST_MICROS ? HIGHEST_MICROS : micros;
}

function toMs(micros: number): number {
  return micros / 1000;
}

/**
 * Messages may quote a server's answer; bearer tokens, JWTs and API keys found in one are replaced
 * before it is kept. The engine knows no more secrets than these shapes, and the report is shared.
 */
const SECRET_SHAPES: readonly [RegExp, string][] = [
  [/\b(Bearer)\s+[^\s"',;]+/gi, '$1 <redacted>'],
  [/\beyJ[\w-]*\.[\w-]+\.[\w-]*/g, '<redacted>'],
  [/\bsk-[\w-]{8,}/g, '<redacted>'],
];

export function redactMessage(message: string): string {
  let text = message;
  for (const [shape, replacement] of SECRET_SHAPES) text = text.replace(shape, replacement);
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…` : text;
}

/**
 * Percentiles are the top of hdr's equivalence range for the sample found there (within 0.1% of
 * it); `maxValue` is the largest sample exactly. Capping one by the other keeps p99.9 <= max.
 */
function latencySummary(histogram: JsHistogram): LatencySummary {
  if (histogram.totalCount === 0) return { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  const max = histogram.maxValue;
  const at = (percentile: number): number => toMs(Math.min(histogram.getValueAtPercentile(percentile), max));
  return {
    min: at(0),
    mean: toMs(Math.round(histogram.mean)),
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p999: at(99.9),
    max: toMs(max),
  };
}

/**
 * The recorded values regrouped into about 40 log-spaced bars between the fastest and the slowest
 * sample. Each of hdr's sub-buckets is placed by the top of its range (capped, like the
 * percentiles, by the exact maximum), so the last bar ends at `max`.
 */
function logBuckets(histogram: JsHistogram): HistogramBucket[] {
  const values: number[] = [];
  const counts: number[] = [];
  const iterator = histogram.recordedValuesIterator;
  iterator.reset();
  while (iterator.hasNext()) {
    const step = iterator.next();
    values.push(Math.min(step.valueIteratedTo, histogram.maxValue));
    counts.push(step.countAddedInThisIterationStep);
  }
  if (values.length === 0) return [];
  const lowest = Math.max(1, values[0]!);
  const highest = values[values.length - 1]!;
  const edges: number[] = [];
  if (highest <= lowest) {
    edges.push(Math.max(highest, lowest));
  } else {
    const ratio = highest / lowest;
    for (let i = 1; i <= HISTOGRAM_BUCKETS; i++) {
      // Whole microseconds: narrower bars than that would split what hdr cannot tell apart anyway.
      const edge = i === HISTOGRAM_BUCKETS ? highest : Math.ceil(lowest * ratio ** (i / HISTOGRAM_BUCKETS));
      if (edge > (edges[edges.length - 1] ?? 0)) edges.push(edge);
    }
  }
  const buckets = edges.map((edge) => ({ upToMs: toMs(edge), count: 0 }));
  let bar = 0;
  for (let i = 0; i < values.length; i++) {
    while (bar < edges.length - 1 && values[i]! > edges[bar]!) bar++;
    buckets[bar]!.count += counts[i]!;
  }
  return buckets;
}

function perSecond(count: number, phaseMs: number): number {
  return phaseMs > 0 ? Math.round((count / phaseMs) * 1000 * 100) / 100 : 0;
}

export class Recorder {
  /** clock() at construction: the run's time origin, in the clock's milliseconds. */
  readonly startMs: number;
  private readonly clock: () => number;
  private readonly operations = new Map<string, OperationState>();
  private readonly timeline: TimelinePoint[] = [];
  private completed = 0;
  private errors = 0;
  /** The second being recorded, closed by tick(). */
  private readonly second = newHistogram();
  private secondCompleted = 0;
  private secondErrors = 0;
  private lastSecond: TimelinePoint | undefined;

  /** `clock` returns milliseconds; tests pass their own to move time without waiting. */
  constructor(clock: () => number = () => performance.now()) {
    this.clock = clock;
    this.startMs = clock();
  }

  /** A success of `operation` that completed now, `latencyMs` after it was sent. */
  record(operation: string, latencyMs: number, step = false): void {
    const state = this.operation(operation, step);
    const micros = toMicros(latencyMs);
    state.latencies.recordValue(micros);
    state.completed++;
    this.second.recordValue(micros);
    this.secondCompleted++;
    this.completed++;
  }

  /** A failure of `operation`; errors are grouped by (operation, code), each keeping its first message. */
  fail(operation: string, code: number | string, message: string, step = false): void {
    const state = this.operation(operation, step);
    state.errors++;
    const group = state.errorGroups.get(code);
    if (group === undefined) state.errorGroups.set(code, { message: redactMessage(message), count: 1 });
    else group.count++;
    this.secondErrors++;
    this.errors++;
  }

  /** Closes the current second of the timeline; its point is stamped with the time of this call. */
  tick(activeClients: number): void {
    const hasLatencies = this.secondCompleted > 0;
    const point: TimelinePoint = {
      tMs: Math.round(this.clock() - this.startMs),
      completed: this.secondCompleted,
      errors: this.secondErrors,
      p50Ms: hasLatencies ? toMs(this.second.getValueAtPercentile(50)) : null,
      p99Ms: hasLatencies ? toMs(this.second.getValueAtPercentile(99)) : null,
      activeClients,
    };
    this.timeline.push(point);
    this.lastSecond = point;
    this.second.reset();
    this.secondCompleted = 0;
    this.secondErrors = 0;
  }

  /** For the progress bar: totals so far, and the rate and p99 of the last closed second. */
  live(): { completed: number; errors: number; perSec: number; p99Ms: number | null } {
    return {
      completed: this.completed,
      errors: this.errors,
      perSec: this.lastSecond?.completed ?? 0,
      p99Ms: this.lastSecond?.p99Ms ?? null,
    };
  }

  /**
   * The results' per-operation part. Throughputs divide by the work phase for work operations and
   * by the whole run for handshake steps (which happen mostly during ramp-up). Steps come first in
   * the order they were first seen (initialize, login, attest), then work operations by name.
   */
  summary(
    workPhaseMs: number,
    elapsedMs: number,
  ): Pick<LoadtestResults, 'operations' | 'errors' | 'timeline'> {
    const all = [...this.operations.values()];
    const ordered = [
      ...all.filter((state) => state.step),
      ...all.filter((state) => !state.step).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    ];
    const operations: OperationStats[] = ordered.map((state) => ({
      name: state.name,
      step: state.step,
      completed: state.completed,
      errors: state.errors,
      throughputPerSec: perSecond(state.completed, state.step ? elapsedMs : workPhaseMs),
      latencyMs: latencySummary(state.latencies),
      histogram: logBuckets(state.latencies),
    }));
    const errors = ordered.flatMap((state) =>
      [...state.errorGroups].map(([code, group]) => ({
        operation: state.name,
        code,
        message: group.message,
        count: group.count,
      })),
    );
    return { operations, errors, timeline: this.timeline.map((point) => ({ ...point })) };
  }

  /** The operation's state; its first use decides whether it is a handshake step. */
  private operation(name: string, step: boolean): OperationState {
    let state = this.operations.get(name);
    if (state === undefined) {
      state = { name, step, latencies: newHistogram(), completed: 0, errors: 0, errorGroups: new Map() };
      this.operations.set(name, state);
    }
    return state;
  }
}
