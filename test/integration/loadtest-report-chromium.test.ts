/**
 * The HTML report opened in a real headless Chromium: a screenshot is taken (kept beside the
 * report in the temp dir, its path printed as a diagnostic), and the DOM after the scripts ran
 * shows every chart drawn on a canvas, or a "no data" note where a series is empty.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderHtml } from '../../src/loadtest/report/html.js';
import { writeReports } from '../../src/loadtest/report/write-reports.js';
import type { LoadtestResults } from '../../src/loadtest/results.js';
import { dumpDom, requireChromium, screenshot } from '../helpers/chromium.js';
import { sampleResults } from '../helpers/loadtest-sample.js';

const WIDTH = 1280;
const HEIGHT = 3000;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function reportDir(): string {
  return mkdtempSync(join(tmpdir(), 'gatehouse-loadtest-report-'));
}

/** Width and height from the PNG's IHDR chunk, which comes right after the signature. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE), 'PNG signature');
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

interface ChartInDom {
  name: string;
  empty: boolean;
  canvas: boolean;
  noDataNote: boolean;
}

/**
 * The `[data-chart]` containers of the dumped DOM. A container's content runs to the end of its
 * figure or section (uPlot's markup has neither), which is enough to see what it holds.
 */
function chartsInDom(dom: string): ChartInDom[] {
  const charts: ChartInDom[] = [];
  const opening = /<div\b([^>]*)\bdata-chart="([^"]*)"([^>]*)>/g;
  for (let match = opening.exec(dom); match !== null; match = opening.exec(dom)) {
    const rest = dom.slice(opening.lastIndex);
    const end = Math.min(
      ...['</figure>', '</section>'].map((tag) => rest.indexOf(tag)).filter((i) => i >= 0),
    );
    const content = rest.slice(0, end);
    charts.push({
      name: match[2]!,
      empty: /\bdata-empty\b/.test(match[1]! + match[3]!),
      canvas: content.includes('<canvas'),
      noDataNote: /<p class="no-data">No data: [^<]+<\/p>/.test(content),
    });
  }
  return charts;
}

function chartsReady(dom: string): string | undefined {
  return /<body\b[^>]*\bdata-charts-ready="(\d+)"/.exec(dom)?.[1];
}

function operationsTable(dom: string): string {
  const section = /<h2>Operations<\/h2>([\s\S]*?)<\/section>/.exec(dom);
  assert.ok(section, 'an Operations section');
  return section[1]!;
}

function expectedChartNames(r: LoadtestResults): string[] {
  return ['latency', 'throughput', ...r.operations.map((op) => `histogram:${op.name}`), 'memory', 'cpu'];
}

test('the report of a full run: screenshot, every chart drawn, every operation listed', async (t) => {
  requireChromium(t);
  const r = sampleResults();
  const dir = reportDir();
  const [jsonPath, htmlPath] = writeReports(r, {
    json: join(dir, 'report.json'),
    html: join(dir, 'report.html'),
  });
  assert.deepEqual(JSON.parse(readFileSync(jsonPath!, 'utf8')), r);

  const pngPath = join(dir, 'report.png');
  await screenshot(htmlPath!, pngPath, { width: WIDTH, height: HEIGHT });
  t.diagnostic(`screenshot: ${pngPath}`);
  const png = readFileSync(pngPath);
  assert.deepEqual(pngSize(png), { width: WIDTH, height: HEIGHT });
  // A blank page of this size compresses to about 10 KB; text, tables and charts take far more.
  assert.ok(statSync(pngPath).size > 60_000, `screenshot is only ${png.length} bytes`);

  const dom = await dumpDom(htmlPath!);
  const charts = chartsInDom(dom);
  assert.deepEqual(
    charts.map((c) => c.name),
    expectedChartNames(r),
  );
  for (const chart of charts) {
    assert.ok(chart.canvas, `chart ${chart.name} has a canvas`);
    assert.ok(!chart.empty && !chart.noDataNote, `chart ${chart.name} has data`);
  }
  assert.equal(chartsReady(dom), String(charts.length));

  const table = operationsTable(dom);
  for (const op of r.operations) {
    assert.match(table, new RegExp(`<tr><td>${op.name}</td><td>${op.step ? 'step' : 'work'}</td>`), op.name);
  }
});

test('empty series show a "no data" note; text from the run cannot break out of the page', async (t) => {
  requireChromium(t);
  // No broker samples, and every work operation failed: no work latencies to draw.
  const r = sampleResults({ brokerSamples: false, workFails: true });
  r.errors[0]!.message = 'closed: </script><script>document.body.dataset.injected = "1"</script><!--';
  const dir = reportDir();
  const htmlPath = join(dir, 'report.html');
  writeFileSync(htmlPath, renderHtml(r));

  const pngPath = join(dir, 'report.png');
  await screenshot(htmlPath, pngPath, { width: WIDTH, height: HEIGHT });
  t.diagnostic(`screenshot: ${pngPath}`);
  assert.deepEqual(pngSize(readFileSync(pngPath)), { width: WIDTH, height: HEIGHT });

  const dom = await dumpDom(htmlPath);
  const charts = chartsInDom(dom);
  assert.deepEqual(
    charts.map((c) => c.name),
    expectedChartNames(r),
  );
  const emptyNames = ['histogram:account/read', 'histogram:turn', 'memory', 'cpu'];
  for (const chart of charts) {
    const empty = emptyNames.includes(chart.name);
    assert.equal(chart.empty, empty, `${chart.name} marked empty`);
    assert.equal(chart.noDataNote, empty, `${chart.name} shows a no-data note`);
    assert.equal(chart.canvas, !empty, `${chart.name} has a canvas`);
  }
  assert.equal(chartsReady(dom), String(charts.length - emptyNames.length));

  assert.doesNotMatch(dom, /data-injected/);
  assert.ok(dom.includes('closed: &lt;/script&gt;&lt;script&gt;'), 'the message is shown as text');
  const table = operationsTable(dom);
  for (const op of r.operations) assert.ok(table.includes(`<td>${op.name}</td>`), op.name);
});
