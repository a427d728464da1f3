/**
 * The long form of the wire fuzzer: `npm run fuzz -- --inputs 1000000 [--seed S] [--only MODE]`.
 * Same generators and checks as test/fuzz/*.test.ts, with many more inputs. Prints the seed
 * first; a failure prints what reproduces it. Exit status 0 when every invariant held.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { fuzzStdioChild, fuzzWebSocketChild, type ChildFuzzResult } from './byte-fuzzer.js';
import { emptyTotals, wireFixture, wirePropertyOn } from './wire-properties.js';

const HELP = `Usage: npm run fuzz -- [--inputs N] [--seed S] [--only MODE] [--path P]

Wire fuzzer (issue #8): generated JSON-RPC lines (valid requests with known answers, lines the
spec leaves unanswered, random and mutated bytes) through the real broker, and through the built
CLI over stdio and WebSocket. Checks: exactly one answer per valid request, each the spec's;
nothing else answered; output valid under codex's schemas; no actor or memory growth; exit 0.

  --inputs N   generated lines in all (default 1000000): 80% in process, 12% stdio, 8% WebSocket
  --seed S     seed (default: random, printed); the same seed replays the same inputs
  --only MODE  in-process | stdio | websocket
  --path P     with --seed and --only in-process: replay fast-check's shrunk counterexample
  -h, --help   this text
`;

const log = (text: string) => console.error(text);

async function inProcess(lines: number, seed: number, path: string | undefined): Promise<void> {
  const fixture = wireFixture();
  const totals = emptyTotals();
  const runs = Math.max(1, Math.ceil(lines / 30));
  const started = Date.now();
  const timer = setInterval(
    () =>
      log(
        `  in-process: ${totals.runs}/${runs} sequences, ${totals.lines} lines, ${fixture.broker.system.stats().actors} actors, heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`,
      ),
    10_000,
  );
  try {
    await fc.assert(wirePropertyOn(fixture, totals), { numRuns: runs, seed, ...(path ? { path } : {}) });
  } catch (e) {
    const err = e as Error & { cause?: Error };
    log(err.message);
    if (err.cause) log(err.cause.message);
    log(
      `reproduce: npm run fuzz -- --only in-process --seed ${seed} --inputs ${lines} (add --path from the report above to replay the shrunk case)`,
    );
    throw new Error('in-process property failed', { cause: e });
  } finally {
    clearInterval(timer);
    await fixture.dispose();
  }
  log(
    `in-process: ${totals.runs} sequences, ${totals.lines} lines (${totals.requests} valid, ${totals.silent} spec-silent, ` +
      `${totals.noise} noise), ${totals.answers} answers, ${((Date.now() - started) / 1000).toFixed(0)} s: ok`,
  );
}

function childSummary(mode: string, r: ChildFuzzResult, seed: number): void {
  const rss = r.rss.map((s) => `${s.label} ${(s.kib / 1024).toFixed(0)} MiB`).join(', ');
  log(`${mode} seed ${seed}: ${r.lines} lines, ${r.report.answers} answers, RSS ${rss}`);
  const faults = [...r.report.problems, ...r.notes];
  if (faults.length > 0) {
    for (const f of faults) log(`  ${f}`);
    log(`reproduce: npm run fuzz -- --only ${mode} --seed ${seed} --inputs ${r.lines}`);
    throw new Error(`${mode} fuzz failed`);
  }
}

/** Children of at most 50 000 lines each (seed, seed+1, ...), so one child's run stays short. */
async function children(mode: 'stdio' | 'websocket', lines: number, seed: number): Promise<void> {
  const perChild = 50_000;
  for (let done = 0, i = 0; done < lines; done += perChild, i++) {
    const n = Math.min(perChild, lines - done);
    const childSeed = seed + i;
    const result =
      mode === 'stdio'
        ? await fuzzStdioChild({ seed: childSeed, lines: n, maxLineBytes: 64 * 1024, hugeLineMiB: 256 })
        : await fuzzWebSocketChild({ seed: childSeed, lines: n, maxLineBytes: 64 * 1024, connections: 8 });
    childSummary(mode, result, childSeed);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      inputs: { type: 'string', default: '1000000' },
      seed: { type: 'string' },
      only: { type: 'string' },
      path: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const inputs = Number(values.inputs);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const only = values.only;
  if (
    !Number.isInteger(inputs) ||
    inputs < 1 ||
    !Number.isInteger(seed) ||
    (only && !['in-process', 'stdio', 'websocket'].includes(only))
  ) {
    process.stderr.write(HELP);
    return 2;
  }
  log(`wire fuzz: ${inputs} inputs, seed ${seed}${only ? `, only ${only}` : ''}`);
  const share = (mode: string, part: number) =>
    only ? (only === mode ? inputs : 0) : Math.round(inputs * part);
  try {
    if (share('in-process', 0.8) > 0) await inProcess(share('in-process', 0.8), seed, values.path);
    if (share('stdio', 0.12) > 0) await children('stdio', share('stdio', 0.12), seed);
    if (share('websocket', 0.08) > 0) await children('websocket', share('websocket', 0.08), seed);
  } catch (e) {
    log(`FAILED: ${(e as Error).message} (seed ${seed})`);
    return 1;
  }
  log(`wire fuzz: all invariants held (seed ${seed})`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    log(String(e));
    process.exit(1);
  },
);
