import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Recorder } from '../../src/loadtest/recorder.js';

/** A clock the test moves by hand: nothing waits. */
function manualClock(startMs = 5_000): { now: () => number; advance: (ms: number) => void } {
  let now = startMs;
  return { now: () => now, advance: (ms) => (now += ms) };
}

/** hdr's 3 significant digits: a value is reported within 0.1% of a sample at that rank. */
function near(actual: number, expected: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= expected * 0.001 + 0.001,
    `${what}: ${actual} is not ≈ ${expected}`,
  );
}

test('percentiles of a uniform 1..10000 µs distribution', () => {
  const recorder = new Recorder(manualClock().now);
  for (let us = 10_000; us >= 1; us--) recorder.record('account/read', us / 1000);
  const [op] = recorder.summary(10_000, 12_000).operations;
  assert.ok(op);
  assert.equal(op.completed, 10_000);
  near(op.latencyMs.p50, 5, 'p50');
  near(op.latencyMs.p90, 9, 'p90');
  near(op.latencyMs.p99, 9.9, 'p99');
  near(op.latencyMs.p999, 9.99, 'p99.9');
  assert.equal(op.latencyMs.min, 0.001);
  assert.equal(op.latencyMs.max, 10);
  near(op.latencyMs.mean, 5.0005, 'mean');
});

test('percentiles never exceed the exact maximum', () => {
  const recorder = new Recorder(manualClock().now);
  // 44.123 ms sits inside an hdr range whose top is above it.
  for (let i = 0; i < 999; i++) recorder.record('turn', 10);
  recorder.record('turn', 44.123);
  const [op] = recorder.summary(1_000, 1_000).operations;
  assert.equal(op!.latencyMs.max, 44.123);
  assert.ok(op!.latencyMs.p999 <= op!.latencyMs.max);
  assert.equal(op!.histogram.at(-1)!.upToMs, 44.123);
});

test('a histogram has about 40 log-spaced buckets whose counts sum to completed', () => {
  const recorder = new Recorder(manualClock().now);
  let n = 0;
  // Geometric spread from 0.1 ms to 1 s.
  for (let i = 0; i <= 4000; i++) {
    recorder.record('turn', 0.1 * 10 ** (i / 1000));
    n++;
  }
  const [op] = recorder.summary(1_000, 1_000).operations;
  const buckets = op!.histogram;
  assert.equal(
    buckets.reduce((sum, b) => sum + b.count, 0),
    n,
  );
  assert.ok(buckets.length >= 35 && buckets.length <= 40, `${buckets.length} buckets`);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.upToMs > buckets[i - 1]!.upToMs);
  // Log-spaced: each bucket's edge is the previous one times about (10^4)^(1/40).
  const ratio = buckets[21]!.upToMs / buckets[20]!.upToMs;
  assert.ok(Math.abs(ratio - 10 ** (4 / 40)) < 0.01, `ratio ${ratio}`);
  // Samples are spread evenly on a log scale, so are the counts (within hdr's rounding).
  for (const b of buckets.slice(1, -1))
    assert.ok(b.count >= 90 && b.count <= 110, `bucket ${b.upToMs}: ${b.count}`);
  assert.equal(buckets.at(-1)!.upToMs, op!.latencyMs.max);
});

