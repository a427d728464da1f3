/**
 * Gatehouse's SQLite state file, `$CODEX_HOME/state_5.sqlite`: the name and tables codex uses
 * (spec A.2, B.3). Every thread that needs it opens its own connection; WAL lets readers in several
 * threads run while one writes, and the busy timeout turns a brief lock into a short wait instead
 * of an error.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export const STATE_DB_FILE = 'state_5.sqlite';

export function stateDbPath(codexHome: string): string {
  return join(codexHome, STATE_DB_FILE);
}

/** `busyTimeoutMs`: how long a statement waits for another connection's lock before failing. */
export function openStateDb(path: string, { busyTimeoutMs = 5000 } = {}): Database.Database {
  // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
  closeSync(openSync(path, 'a', 0o600));
  // The timeout applies from the first statement: switching to WAL needs a lock too.
  const db = new Database(path, { timeout: busyTimeoutMs });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  return db;
}
