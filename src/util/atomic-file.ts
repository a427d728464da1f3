/**
 * Writes a private file so that a crash leaves the old content or the new, never half of either:
 * a temporary file (0600) beside it is written and synced, renamed over the target, and the folder
 * is synced so the rename itself survives. auth.json, the PKCS#11 PIN file and TPM key blobs all
 * go through here. Errors are the file system's own; callers word them without the content.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { threadId } from 'node:worker_threads';

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  // pid and thread make the name unique across the workers that may write the same file.
  const temporary = `${path}.${process.pid}.${threadId}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // The umask cannot widen 0600, but a pre-existing file's mode must not survive the rename.
    chmodSync(temporary, 0o600);
    renameSync(temporary, path);
  } catch (e) {
    rmSync(temporary, { force: true });
    throw e;
  }
  const folder = openSync(dirname(path), 'r');
  try {
    fsyncSync(folder);
  } finally {
    closeSync(folder);
  }
}
