/**
 * The HTML report of a loadtest run: one self-contained file (uPlot, its CSS and the results
 * inlined, nothing fetched) that opens from disk or a CI artifact. The run, totals, operations
 * and errors are static HTML with the same figures as the stdout table, so the page reads without
 * JavaScript; the charts (latency and throughput over time, a latency histogram per operation,
 * broker memory and CPU) are drawn by `charts-script.ts` from the results embedded as JSON.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { LoadtestResults } from '../results.js';
import { CHARTS_SCRIPT } from './charts-script.js';
import {
  describeBroker,
  describeConfig,
  describeEnvironment,
  describeRun,
  ERROR_COLUMNS,
  errorRow,
  OPERATION_COLUMNS,
  operationRow,
  timedOutNotice,
  totalsList,
} from './figures.js';

let uplot: { script: string; css: string } | undefined;

/** uPlot's browser build and stylesheet, read once per process. */
function uplotAssets(): { script: string; css: string } {
  if (uplot === undefined) {
    const require = createRequire(import.meta.url);
    uplot = {
      script: inlineScript(readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8')),
      css: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8').replace(
        /<\/style/gi,
        '<\\/style',
      ),
    };
  }
  return uplot;
}

/**
 * A script's text safe inside `<script>`: nothing in it may close the element early. (`<\/` means
 * `</` in a JS string or regex, the only places either script has one.)
 */
function inlineScript(text: string): string {
  return text.replace(/<\/script/gi, '<\\/script');
}

/**
 * JSON safe inside `<script type="application/json">`: `<` only occurs inside JSON strings,
 * where `\u003c` means the same, so `</script` and `<!--` cannot appear.
 */
function embedJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function table(columns: readonly string[], rows: string[][], numeric: (column: number) => boolean): string {
  const cell = (tag: 'th' | 'td', text: string, i: number): string =>
    `<${tag}${numeric(i) ? ' class="num"' : ''}>${escapeHtml(text)}</${tag}>`;
  return [
    '<table>',
    `<thead><tr>${columns.map((c, i) => cell('th', c, i)).join('')}</tr></thead>`,
    '<tbody>',
    ...rows.map((row) => `<tr>${row.map((c, i) => cell('td', c, i)).join('')}</tr>`),
    '</tbody>',
    '</table>',
  ].join('\n');
}

/** A chart's container; with `empty` set, a static note takes the chart's place. */
function chart(name: string, empty: string | undefined, attributes = ''): string {
  const body =
    empty !== undefined
      ? `<p class="no-data">No data: ${escapeHtml(empty)}</p>`
      : '<p class="no-js">This chart is drawn by JavaScript.</p>';
  return `<div class="chart" data-chart="${escapeHtml(name)}"${attributes}${empty !== undefined ? ' data-empty' : ''}>${body}</div>`;
}

function charts(r: LoadtestResults): string {
  const timeline = r.timeline;
  const latencies = timeline.some((p) => p.p50Ms !== null);
  const samples = r.broker.samples.length > 0;
  const histograms = r.operations.map(
    (op) =>
      `<figure><figcaption>${escapeHtml(op.name)}${op.step ? ' (step)' : ''}</figcaption>${chart(
        `histogram:${op.name}`,
        op.histogram.length === 0 ? 'no completed operations' : undefined,
        ` data-operation="${escapeHtml(op.name)}"`,
      )}</figure>`,
  );
  return [
    '<section><h2>Latency over time</h2>',
    '<p class="caption">p50 and p99 of what completed in each second, all operations together.</p>',
    chart('latency', latencies ? undefined : 'nothing completed'),
    '</section>',
    '<section><h2>Throughput over time</h2>',
    chart('throughput', timeline.length > 0 ? undefined : 'no timeline'),
    '</section>',
    '<section><h2>Latency histograms</h2>',
    histograms.length > 0
      ? `<div class="grid">${histograms.join('\n')}</div>`
      : '<p class="no-data">No data: no operations recorded.</p>',
    '</section>',
    '<section><h2>Broker</h2>',
    '<div class="grid">',
    `<figure><figcaption>Memory</figcaption>${chart('memory', samples ? undefined : 'the broker was not sampled')}</figure>`,
    `<figure><figcaption>CPU</figcaption>${chart('cpu', samples ? undefined : 'the broker was not sampled')}</figure>`,
    '</div>',
    '</section>',
  ].join('\n');
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2937; margin: 0 auto; padding: 1.5rem; max-width: 1200px; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #e5e7eb; padding-bottom: .25rem; }
.meta { color: #4b5563; margin: .15rem 0; }
.timed-out { background: #fef2f2; color: #991b1b; border: 1px solid #fecaca; padding: .5rem .75rem; font-weight: 600; }
dl.totals { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.totals dt { color: #4b5563; }
dl.totals dt.detail { padding-left: 1.25rem; }
dl.totals dd { margin: 0; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top; }
th { background: #f9fafb; }
.num { text-align: right; }
.caption { color: #4b5563; margin: 0 0 .5rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1rem; }
.grid > figure { margin: 0; min-width: 0; }
figcaption { font-weight: 600; margin-bottom: .25rem; }
.chart { min-height: 2rem; min-width: 0; }
.no-data { color: #6b7280; font-style: italic; border: 1px dashed #d1d5db; padding: 1rem; margin: 0; }
.no-js { color: #6b7280; margin: 0; }
`;

export function renderHtml(r: LoadtestResults): string {
  const assets = uplotAssets();
  const notice = timedOutNotice(r);
  const title = `gatehouse loadtest · ${r.config.transport} · ${r.config.clients} clients · ${r.startedAt}`;
  const totals = totalsList(r)
    .map(
      (t) =>
        `<dt${t.detail ? ' class="detail"' : ''}>${escapeHtml(t.label)}</dt><dd>${escapeHtml(t.value)}</dd>`,
    )
    .join('');
  const operations =
    r.operations.length > 0
      ? table(OPERATION_COLUMNS, r.operations.map(operationRow), (i) => i >= 2)
      : '<p class="no-data">No data: no operations recorded.</p>';
  const errors =
    r.errors.length > 0 ? table(ERROR_COLUMNS, r.errors.map(errorRow), (i) => i === 2) : '<p>No errors.</p>';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${assets.css}</style>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>gatehouse loadtest</h1>
<p class="meta">${escapeHtml(describeRun(r))}</p>
<p class="meta">${escapeHtml(describeConfig(r.config))}</p>
<p class="meta">${escapeHtml(describeEnvironment(r))}</p>
</header>
${notice !== undefined ? `<p class="timed-out">${escapeHtml(notice)}</p>` : ''}
<section><h2>Totals</h2>
<dl class="totals">${totals}<dt>broker</dt><dd>${escapeHtml(describeBroker(r).replace(/^broker: /, ''))}</dd></dl>
</section>
<section><h2>Operations</h2>
${operations}
</section>
<section><h2>Errors</h2>
${errors}
</section>
${charts(r)}
<script type="application/json" id="loadtest-results">${embedJson(r)}</script>
<script>${assets.script}</script>
<script>${inlineScript(CHARTS_SCRIPT)}</script>
</body>
</html>
`;
}
