import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderTable } from '../../src/loadtest/report/table.js';
import { SAMPLE_STEPS, SAMPLE_WORK, sampleResults } from '../helpers/loadtest-sample.js';

function lineStartingWith(text: string, start: string): string {
  const line = text.split('\n').find((l) => l.startsWith(`${start} `));
  assert.ok(line !== undefined, `no line starting with "${start}" in:\n${text}`);
  return line;
}

test('one row per operation, steps first, with the recorded figures', () => {
  const r = sampleResults();
  const text = renderTable(r);
  const names = [...SAMPLE_STEPS, ...SAMPLE_WORK];
  assert.deepEqual(
    r.operations.map((op) => op.name),
    names,
  );
  const header = lineStartingWith(text, 'operation  ');
  assert.match(header, /count\s+errors\s+req\/s\s+p50 ms\s+p90 ms\s+p99 ms\s+p99\.9 ms\s+max ms$/);
  const rows = names.map((name) => lineStartingWith(text, name));
  // In the order of the results.
  const positions = rows.map((row) => text.indexOf(row));
  assert.deepEqual(
    [...positions].sort((a, b) => a - b),
    positions,
  );
  const read = r.operations.find((op) => op.name === 'account/read')!;
  assert.deepEqual(lineStartingWith(text, 'account/read').split(/\s+/).slice(0, 5), [
    'account/read',
    'work',
    read.completed.toLocaleString('en-US'),
    String(read.errors),
    String(Math.round(read.throughputPerSec)),
  ]);
  // Right-aligned numbers: every row is as long as the header.
  for (const row of rows) assert.equal(row.length, header.length, row);
});

test('errors by operation and code, with their message', () => {
  const r = sampleResults();
  const text = renderTable(r);
  assert.ok(r.errors.length >= 3);
  for (const e of r.errors) {
    const row = text.split('\n').find((l) => l.startsWith(`${e.operation} `) && l.includes(e.message));
    assert.ok(row !== undefined, `no error row for ${e.operation} ${e.code}`);
    assert.deepEqual(row.split(/\s+/).slice(0, 3), [e.operation, String(e.code), String(e.count)]);
  }
});

test('totals, configuration and broker figures', () => {
  const text = renderTable(sampleResults());
  assert.match(text, /^completed:\s+4,096$/m);
  assert.match(text, /^server requests:\s+198 answered, 0 ignored$/m);
  assert.match(text, /^ {2}attestation\/generate:\s+198 answered, 0 ignored$/m);
  assert.match(text, /^in-process · 200 clients · ramp-up 5 s · for 25 s · closed loop/m);
  assert.match(
    text,
    /^broker: peak RSS [\d.]+ MiB, peak heap [\d.]+ MiB, mean CPU [\d.]+% of one core \(pid 4242\)$/m,
  );
  assert.match(renderTable(sampleResults({ brokerSamples: false })), /^broker: no samples$/m);
  assert.doesNotMatch(text, /[ \t]$/m, 'no trailing blanks');
  assert.ok(!text.includes('\u001b['), 'no colours');
});

test('a timed-out run says so; a finished one does not', () => {
  assert.match(renderTable(sampleResults({ timedOut: true })), /^TIMED OUT: .*120 s timeout/m);
  assert.doesNotMatch(renderTable(sampleResults()), /TIMED OUT/);
});

test('a run with nothing recorded still renders', () => {
  const r = { ...sampleResults({ brokerSamples: false }), operations: [], errors: [], timeline: [] };
  const text = renderTable(r);
  assert.match(text, /^no operations recorded$/m);
  assert.match(text, /^no errors$/m);
});
