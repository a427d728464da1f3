/**
 * What Linux's /proc says about a child broker: its resident memory (VmRSS) while it runs, sampled
 * for a peak, and which processes it is the parent of (an orphan check after it exits).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** VmRSS of a process in bytes, or undefined once it is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Pids of the live processes whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const m = /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'));
      if (m && Number(m[1]) === pid) found.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Whether a process still exists (a zombie counts as gone: it holds no resources). */
export function isAlive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Samples a process's VmRSS every `everyMs` until stopped; keeps the peak. */
export class RssSampler {
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    everyMs = 20,
  ) {
    this.sample();
    // Unref'd: a test that fails before `stop()` must not be kept alive by it.
    this.timer = setInterval(() => this.sample(), everyMs).unref();
  }

  sample(): number {
    const now = rssBytes(this.pid) ?? 0;
    if (now > this.peak) this.peak = now;
    return now;
  }

  /** Starts a new peak from the current figure (after a phase ends). */
  reset(): void {
    this.peak = 0;
    this.sample();
  }

  stop(): number {
    clearInterval(this.timer);
    return this.peak;
  }
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
