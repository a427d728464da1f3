/**
 * A child process spoken to in JSON lines over stdio, with the bench's safety rails: every child
 * is registered so `killAll()` can end it, stderr is kept (bounded) for failure reports, and every
 * wait has a deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { onLines } from './lines.js';

const live = new Set<ChildProcess>();
const STDERR_KEEP = 16 * 1024;

export class BenchError extends Error {}

export interface SpawnSpec {
  label: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export class LineChild {
  readonly proc: ChildProcess;
  private stderr = '';
  /** Settles with the exit code (null when killed or never started). */
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  /** Called with every stdout line; the owner swaps it per measurement. */
  onLine: (line: string) => void = () => {};
  /** Called once after each stdout chunk's lines, so replies can be batched into one write. */
  onChunkEnd: () => void = () => {};

  constructor(readonly spec: SpawnSpec) {
    this.proc = spawn(process.execPath, spec.args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: spec.env ?? process.env,
    });
    live.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code) => {
        live.delete(this.proc);
        this.exitCode = code;
        resolve(code);
      });
      this.proc.once('error', (e) => {
        live.delete(this.proc);
        this.stderr += `\nspawn error: ${e.message}`;
        this.exitCode = null;
        resolve(null);
      });
    });
    this.proc.stdin?.on('error', () => {}); // EPIPE if the child dies: reported through exit
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stderr?.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-STDERR_KEEP);
    });
    onLines(
      this.proc.stdout!,
      (line) => this.onLine(line),
      () => this.onChunkEnd(),
    );
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  write(text: string): void {
    if (!this.alive) throw this.failure('child exited while the bench was writing to it');
    this.proc.stdin!.write(text);
  }

  /** Closes stdin and waits for the exit; a child that overstays `timeoutMs` is killed and reported. */
  async close(timeoutMs = 10_000): Promise<number | null> {
    this.proc.stdin?.end();
    const code = await withTimeout(this.exited, timeoutMs, () => {
      this.kill();
      return this.failure(`did not exit within ${timeoutMs} ms of stdin closing`);
    });
    if (code !== 0) throw this.failure(`exited with code ${String(code)}`);
    return code;
  }

  kill(): void {
    if (this.alive) this.proc.kill('SIGKILL');
  }

  failure(message: string): BenchError {
    const tail = this.stderr.trim();
    return new BenchError(
      `${this.spec.label}: ${message}${tail ? `\n--- child stderr (tail) ---\n${tail}` : ''}`,
    );
  }
}

/** Registers a child started some other way (a `fork`), so that `killAll()` ends it too. */
export function track(proc: ChildProcess): void {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
}

/** Kills every child the bench started that is still running. */
export function killAll(): void {
  for (const proc of live) proc.kill('SIGKILL');
  live.clear();
}

/** Resolves like `promise`, or rejects with `onTimeout()` after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
