/**
 * The in-process wire property, shared by the test (short form) and `npm run fuzz` (long form):
 * for any generated sequence of lines, cut into any chunks, each valid request gets exactly one
 * answer and it is the spec's; nothing else is answered but noise that decodes as a request;
 * every output line is valid under codex's schemas; stdout never ends mid-line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createBroker, type Broker } from '../../src/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { runChunks } from './in-process-harness.js';
import { chunkCuts, itemBytes, splitAt, wireSequence, type WireItem } from './wire-arbitraries.js';
import { checkOutput, planFor } from './wire-oracle.js';

/** Small, so that oversized lines are cheap to generate. */
export const IN_PROCESS_MAX_LINE_BYTES = 8 * 1024;

export interface PropertyTotals {
  runs: number;
  lines: number;
  requests: number;
  silent: number;
  noise: number;
  answers: number;
  noiseAnswers: number;
  bytes: number;
}

export function emptyTotals(): PropertyTotals {
  return { runs: 0, lines: 0, requests: 0, silent: 0, noise: 0, answers: 0, noiseAnswers: 0, bytes: 0 };
}

export interface WireFixture {
  broker: Broker;
  codexHome: string;
  dispose(): Promise<void>;
}

export function wireFixture(): WireFixture {
  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-fuzz-'));
  const broker = createBroker({ codexHome, log: silentLogger() });
  return {
    broker,
    codexHome,
    dispose: async () => {
      await broker.close(1_000);
      rmSync(codexHome, { recursive: true, force: true });
    },
  };
}

/** The property over one broker; `totals` is added to as runs go. */
export function wirePropertyOn(fixture: WireFixture, totals: PropertyTotals, maxLength = 60) {
  const limits = { maxLineBytes: IN_PROCESS_MAX_LINE_BYTES };
  return fc.asyncProperty(
    wireSequence(limits, maxLength),
    fc.array(fc.nat(), { maxLength: 24 }),
    async (items: WireItem[], cutSeeds: number[]) => {
      const stream = Buffer.concat(items.map(itemBytes));
      const chunks = splitAt(stream, chunkCuts(stream.length, cutSeeds));
      const output = await runChunks(fixture.broker, chunks, IN_PROCESS_MAX_LINE_BYTES, fixture.broker.log);
      const plan = planFor(items);
      const report = checkOutput(output.lines, plan, fixture.codexHome);
      totals.runs++;
      totals.lines += items.length;
      totals.bytes += stream.length;
      totals.requests += plan.counts.requests;
      totals.silent += plan.counts.silent;
      totals.noise += plan.counts.noise;
      totals.answers += report.answers;
      totals.noiseAnswers += report.noiseAnswers;
      const problems = output.terminated ? report.problems : [...report.problems, 'stdout ends mid-line'];
      if (problems.length > 0) throw new Error(`${problems.join('\n')}\ninput:\n${describeItems(items)}`);
    },
  );
}

/** The input as readable lines (bytes decoded leniently), for failure messages. */
export function describeItems(items: WireItem[]): string {
  return items
    .map((item) => {
      const text = JSON.stringify(itemBytes(item).toString('utf8'));
      const shown = text.length > 300 ? `${text.slice(0, 300)}... (${text.length} chars)` : text;
      return `  ${item.type}${item.type === 'silent' ? ` (${item.why})` : ''}: ${shown}`;
    })
    .join('\n');
}
