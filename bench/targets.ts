/**
 * The Targets table that closes every run (issue 7, part 4): each target's figure, the ceiling it
 * is measured against, the ratio, the target and a verdict, `met` or how far it was missed.
 * Targets are reported, never asserted: a missed target is a finding for the notes, not a failed
 * run. A target whose part did not run (or that nothing measures yet) keeps its row and says
 * `not measured in this run`, so the table always has the same rows in the same order.
 *
 * Adding a target is one `add(spec, measurement)` call in `run.ts`'s `targetsOf`.
 */
import { int, kb, ms, ratio, row } from './report.js';

export type Unit = 'req/s' | 'ms' | 'bytes';

export type Goal =
  /** The figure must be at least `value` (in the row's unit). */
  | { kind: 'at-least'; value: number }
  /** The figure must stay under `value` (in the row's unit). */
  | { kind: 'under'; value: number }
  /** figure / ceiling must be at least `value`. */
  | { kind: 'share-of-ceiling'; value: number };

export interface TargetSpec {
  /** A stable key for the JSON. */
  id: string;
  label: string;
  unit: Unit;
  goal: Goal;
}

export interface Measurement {
  figure: number;
  /** The ceiling measured in the same run, in the figure's unit. */
  ceiling?: { label: string; value: number };
  /** Shown under the table: what the figure is exactly (sizes, which of two measures). */
  note?: string;
}

/** Why a target has no figure in this run. */
export interface NotMeasured {
  notMeasured: string;
}

export interface TargetRow extends TargetSpec {
  figure: number | null;
  ceiling: { label: string; value: number } | null;
  ratio: number | null;
  /** null when not measured. */
  met: boolean | null;
  verdict: string;
  note: string | null;
}

export const NOT_MEASURED = 'not measured in this run';

export class TargetsTable {
  readonly rows: TargetRow[] = [];

  add(spec: TargetSpec, measured: Measurement | NotMeasured): void {
    if ('notMeasured' in measured) {
      this.rows.push({
        ...spec,
        figure: null,
        ceiling: null,
        ratio: null,
        met: null,
        verdict: NOT_MEASURED,
        note: measured.notMeasured,
      });
      return;
    }
    const { figure, ceiling } = measured;
    const share = ceiling ? figure / ceiling.value : null;
    const { met, verdict } = judge(spec, figure, share);
    this.rows.push({
      ...spec,
      figure,
      ceiling: ceiling ?? null,
      ratio: share,
      met,
      verdict,
      note: measured.note ?? null,
    });
  }

  print(): void {
    const w = [58, 14, 14, 8, 16, 24];
    console.log('');
    console.log(row(['Targets (issue 7)', 'figure', 'ceiling', 'ratio', 'target', 'verdict'], w));
    const notes: string[] = [];
    for (const r of this.rows) {
      // Rows with the same note (the same part skipped) share its number.
      const seen = r.note === null ? -1 : notes.indexOf(r.note);
      const mark = r.note === null ? '' : ` [${seen >= 0 ? seen + 1 : notes.push(r.note)}]`;
      console.log(
        row(
          [
            `  ${r.label}${mark}`,
            r.figure === null ? '-' : format(r.unit, r.figure),
            r.ceiling === null ? '-' : format(r.unit, r.ceiling.value),
            r.ratio === null ? '-' : ratio(r.ratio),
            goalText(r),
            r.verdict,
          ],
          w,
        ),
      );
    }
    notes.forEach((n, i) => console.log(`  [${i + 1}] ${n}`));
    const met = this.rows.filter((r) => r.met === true).length;
    const missed = this.rows.filter((r) => r.met === false).length;
    console.log(`  ${met} met, ${missed} missed, ${this.rows.length - met - missed} not measured`);
  }
}

function judge(spec: TargetSpec, figure: number, share: number | null): { met: boolean; verdict: string } {
  const { goal } = spec;
  switch (goal.kind) {
    case 'at-least':
      return figure >= goal.value
        ? { met: true, verdict: 'met' }
        : { met: false, verdict: `missed by ${percent(1 - figure / goal.value)}` };
    case 'share-of-ceiling':
      if (share === null) throw new Error(`target ${spec.id}: a share of the ceiling needs a ceiling`);
      return share >= goal.value
        ? { met: true, verdict: 'met' }
        : { met: false, verdict: `missed by ${percent(1 - share / goal.value)}` };
    case 'under': {
      if (figure < goal.value) return { met: true, verdict: 'met' };
      const over = figure - goal.value;
      const by =
        spec.unit === 'ms' ? `${ms(over)} ms` : `${format(spec.unit, over)} (${percent(over / goal.value)})`;
      return { met: false, verdict: `missed by ${by}` };
    }
  }
}

function goalText(r: TargetRow): string {
  const { goal } = r;
  switch (goal.kind) {
    case 'at-least':
      return `≥ ${goalValue(r.unit, goal.value)}`;
    case 'under':
      return `< ${goalValue(r.unit, goal.value)}`;
    case 'share-of-ceiling':
      return `≥ ${goal.value.toFixed(2)}x ceiling`;
  }
}

function format(unit: Unit, value: number): string {
  switch (unit) {
    case 'req/s':
      return `${int(value)} req/s`;
    case 'ms':
      return `${ms(value)} ms`;
    case 'bytes':
      return kb(value);
  }
}

/** Targets are round numbers: no decimals. */
function goalValue(unit: Unit, value: number): string {
  return unit === 'bytes' ? `${int(value / 1024)} KB` : `${int(value)} ${unit}`;
}

const percent = (x: number): string => `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