test('one distinct latency makes one bucket; no completions make none', () => {
  const recorder = new Recorder(manualClock().now);
  for (let i = 0; i < 5; i++) recorder.record('account/read', 2);
  recorder.fail('turn', -32001, 'overloaded');
  const [read, turn] = recorder.summary(1_000, 1_000).operations;
  assert.deepEqual(read!.histogram, [{ upToMs: 2, count: 5 }]);
  assert.equal(turn!.name, 'turn');
  assert.equal(turn!.completed, 0);
  assert.deepEqual(turn!.histogram, []);
  assert.deepEqual(turn!.latencyMs, { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
});

test('errors are grouped by operation and code, keeping the first message', () => {
  const recorder = new Recorder(manualClock().now);
  recorder.fail('turn', -32001, 'overloaded, retry');
  recorder.fail('turn', -32001, 'a later message');
  recorder.fail('turn', 'timeout', 'no answer within 10000 ms');
  recorder.fail('login', 401, 'unauthorized', true);
  // A string code is not the number of the same digits.
  recorder.fail('login', '401', 'local 401', true);
  recorder.record('turn', 30);
  const { operations, errors } = recorder.summary(1_000, 1_000);
  assert.deepEqual(errors, [
    { operation: 'login', code: 401, message: 'unauthorized', count: 1 },
    { operation: 'login', code: '401', message: 'local 401', count: 1 },
    { operation: 'turn', code: -32001, message: 'overloaded, retry', count: 2 },
    { operation: 'turn', code: 'timeout', message: 'no answer within 10000 ms', count: 1 },
  ]);
  assert.deepEqual(
    operations.map((op) => [op.name, op.completed, op.errors]),
    [
      ['login', 0, 2],
      ['turn', 1, 3],
    ],
  );
  assert.deepEqual(recorder.live(), { completed: 1, errors: 5, perSec: 0, p99Ms: null });
});

test('secrets in error messages are redacted', () => {
  const recorder = new Recorder(manualClock().now);
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl';
  recorder.fail('login', 401, 'rejected Authorization: Bearer abc.def-123 for user', true);
  recorder.fail('turn', 400, `bad token ${jwt} and key sk-proj-0123456789abcdef`);
  const messages = recorder.summary(1_000, 1_000).errors.map((e) => e.message);
  assert.deepEqual(messages, [
    'rejected Authorization: Bearer <redacted> for user',
    'bad token <redacted> and key <redacted>',
  ]);
});

test('steps come first in the order first seen, then work operations by name', () => {
  const recorder = new Recorder(manualClock().now);
  recorder.record('turn', 1);
  recorder.record('initialize', 1, true);
  recorder.record('account/read', 1);
  recorder.record('login', 1, true);
  recorder.fail('attest', 'closed', 'connection closed', true);
  recorder.record('sign', 1);
  const names = recorder.summary(1_000, 1_000).operations.map((op) => [op.name, op.step]);
  assert.deepEqual(names, [
    ['initialize', true],
    ['login', true],
    ['attest', true],
    ['account/read', false],
    ['sign', false],
    ['turn', false],
  ]);
});

test('throughput: work operations over the work phase, steps over the whole run', () => {
  const recorder = new Recorder(manualClock().now);
  for (let i = 0; i < 300; i++) recorder.record('account/read', 1);
  for (let i = 0; i < 60; i++) recorder.record('initialize', 1, true);
  const ops = recorder.summary(10_000, 12_000).operations;
  assert.deepEqual(
    ops.map((op) => [op.name, op.throughputPerSec]),
    [
      ['initialize', 5],
      ['account/read', 30],
    ],
  );
  assert.deepEqual(
    recorder.summary(0, 0).operations.map((op) => op.throughputPerSec),
    [0, 0],
  );
});

test('tick closes a second of the timeline; live() reports the last closed one', () => {
  const clock = manualClock(70_000);
  const recorder = new Recorder(clock.now);
  assert.equal(recorder.startMs, 70_000);
  assert.deepEqual(recorder.live(), { completed: 0, errors: 0, perSec: 0, p99Ms: null });

  for (let us = 1; us <= 100; us++) recorder.record('account/read', us / 10); // 0.1 .. 10 ms
  recorder.fail('account/read', 'timeout', 'slow');
  // Not closed yet: live() still shows the previous (none).
  assert.deepEqual(recorder.live(), { completed: 100, errors: 1, perSec: 0, p99Ms: null });
  clock.advance(1_000);
  recorder.tick(10);
  near(recorder.live().p99Ms!, 9.9, 'live p99');
  assert.equal(recorder.live().perSec, 100);

  // A second with nothing completed has no latency; the per-second histogram was reset.
  clock.advance(1_000);
  recorder.tick(12);
  assert.deepEqual(recorder.live(), { completed: 100, errors: 1, perSec: 0, p99Ms: null });

  recorder.record('turn', 50);
  clock.advance(400); // the final, partial second
  recorder.tick(0);

  const { timeline } = recorder.summary(2_400, 2_400);
  assert.equal(timeline.length, 3);
  assert.deepEqual(
    timeline.map((p) => [p.tMs, p.completed, p.errors, p.activeClients]),
    [
      [1_000, 100, 1, 10],
      [2_000, 0, 0, 12],
      [2_400, 1, 0, 0],
    ],
  );
  near(timeline[0]!.p50Ms!, 5, 'p50 of the first second');
  assert.equal(timeline[1]!.p50Ms, null);
  assert.equal(timeline[1]!.p99Ms, null);
  // Only the 50 ms turn is in the third second's histogram.
  near(timeline[2]!.p50Ms!, 50, 'p50 of the last second');
  near(timeline[2]!.p99Ms!, 50, 'p99 of the last second');
});

test('out-of-range latencies are clamped instead of throwing', () => {
  const recorder = new Recorder(manualClock().now);
  recorder.record('turn', -3);
  recorder.record('turn', Number.NaN);
  recorder.record('turn', 10 * 3_600_000);
  const [op] = recorder.summary(1_000, 1_000).operations;
  assert.equal(op!.completed, 3);
  assert.equal(op!.latencyMs.min, 0);
  assert.equal(op!.latencyMs.max, 3_600_000);
  assert.equal(
    op!.histogram.reduce((sum, b) => sum + b.count, 0),
    3,
  );
});

test('summary is a snapshot: later recording does not change it', () => {
  const clock = manualClock();
  const recorder = new Recorder(clock.now);
  recorder.record('turn', 5);
  clock.advance(1_000);
  recorder.tick(1);
  const first = recorder.summary(1_000, 1_000);
  const copy = structuredClone(first);
  recorder.record('turn', 7);
  clock.advance(1_000);
  recorder.tick(1);
  assert.deepEqual(first, copy);
});
