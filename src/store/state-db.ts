/**
 * Gatehouse's SQLite state file, `$CODEX_HOME/state_5.sqlite`: the name and tables codex uses
 * (spec A.2, B.3). Every thread that needs it opens its own connection; WAL lets readers in several
 * threads run while one writes, and the busy timeout turns a brief lock into a short wait instead
 * of an error.
 */
import { closeSync, openSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';

export const STATE_DB_FILE = 'state_5.sqlite';

export function stateDbPath(codexHome: string): string {
  return join(codexHome, STATE_DB_FILE);
}

/** `busyTimeoutMs`: how long a statement waits for another connection's lock before failing. */
export function openStateDb(path: string, { busyTimeoutMs = 5000 } = {}): Database.Database {
  let db: Database.Database | undefined;
  try {
    // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
    closeSync(openSync(path, 'a', 0o600));
    // The timeout applies from the first statement: switching to WAL needs a lock too.
    db = new Database(path, { timeout: busyTimeoutMs });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    return db;
  } catch (e) {
    db?.close();
    throw new Error(describeStorageError(e, dirname(path)), { cause: e });
  }
}

/**
 * A storage failure in words a user can act on: the error's own message, its code (SQLITE_BUSY,
 * EROFS, ...) when the message lacks it, and a full file system named as the cause when it is
 * one, since SQLite reports a missing page of its -shm index as a mere "disk I/O error".
 */
export function describeStorageError(e: unknown, dir: string): string {
  const message = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: unknown }).code;
  const coded = typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
  if (/SQLITE_FULL|ENOSPC/.test(coded) || !noSpaceLeft(dir)) return coded;
  return `${coded}; no space left on the file system of ${dir} (ENOSPC)`;
}

/** Whether the file system holding `dir` is full; false when that cannot be told. */
export function noSpaceLeft(dir: string): boolean {
  try {
    return statfsSync(dir).bavail === 0;
  } catch {
    return false;
  }
}
