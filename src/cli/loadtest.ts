/** `gatehouse loadtest`: run simulated clients, print the table, write the JSON and HTML reports. */
import { LOADTEST_USAGE, LoadtestUsageError, parseLoadtestArgs } from '../loadtest/options.js';
import { ProgressBar } from '../loadtest/progress.js';
import { renderTable } from '../loadtest/report/table.js';
import { writeReports } from '../loadtest/report/write-reports.js';
import { runLoadtest } from '../loadtest/run-loadtest.js';

export async function runLoadtestCommand(args: string[]): Promise<number> {
  let options;
  try {
    options = parseLoadtestArgs(args);
  } catch (e) {
    if (!(e instanceof LoadtestUsageError)) throw e;
    process.stderr.write(
      `gatehouse loadtest: ${e.message}\n\nRun 'gatehouse loadtest --help' for the options.\n`,
    );
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(LOADTEST_USAGE);
    return 0;
  }
  const bar = options.progress ? new ProgressBar() : undefined;
  let results;
  try {
    results = await runLoadtest(options, (state) => bar?.update(state));
  } finally {
    bar?.stop();
  }
  process.stdout.write(renderTable(results));
  const written = writeReports(results, {
    ...(options.jsonPath !== null ? { json: options.jsonPath } : {}),
    ...(options.htmlPath !== null ? { html: options.htmlPath } : {}),
  });
  for (const path of written) process.stdout.write(`report: ${path}\n`);

  const attempts = results.totals.completed + results.totals.errors;
  const errorRate = attempts === 0 ? 0 : results.totals.errors / attempts;
  if (results.timedOut) {
    process.stderr.write(`gatehouse loadtest: the run hit its --timeout of ${options.timeoutMs} ms\n`);
    return 1;
  }
  if (results.soak && results.soak.failures.length > 0) {
    for (const failure of results.soak.failures)
      process.stderr.write(`gatehouse loadtest: soak: ${failure}\n`);
    return 1;
  }
  if (errorRate > options.maxErrorRate) {
    process.stderr.write(
      `gatehouse loadtest: ${(errorRate * 100).toFixed(2)}% of operations failed, above --max-error-rate ${options.maxErrorRate}\n`,
    );
    return 1;
  }
  return 0;
}
