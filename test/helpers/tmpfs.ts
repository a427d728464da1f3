/**
 * A small tmpfs for storage chaos: a CODEX_HOME that can be filled to the last byte, remounted
 * read-only and back, and made immutable. Mounting needs root (CI runs as root); when it fails the
 * test fails with the reason, since a storage test that quietly ran on the real disk would prove
 * nothing. Unmounted when the test ends, whatever happened.
 */
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmdirSync,
  rmSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { widerThanPrivate } from './file-modes.js';

const FILLER = '.chaos-filler';

/** Runs a system command; on failure throws with its stderr, which says why. */
function run(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr || (e as Error).message}`, {
      cause: e,
    });
  }
}

export class Tmpfs {
  /** Faults this mount injected (fills, read-only remounts, immutable flags). */
  faults = 0;
  private mounted = true;

  private constructor(readonly path: string) {}

  /** Mounts a tmpfs of `sizeKiB` (mode 0700) on a fresh folder; `t.after` unmounts it. */
  static mount(t: { after(fn: () => void): void }, sizeKiB: number): Tmpfs {
    const path = mkdtempSync(join(tmpdir(), 'gatehouse-tmpfs-'));
    try {
      run('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0700`, 'tmpfs', path]);
    } catch (e) {
      rmdirSync(path);
      throw new Error(
        `cannot mount a tmpfs for CODEX_HOME (storage chaos needs root): ${(e as Error).message}`,
        { cause: e },
      );
    }
    const fs = new Tmpfs(path);
    t.after(() => fs.unmount());
    return fs;
  }

  /** Bytes still free for files. */
  get freeBytes(): number {
    const s = statfsSync(this.path);
    return s.bavail * s.bsize;
  }

  /** Writes a filler file until the file system refuses (ENOSPC); returns the bytes written. */
  fill(): number {
    this.faults++;
    const fd = openSync(join(this.path, FILLER), 'a', 0o600);
    const chunk = Buffer.alloc(64 * 1024, 0xaa);
    let written = 0;
    try {
      for (;;) {
        try {
          written += writeSync(fd, chunk);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
      // The last partial page too: 64 KiB writes stop short of it.
      for (const size of [4096, 512, 1]) {
        for (;;) {
          try {
            written += writeSync(fd, chunk.subarray(0, size));
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw e;
          }
        }
      }
    } finally {
      closeSync(fd);
    }
    return written;
  }

  /** Frees what `fill` took. */
  unfill(): void {
    rmSync(join(this.path, FILLER), { force: true });
  }

  /**
   * Remounts read-only. Linux refuses (EBUSY) while any file on it is open for writing, so this
   * works only while Gatehouse holds no file open there: the error says so.
   */
  readOnly(): void {
    run('mount', ['-o', 'remount,ro', this.path]);
    this.faults++;
  }

  writable(): void {
    run('mount', ['-o', 'remount,rw', this.path]);
  }

  /** `chattr +i` (or `-i`) on paths inside the mount: no new links, no opens for writing. */
  immutable(paths: string[], on: boolean): void {
    if (on) this.faults++;
    run('chattr', [on ? '+i' : '-i', ...paths]);
  }

  /** Clears every flag and unmounts (lazily if a killed child still holds a file); idempotent. */
  unmount(): void {
    if (!this.mounted) return;
    this.mounted = false;
    try {
      run('chattr', ['-R', '-i', this.path]);
    } catch {
      // nothing was immutable, or chattr is absent; the unmount below does not care
    }
    try {
      run('umount', [this.path]);
    } catch {
      run('umount', ['-l', this.path]);
    }
    rmdirSync(this.path);
  }
}

/** Prints (never asserts: the secrets audit owns that) what `widerThanPrivate` finds under `home`. */
export function reportModes(t: { diagnostic(message: string): void }, home: string): void {
  const checked = readdirSync(home, { recursive: true }).length;
  const wide = widerThanPrivate(home, [FILLER]);
  const line = `files not 0600 / folders not 0700 under CODEX_HOME (${checked} checked): ${wide.join(', ') || 'none'}`;
  t.diagnostic(line);
  console.error(line);
}
