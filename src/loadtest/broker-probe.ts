/**
 * Broker CPU and memory over time. Child brokers are read from /proc (CPU ticks and resident
 * pages of every pid, summed); an in-process broker shares this process, so the process's own
 * figures are reported, with the heap, and the report says so.
 */
import { readFileSync } from 'node:fs';
import type { BrokerSample } from './results.js';

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const TICKS_PER_SEC = 100;
const PAGE_BYTES = 4096;

interface Reading {
  cpuMs: number;
  rssBytes: number;
  heapUsedBytes: number | null;
}

export class BrokerProbe {
  readonly samples: BrokerSample[] = [];
  /** Every broker process sampled at least once (stdio children come and go). */
  readonly pidsSeen = new Set<number>();
  private last: { atMs: number; cpuMs: Map<number, number> } | undefined;

  constructor(
    /** The broker processes, or this process for an in-process broker. */
    private readonly pids: (() => number[]) | 'this process',
    private readonly now: () => number,
    private readonly startMs: number,
  ) {}

  /** Takes one sample; CPU is the time used since the previous sample, per pid still alive. */
  sample(): void {
    const atMs = this.now();
    const readings = new Map<number, Reading>();
    if (this.pids === 'this process') {
      readings.set(process.pid, ownReading());
    } else {
      for (const pid of this.pids()) {
        const r = procReading(pid);
        if (!r) continue;
        readings.set(pid, r);
        this.pidsSeen.add(pid);
      }
    }
    let cpuMs = 0;
    let rssBytes = 0;
    let heapUsedBytes: number | null = null;
    for (const [pid, r] of readings) {
      cpuMs += r.cpuMs - (this.last?.cpuMs.get(pid) ?? r.cpuMs);
      rssBytes += r.rssBytes;
      if (r.heapUsedBytes !== null) heapUsedBytes = (heapUsedBytes ?? 0) + r.heapUsedBytes;
    }
    if (this.last) {
      const wallMs = atMs - this.last.atMs;
      this.samples.push({
        tMs: atMs - this.startMs,
        cpuPercent: wallMs > 0 ? (100 * cpuMs) / wallMs : 0,
        rssBytes,
        heapUsedBytes,
      });
    }
    this.last = { atMs, cpuMs: new Map([...readings].map(([pid, r]) => [pid, r.cpuMs])) };
  }
}

function ownReading(): Reading {
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  return { cpuMs: (cpu.user + cpu.system) / 1000, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed };
}

/** utime and stime (fields 14 and 15 of /proc/<pid>/stat) and resident pages; undefined once gone. */
function procReading(pid: number): Reading | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const resident = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return { cpuMs: (ticks * 1000) / TICKS_PER_SEC, rssBytes: resident * PAGE_BYTES, heapUsedBytes: null };
  } catch {
    return undefined;
  }
}
