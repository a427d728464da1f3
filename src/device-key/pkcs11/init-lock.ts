/**
 * A lock file serialising provider start-up (C_Initialize, finding or initialising the token)
 * across the worker threads of one process and across processes sharing a PIN file.
 *
 * Worker threads share no memory unless it is handed to them, and processes share nothing but
 * the file system, so an O_EXCL file next to the PIN file is the one primitive both have. Without
 * it, two workers starting on a fresh machine would both pick the same free slot, and the loser
 * would overwrite the PIN file with PINs the token never saw.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { platformError } from '../errors.js';

export interface LockTiming {
  /** How long to wait for another holder before giving up. */
  timeoutMs: number;
  /** A lock older than this is taken to be left by a crash, whoever wrote it. */
  staleMs: number;
  pollMs: number;
}

const DEFAULT_TIMING: LockTiming = { timeoutMs: 20_000, staleMs: 60_000, pollMs: 10 };

export async function withInitLock<T>(
  lockPath: string,
  work: () => T,
  timing: LockTiming = DEFAULT_TIMING,
): Promise<T> {
  const deadline = Date.now() + timing.timeoutMs;
  while (!tryAcquire(lockPath)) {
    if (isStale(lockPath, timing.staleMs)) {
      // Two waiters may both judge the same lock stale; the second removal can then hit the
      // first waiter's fresh lock. Only a crash leaves a stale lock, so that window is accepted.
      rmSync(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw platformError(`PKCS#11 timed out waiting for lock ${lockPath}`);
    await sleep(timing.pollMs);
  }
  try {
    return work();
  } finally {
    rmSync(lockPath, { force: true });
  }
}

function tryAcquire(lockPath: string): boolean {
  let fd: number;
  try {
    fd = openSync(lockPath, 'wx', 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    throw platformError(`PKCS#11 lock ${lockPath} cannot be created (${code ?? 'failed'})`);
  }
  try {
    writeSync(fd, String(process.pid));
  } finally {
    closeSync(fd);
  }
  return true;
}

/** Stale when its writer's process is gone, or when it is older than any start-up takes. */
function isStale(lockPath: string, staleMs: number): boolean {
  try {
    const ageMs = Date.now() - statSync(lockPath).mtimeMs;
    if (ageMs > staleMs) return true;
    const pid = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    // An empty file is a holder between creating and writing it, not a dead one.
    if (!Number.isSafeInteger(pid) || pid <= 0) return false;
    return !processAlive(pid);
  } catch {
    return false; // removed meanwhile: the next attempt will tell
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
