/**
 * The plain-text summary `gatehouse loadtest` prints on stdout when a run ends: the run and its
 * options, totals, one row per operation, errors by operation and code, the broker's footprint.
 * Aligned columns and no colours, so it reads the same in a terminal, a CI log or a file.
 */
import type { LoadtestResults } from '../results.js';
import { soakSummary } from '../soak.js';
import {
  describeBroker,
  describeConfig,
  describeEnvironment,
  describeRun,
  ERROR_COLUMNS,
  errorRow,
  OPERATION_COLUMNS,
  operationRow,
  timedOutNotice,
  totalsList,
} from './figures.js';

/**
 * Columns padded to their widest cell, aligned per `align` ('l' or 'r', one letter per column);
 * a left-aligned last column is not padded, so no line ends in blanks.
 */
function alignColumns(rows: readonly (readonly string[])[], align: string): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => {
        if (align[i] === 'r') return cell.padStart(widths[i]!);
        return i === row.length - 1 ? cell : cell.padEnd(widths[i]!);
      })
      .join('  '),
  );
}

export function renderTable(r: LoadtestResults): string {
  const lines: string[] = [describeRun(r), describeConfig(r.config), describeEnvironment(r), ''];
  lines.push(
    ...alignColumns(
      totalsList(r).map((t) => [t.detail ? `  ${t.label}:` : `${t.label}:`, t.value]),
      'll',
    ),
    '',
  );

  if (r.operations.length === 0) lines.push('no operations recorded');
  else lines.push(...alignColumns([[...OPERATION_COLUMNS], ...r.operations.map(operationRow)], 'llrrrrrrrr'));
  lines.push('');

  if (r.errors.length === 0) lines.push('no errors');
  // A code is a number or a local name (`timeout`): left-aligned reads better for both.
  else lines.push(...alignColumns([[...ERROR_COLUMNS], ...r.errors.map(errorRow)], 'llrl'));
  lines.push('', describeBroker(r));
  if (r.soak && r.config.soak) lines.push('', ...soakSummary(r.soak, r.config.soak));
  // Last, where a terminal leaves the eye after a long run.
  const notice = timedOutNotice(r);
  if (notice !== undefined) lines.push('', notice);
  return `${lines.join('\n')}\n`;
}
