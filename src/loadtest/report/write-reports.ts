/**
 * Writes a run's JSON and HTML reports where `gatehouse loadtest --json/--html` asked, creating
 * the folders. Each file is written beside its target and renamed over it, so a reader (or a run
 * killed half-way) never sees half a report.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { LoadtestResults } from '../results.js';
import { renderHtml } from './html.js';

function writeReplacing(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, content);
    renameSync(temporary, path);
  } catch (e) {
    rmSync(temporary, { force: true });
    throw e;
  }
}

/** Writes the reports asked for; returns the absolute paths written, JSON first. */
export function writeReports(r: LoadtestResults, paths: { json?: string; html?: string }): string[] {
  const written: string[] = [];
  if (paths.json !== undefined) {
    const path = resolve(paths.json);
    writeReplacing(path, `${JSON.stringify(r, null, 2)}\n`);
    written.push(path);
  }
  if (paths.html !== undefined) {
    const path = resolve(paths.html);
    writeReplacing(path, renderHtml(r));
    written.push(path);
  }
  return written;
}
