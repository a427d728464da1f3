/**
 * Wire fuzzing, fast path (issue #8): generated sequences of valid requests, spec-silent lines and
 * noise go through the real stdio transport (LineFramer included) into a real broker in this
 * process, cut into random chunks. Each valid request must get exactly one answer, the spec's;
 * nothing the spec leaves unanswered may be answered; every output line must be valid under
 * codex's schemas; connections must not leak actors and the heap must not grow.
 *
 * GATEHOUSE_FUZZ_RUNS and GATEHOUSE_FUZZ_SEED override the run count and seed; `npm run fuzz`
 * is the long form.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { runChunks } from './in-process-harness.js';
import { itemBytes, nestedArrays, type WireItem } from './wire-arbitraries.js';
import { checkOutput, planFor } from './wire-oracle.js';
import { emptyTotals, wireFixture, wirePropertyOn } from './wire-properties.js';

const RUNS = Number(process.env.GATEHOUSE_FUZZ_RUNS ?? 3_100);
const SEED = Number(process.env.GATEHOUSE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** This file's share of the 100 000 generated inputs CI must run (the child-process file adds about 14 000). */
const MIN_LINES = Math.floor(RUNS * 28.4);

function forceGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** fast-check's error names seed and counterexample; the cause says what was wrong. */
function withCause(e: unknown): Error {
  const err = e as Error & { cause?: unknown };
  const cause = err.cause instanceof Error ? `\n${err.cause.message}` : '';
  return new Error(`${err.message}${cause}`);
}

test(`wire property over the in-process stdio transport (${RUNS} sequences, seed ${SEED})`, async (t) => {
  const fixture = wireFixture();
  t.after(() => fixture.dispose());
  const gc = forceGc();
  const totals = emptyTotals();
  // Warm up (schemas compiled, actors spawned) before taking the baseline.
  await fc.assert(wirePropertyOn(fixture, totals), { numRuns: 20, seed: SEED + 1 }).catch((e) => {
    throw withCause(e);
  });
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const actorsBefore = fixture.broker.system.stats().actors;
  const started = Date.now();
  await fc.assert(wirePropertyOn(fixture, totals), { numRuns: RUNS, seed: SEED }).catch((e) => {
    throw withCause(e);
  });
  const seconds = (Date.now() - started) / 1000;
  gc();
  const heapGrowthMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  const stats = fixture.broker.system.stats();
  t.diagnostic(
    `fuzz in-process: ${totals.runs} sequences, ${totals.lines} lines (${totals.requests} valid requests, ` +
      `${totals.silent} spec-silent, ${totals.noise} noise), ${(totals.bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `${totals.answers} answers (${totals.noiseAnswers} to noise) in ${seconds.toFixed(1)} s; ` +
      `heap growth ${heapGrowthMiB.toFixed(1)} MiB; actors ${actorsBefore} -> ${stats.actors}; seed ${SEED}`,
  );
  assert.equal(stats.actors, actorsBefore, 'every closed connection left its actors behind');
  assert.equal(stats.pendingAsks, 0);
  assert.equal(fixture.broker.inFlight, 0);
  assert.ok(
    heapGrowthMiB < 32,
    `heap grew by ${heapGrowthMiB.toFixed(1)} MiB over ${totals.runs} connections`,
  );
  assert.ok(totals.lines >= MIN_LINES, `only ${totals.lines} lines generated`);
});

test('hostile values: 100 000 nested arrays, 1e400, lone surrogates, -0, duplicate and escaped ids', async (t) => {
  const fixture = wireFixture();
  t.after(() => fixture.dispose());
  const deep = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
  const silent = (why: string, text: string): WireItem => ({
    type: 'silent',
    why,
    bytes: Buffer.from(`${text}\n`),
  });
  const dressing = { order: 0, jsonrpc: false, trace: false, extra: false, spaced: false, crlf: false };
  const items: WireItem[] = [
    // Before the fix this one took the whole process down (stack overflow in the actor codec).
    silent('100 000 levels in params', `{"id":"h1","method":"account/read","params":{"x":${deep(100_000)}}}`),
    silent('100 000 levels as params', `{"id":"h2","method":"initialize","params":${deep(100_000)}}`),
    silent('unbalanced', '['.repeat(300_000)),
    silent('f64 overflow', '{"id":"h3","method":"account/read","params":{"n":1e400}}'),
    silent('lone surrogate', '{"id":"h4","method":"account/read","params":{"s":"\\ud800"}}'),
    silent('-0 is a float to serde', '{"id":-0,"method":"account/read","params":{}}'),
    silent('duplicate id', '{"id":"h5","method":"account/read","params":{},"id":"h6"}'),
    silent('escaped id key, float id', '{"\\u0069d":1.0,"method":"account/read","params":{}}'),
    silent('malformed trace', '{"id":"h7","method":"account/read","params":{},"trace":7}'),
    {
      type: 'request',
      id: { kind: 'str', value: 'params-null', escaped: false },
      body: { kind: 'account-read-no-params', form: 'null' },
      dressing,
    },
    {
      type: 'request',
      id: { kind: 'str', value: 'init', escaped: true },
      body: { kind: 'initialize', name: 'hostile', version: '1', experimental: true },
      dressing,
    },
    {
      type: 'request',
      id: { kind: 'big', digits: '-9223372036854775808' },
      body: { kind: 'account-read', params: { nested: nestedArrays(125) } }, // depth 127: accepted
      dressing,
    },
    {
      type: 'request',
      id: { kind: 'int', value: 1_000_000_000_001 },
      body: { kind: 'mock', value: 'é'.repeat(400_000) },
      dressing,
    },
  ];
  const stream = Buffer.concat(items.map(itemBytes));
  const chunks = [];
  for (let at = 0; at < stream.length; at += 65_536) chunks.push(stream.subarray(at, at + 65_536));
  const output = await runChunks(fixture.broker, chunks, 2 * 2 ** 20, fixture.broker.log);
  const report = checkOutput(output.lines, planFor(items), fixture.codexHome);
  assert.deepEqual(report.problems, []);
  assert.equal(report.answers, 4);
  assert.ok(output.terminated);
});
