/**
 * The live progress bar on stderr (cli-progress). On a terminal it redraws in place; otherwise
 * (CI logs, a pipe) it prints a line every few seconds, so a long run still shows it is alive.
 */
import { SingleBar } from 'cli-progress';
import type { Phase, ProgressState } from './run-loadtest.js';

const PHASE_LABEL: Record<Phase, string> = {
  starting: 'starting  ',
  handshakes: 'handshakes',
  work: 'work      ',
  drain: 'drain     ',
  done: 'done      ',
};

export class ProgressBar {
  private readonly bar = new SingleBar({
    stream: process.stderr,
    format:
      '{phase} [{bar}] {percentage}% | {ready}/{clients} clients | {completed} ok {errors} err | {perSec}/s p99 {p99} ms',
    barsize: 24,
    hideCursor: true,
    noTTYOutput: true,
    notTTYSchedule: 5_000,
    fps: 4,
  });
  private started = false;

  update(s: ProgressState): void {
    const payload = {
      phase: PHASE_LABEL[s.phase],
      ready: s.clientsReady,
      clients: s.clients,
      completed: s.completed,
      errors: s.errors,
      perSec: Math.round(s.perSec),
      p99: s.p99Ms === null ? '-' : s.p99Ms.toFixed(1),
    };
    const value = Math.round(s.fraction * 1000);
    if (!this.started) {
      this.bar.start(1000, value, payload);
      this.started = true;
    } else {
      this.bar.update(value, payload);
    }
  }

  stop(): void {
    if (this.started) this.bar.stop();
  }
}
