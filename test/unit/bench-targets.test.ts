import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseBenchOptions, PARTS, UsageError, type BenchOptions } from '../../bench/options.js';
import { NOT_MEASURED, TargetsTable } from '../../bench/targets.js';

describe('npm run bench: targets and options', () => {
  test('verdicts: met, or by how much each kind of goal was missed', () => {
    const t = new TargetsTable();
    t.add(
      { id: 'rate', label: 'rate', unit: 'req/s', goal: { kind: 'at-least', value: 100_000 } },
      { figure: 25_000 },
    );
    t.add(
      { id: 'share', label: 'share', unit: 'req/s', goal: { kind: 'share-of-ceiling', value: 0.3 } },
      { figure: 60_000, ceiling: { label: 'echo', value: 300_000 } },
    );
    t.add({ id: 'p99', label: 'p99', unit: 'ms', goal: { kind: 'under', value: 50 } }, { figure: 123.2 });
    t.add(
      { id: 'idle', label: 'idle', unit: 'bytes', goal: { kind: 'under', value: 16_384 } },
      { figure: 13_700 },
    );
    t.add(
      { id: 'cold', label: 'cold', unit: 'ms', goal: { kind: 'under', value: 150 } },
      { notMeasured: 'skipped' },
    );
    const by = Object.fromEntries(t.rows.map((r) => [r.id, r]));
    assert.equal(by.rate!.verdict, 'missed by 75%');
    assert.equal(by.share!.met, false);
    assert.ok(Math.abs(by.share!.ratio! - 0.2) < 1e-9);
    assert.match(by.share!.verdict, /^missed by 33/);
    assert.equal(by.p99!.verdict, 'missed by 73.20 ms');
    assert.equal(by.idle!.verdict, 'met');
    assert.equal(by.idle!.met, true);
    assert.equal(by.cold!.verdict, NOT_MEASURED);
    assert.equal(by.cold!.met, null);
  });

  test('quick by default, --full, --only and BENCH_ONLY, bad input refused', () => {
    const quick = parseBenchOptions([], {}) as BenchOptions;
    assert.equal(quick.mode, 'quick');
    assert.deepEqual(quick.parts, Object.keys(PARTS));
    const full = parseBenchOptions(['--full', '--only', 'idle,stdio'], {}) as BenchOptions;
    assert.equal(full.mode, 'full');
    assert.deepEqual(full.parts, ['stdio', 'idle'], 'parts run in their fixed order');
    assert.ok(full.sizes.requests > quick.sizes.requests);
    assert.deepEqual((parseBenchOptions([], { BENCH_ONLY: 'ws-handshakes' }) as BenchOptions).parts, [
      'ws-handshakes',
    ]);
    assert.equal(parseBenchOptions(['--help'], {}), 'help');
    assert.throws(
      () => parseBenchOptions(['--only', 'nope'], {}),
      (e) => e instanceof UsageError && /unknown part 'nope'/.test(e.message),
    );
    assert.throws(() => parseBenchOptions(['--timeout', '-1'], {}), UsageError);
    assert.throws(() => parseBenchOptions(['--fast'], {}), UsageError);
  });
});
