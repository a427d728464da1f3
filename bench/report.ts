/**
 * What every part prints and writes: number formats, fixed-width table rows on stdout, progress
 * lines on stderr, and the JSON files under bench-results/ (each stamped with the mode and the
 * load average, since other work on the 2 shared cores moves the figures).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';

export const int = (n: number): string => Math.round(n).toLocaleString('en-US');
export const ms = (n: number): string => (n < 1 ? n.toFixed(3) : n < 100 ? n.toFixed(2) : n.toFixed(1));
export const us = (n: number): string => (n < 100 ? n.toFixed(1) : int(n));
/** A latency given in ms, shown in µs below a millisecond. */
export const latency = (msValue: number): string =>
  msValue < 1 ? `${us(msValue * 1000)} µs` : `${ms(msValue)} ms`;
export const ratio = (n: number): string => `${n.toFixed(3)}x`;
export const rate = (n: number): string => (n < 100 ? n.toFixed(1) : int(n));
/** Kibibytes: the idle-connection target's "16 KB" is 16,384 bytes. */
export const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`;

/** The first cell left-aligned, the others right-aligned, each padded to its width. */
export function row(cells: string[], widths: number[]): string {
  return cells
    .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
    .join('  ')
    .trimEnd();
}

export function progress(message: string): void {
  process.stderr.write(`  .. ${message}\n`);
}

/** The 1-minute load average now. */
export function load(): number {
  return loadavg()[0] ?? 0;
}

export function environment(): Record<string, unknown> {
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
  };
}

export const RESULTS_DIR = resolve('bench-results');

/** Writes `bench-results/<name>.json` and says so on stdout. */
export function writeResults(name: string, mode: string, body: object): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}.json`);
  const stamped = { when: new Date().toISOString(), mode, loadAverage: load(), ...body };
  writeFileSync(file, JSON.stringify(stamped, null, 2) + '\n');
  console.log(`\nFigures written to ${file}`);
}
