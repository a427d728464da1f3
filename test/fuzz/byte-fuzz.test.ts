/**
 * Wire fuzzing against the built CLI (issue #8): generated lines as a byte stream cut at random
 * offsets into a child's stdin, and as WebSocket frames (some fragmented, some binary) over
 * several connections. Invariants: the child never dies, each valid request gets exactly one
 * answer and it is the spec's, nothing spec-silent is answered, RSS stays bounded (a 64 MiB line
 * is counted, not kept), and it exits 0 on stdin EOF and on SIGTERM.
 *
 * GATEHOUSE_FUZZ_SEED fixes the seed; `npm run fuzz` is the long form.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fuzzStdioChild, fuzzWebSocketChild, sigtermMidStream, type RssSample } from './byte-fuzzer.js';

const SEED = Number(process.env.GATEHOUSE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MAX_LINE_BYTES = 64 * 1024;
const HUGE_LINE_MIB = 64;

const mib = (kib: number) => (kib / 1024).toFixed(1);
const rssText = (rss: RssSample[]) => rss.map((s) => `${s.label} ${mib(s.kib)} MiB`).join(', ');

test(`stdio child: 8000 generated lines in random chunks, a ${HUGE_LINE_MIB} MiB line, EOF (seed ${SEED})`, async (t) => {
  const started = Date.now();
  const result = await fuzzStdioChild({
    seed: SEED,
    lines: 8_000,
    maxLineBytes: MAX_LINE_BYTES,
    hugeLineMiB: HUGE_LINE_MIB,
  });
  t.diagnostic(
    `fuzz stdio child: ${result.lines} lines (${result.plan.requests} valid requests, ${result.plan.silent} spec-silent, ` +
      `${result.plan.noise} noise), ${(result.bytes / 2 ** 20).toFixed(1)} MiB, ${result.report.answers} answers ` +
      `(${result.report.noiseAnswers} to noise) in ${((Date.now() - started) / 1000).toFixed(1)} s; RSS ${rssText(result.rss)}; seed ${SEED}`,
  );
  assert.deepEqual(result.report.problems, []);
  assert.deepEqual(result.notes, []);
  // Samples: after round 1 (warm), mid-way, after all rounds, after the huge line.
  const [start, , rounds, huge] = result.rss.map((s) => s.kib);
  // Generous bounds (the machine is shared): growth that tracked input would be far larger.
  assert.ok(rounds! - start! < 64 * 1024, `RSS grew ${mib(rounds! - start!)} MiB over the rounds`);
  assert.ok(
    huge! - rounds! < HUGE_LINE_MIB * 1024,
    `RSS grew ${mib(huge! - rounds!)} MiB for one ${HUGE_LINE_MIB} MiB line`,
  );
});

test('stdio child: SIGTERM while input still flows exits 0', async (t) => {
  const { status, answersBefore } = await sigtermMidStream(SEED, MAX_LINE_BYTES);
  t.diagnostic(
    `SIGTERM mid-stream: ${answersBefore} messages out before exit, status ${JSON.stringify(status)}`,
  );
  assert.deepEqual(status, { code: 0, signal: null });
});

test(`WebSocket child: 4 connections, 6000 generated frames, forbidden frames, SIGTERM (seed ${SEED})`, async (t) => {
  const started = Date.now();
  const result = await fuzzWebSocketChild({
    seed: SEED,
    lines: 6_000,
    maxLineBytes: MAX_LINE_BYTES,
    connections: 4,
  });
  t.diagnostic(
    `fuzz websocket child: ${result.lines} frames (${result.plan.requests} valid requests, ${result.plan.silent} spec-silent, ` +
      `${result.plan.noise} noise), ${(result.bytes / 2 ** 20).toFixed(1)} MiB, ${result.report.answers} answers ` +
      `(${result.report.noiseAnswers} to noise) in ${((Date.now() - started) / 1000).toFixed(1)} s; RSS ${rssText(result.rss)}; ` +
      `close codes ${JSON.stringify(result.closeCodes)}; seed ${SEED}`,
  );
  assert.deepEqual(result.report.problems, []);
  assert.deepEqual(result.notes, []);
  assert.deepEqual(result.closeCodes, {
    'invalid UTF-8 text frame': 1007,
    'frame over max_line_bytes': 1009,
    'binary frame then a request': 0,
  });
  const [start, end] = result.rss.map((s) => s.kib);
  assert.ok(end! - start! < 96 * 1024, `RSS grew ${mib(end! - start!)} MiB`);
});
