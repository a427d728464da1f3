/**
 * The figures of a loadtest report as text, shared by the stdout table and the HTML report so
 * that both show the same numbers formatted the same way.
 */
import type { LoadtestResults, OperationStats, RunConfig } from '../results.js';

/** Milliseconds to about three significant digits: 0.412, 3.57, 41.2, 1234. */
export function formatMs(ms: number): string {
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return ms.toFixed(0);
}

export function formatRate(perSec: number): string {
  return perSec < 100 ? perSec.toFixed(1) : Math.round(perSec).toString();
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib < 1 ? `${(bytes / 1024).toFixed(0)} KiB` : `${mib.toFixed(1)} MiB`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s} s` : `${s.toFixed(1)} s`;
}

function formatShares(shares: Record<string, number>, asPercent: boolean): string {
  const entries = Object.entries(shares);
  if (entries.length === 0) return 'none';
  return entries
    .map(([name, value]) => `${name} ${asPercent ? `${+(value * 100).toFixed(2)}%` : value}`)
    .join(', ');
}

/** The run's options in one line: transport, clients, ramp-up, length, loop, mix, faults, timeout. */
export function describeConfig(config: RunConfig): string {
  const length =
    config.durationMs !== null
      ? `for ${formatDuration(config.durationMs)}`
      : `${formatCount(config.requests ?? 0)} requests`;
  const loop =
    config.mode === 'open'
      ? `open loop at ${formatCount(config.ratePerSec ?? 0)}/s`
      : `closed loop, ${config.inFlight} in flight per client`;
  return [
    `${config.transport}`,
    `${formatCount(config.clients)} clients`,
    `ramp-up ${formatDuration(config.rampUpMs)}`,
    length,
    loop,
    `mix ${formatShares(config.mix, false)}`,
    `faults ${formatShares(config.faults, true)}`,
    `timeout ${formatDuration(config.timeoutMs)}`,
  ].join(' · ');
}

export function describeRun(r: LoadtestResults): string {
  return `${r.tool} ${r.version} · started ${r.startedAt} · ${formatDuration(r.elapsedMs)} in all, work phase ${formatDuration(r.workPhaseMs)}`;
}

export function describeEnvironment(r: LoadtestResults): string {
  const env = r.environment;
  return `node ${env.node} on ${env.platform}, ${env.cpus} × ${env.cpuModel}, load average ${env.loadAverage.start.toFixed(2)} → ${env.loadAverage.end.toFixed(2)}`;
}

export function timedOutNotice(r: LoadtestResults): string | undefined {
  return r.timedOut
    ? `TIMED OUT: the run was stopped by its ${formatDuration(r.config.timeoutMs)} timeout before finishing its work; figures cover what completed.`
    : undefined;
}

export const OPERATION_COLUMNS = [
  'operation',
  'kind',
  'count',
  'errors',
  'req/s',
  'p50 ms',
  'p90 ms',
  'p99 ms',
  'p99.9 ms',
  'max ms',
] as const;

export function operationRow(op: OperationStats): string[] {
  const l = op.latencyMs;
  const latency =
    op.completed > 0 ? [l.p50, l.p90, l.p99, l.p999, l.max].map(formatMs) : ['-', '-', '-', '-', '-'];
  return [
    op.name,
    op.step ? 'step' : 'work',
    formatCount(op.completed),
    formatCount(op.errors),
    formatRate(op.throughputPerSec),
    ...latency,
  ];
}

export const ERROR_COLUMNS = ['operation', 'code', 'count', 'message'] as const;

/** Messages on one line: they are quoted in a table cell. */
export function errorRow(e: LoadtestResults['errors'][number]): string[] {
  return [e.operation, String(e.code), formatCount(e.count), e.message.replace(/\s+/g, ' ').trim()];
}

export interface BrokerFigures {
  peakRssBytes: number;
  peakHeapBytes: number | null;
  meanCpuPercent: number;
}

/** Peak memory and mean CPU over the broker samples; undefined when there are none. */
export function brokerFigures(r: LoadtestResults): BrokerFigures | undefined {
  const samples = r.broker.samples;
  if (samples.length === 0) return undefined;
  let peakRssBytes = 0;
  let peakHeapBytes: number | null = null;
  let cpu = 0;
  for (const s of samples) {
    peakRssBytes = Math.max(peakRssBytes, s.rssBytes);
    if (s.heapUsedBytes !== null) peakHeapBytes = Math.max(peakHeapBytes ?? 0, s.heapUsedBytes);
    cpu += s.cpuPercent;
  }
  return { peakRssBytes, peakHeapBytes, meanCpuPercent: cpu / samples.length };
}

export function describeBroker(r: LoadtestResults): string {
  const figures = brokerFigures(r);
  const pids = r.broker.pids.length > 0 ? ` (pid ${r.broker.pids.join(', ')})` : '';
  if (figures === undefined) return `broker: no samples${pids}`;
  const heap = figures.peakHeapBytes !== null ? `, peak heap ${formatBytes(figures.peakHeapBytes)}` : '';
  return `broker: peak RSS ${formatBytes(figures.peakRssBytes)}${heap}, mean CPU ${figures.meanCpuPercent.toFixed(1)}% of one core${pids}`;
}

function answeredIgnored(counts: { answered: number; ignored: number }): string {
  return `${formatCount(counts.answered)} answered, ${formatCount(counts.ignored)} ignored`;
}

export interface TotalsLine {
  label: string;
  value: string;
  /** A breakdown of the line above it (server requests by method). */
  detail: boolean;
}

/** The totals in reading order. */
export function totalsList(r: LoadtestResults): TotalsLine[] {
  const t = r.totals;
  const line = (label: string, value: string, detail = false): TotalsLine => ({ label, value, detail });
  return [
    line('throughput', `${formatRate(t.throughputPerSec)}/s`),
    line('completed', formatCount(t.completed)),
    line('errors', formatCount(t.errors)),
    line('disconnects', formatCount(t.disconnects)),
    ...(t.sessionsRecycled !== undefined ? [line('sessions recycled', formatCount(t.sessionsRecycled))] : []),
    line('clients', `${formatCount(t.clientsStarted)} started, ${formatCount(t.clientsFinished)} finished`),
    line('server requests', answeredIgnored(t.serverRequests)),
    ...Object.entries(t.serverRequests.byMethod).map(([method, counts]) =>
      line(method, answeredIgnored(counts), true),
    ),
  ];
}
