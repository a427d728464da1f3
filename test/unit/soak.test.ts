/**
 * The soak's arithmetic and options (the run itself is test/load/soak.test.ts): what
 * `--soak` defaults to, where the growth window starts, which counts fail the check, what counts
 * as a lost operation.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadtestUsageError, parseLoadtestArgs } from '../../src/loadtest/options.js';
import type { OperationStats } from '../../src/loadtest/results.js';
import { countsAbove, growthOf, lostOperations, trendOf } from '../../src/loadtest/soak.js';

const parse = (...args: string[]) => {
  const options = parseLoadtestArgs(args);
  assert.notEqual(options, 'help');
  return options as Exclude<typeof options, 'help'>;
};

test('--soak alone is the long form: 500 clients, 10 minutes, faults, a GC-capable broker; minute 2 starts the window', () => {
  const o = parse('--soak');
  assert.equal(o.clients, 500);
  assert.equal(o.durationMs, 600_000);
  assert.equal(o.thinkMs, 1_000);
  assert.equal(o.sessionOps, 20);
  assert.deepEqual(o.faults, { silent: 0.02, disconnect: 0.02, 'backend-401': 0.01 });
  assert.deepEqual(o.nodeArgs, ['--expose-gc']);
  assert.equal(o.soak?.fromMs, 120_000);
  assert.equal(o.soak?.maxGrowth, 0.05);
  assert.ok(o.timeoutMs > 600_000 + 2 * o.soak.settleMs, 'the timeout leaves room for the checks');
});

test('--soak short forms: the window starts at duration/5 but never before 30 s; given options win', () => {
  const o = parse('--soak', '-n', '50', '-d', '60s', '--think', '2s', '--max-growth', '3%');
  assert.equal(o.clients, 50);
  assert.equal(o.thinkMs, 2_000);
  assert.equal(o.soak?.fromMs, 30_000);
  assert.equal(o.soak?.maxGrowth, 0.03);
  assert.equal(parse('--soak', '-d', '5m').soak?.fromMs, 60_000);
  assert.equal(parse('-n', '5').soak, undefined, 'no soak unless asked');
  assert.equal(parse('-n', '5').sessionOps, undefined);
});

test('--soak refuses what it cannot measure', () => {
  const refused = (args: string[], pattern: RegExp) =>
    assert.throws(
      () => parseLoadtestArgs(args),
      (e: unknown) => e instanceof LoadtestUsageError && pattern.test(e.message),
    );
  refused(['--soak', '-t', 'in-process'], /--soak needs one broker child/);
  refused(['--soak', '-d', '39s'], /at least 40s/);
  refused(['--soak', '--mode', 'open', '--rate', '5'], /closed loop/);
  refused(['--soak', '--requests', '10'], /--duration, not --requests/);
  refused(['--max-growth', '5%'], /applies to --soak only/);
});

test('counts above their baseline fail, fewer are fine, a bounded count may rise to its bound', () => {
  const baseline = { connections: 1, 'handles.Timeout': 2, workerThreads: 1 };
  assert.deepEqual(countsAbove(baseline, { connections: 1, 'handles.Timeout': 1, workerThreads: 1 }), []);
  assert.deepEqual(countsAbove(baseline, { connections: 1, 'handles.Timeout': 3, 'listeners.broker.x': 1 }), [
    { name: 'handles.Timeout', baseline: 2, after: 3 },
    { name: 'listeners.broker.x', baseline: 0, after: 1 },
  ]);
  assert.deepEqual(countsAbove(baseline, { ...baseline, workerThreads: 2 }, { workerThreads: 2 }), []);
  assert.equal(countsAbove(baseline, { ...baseline, workerThreads: 3 }, { workerThreads: 2 }).length, 1);
});

test('growth compares medians, so one outlier at either end does not decide', () => {
  const g = growthOf([100, 100, 400, 100, 100], [105, 104, 1, 104, 106]);
  assert.deepEqual(g, { fromBytes: 100, toBytes: 104, growth: 0.04 });
  assert.equal(growthOf([], [1]), null);
});

test('an operation is lost when it was started and neither answered nor failed', () => {
  const op = (name: string, completed: number, errors: number, step = false) =>
    ({ name, completed, errors, step }) as OperationStats;
  const ops = [
    op('initialize', 50, 1, true),
    op('account/read', 70, 1),
    op('turn', 20, 2),
    // A turn that failed at its thread counts once, under thread/start; a new thread's success is not an operation.
    op('thread/start', 9, 1),
  ];
  assert.equal(lostOperations(94, ops), 0);
  assert.equal(lostOperations(96, ops), 2);
});

test('RSS growth is the rise of a fitted line: noise around a flat line is 0, a steady climb is measured', () => {
  const flat = trendOf([96, 104, 104, 96, 104, 96].map((bytes, t) => [t * 1000, bytes]));
  assert.ok(flat && Math.abs(flat.growth) < 0.03, `${flat?.growth}`);
  const climb = trendOf([0, 1, 2, 3, 4].map((t) => [t * 1000, 100 + 2 * t]));
  assert.deepEqual(climb, { fromBytes: 100, toBytes: 108, growth: 0.08 });
  assert.equal(trendOf([[0, 1]]), null);
});
