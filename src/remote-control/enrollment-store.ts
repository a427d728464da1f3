/**
 * The `remote_control_enrollments` table (spec B.3): the durable half of an enrollment. Only the
 * server's identity and the user's enabled preference are written; the short-lived
 * `remote_control_token` and its expiry live in memory only, so nothing here is a secret.
 *
 * The table is used from the main thread, a few times per enrollment (never per message), so it
 * gets its own connection with a short busy timeout: a database another process holds locked
 * fails the step quickly with a reason instead of stalling every local client behind it.
 */
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { describeStorageError } from '../store/state-db.js';

/** Rows are keyed by where the server connects, for whom, and for which app-server client. */
export interface EnrollmentKey {
  websocketUrl: string;
  accountId: string;
  clientName: string;
}

export interface Enrollment {
  serverId: string;
  environmentId: string;
  serverName: string;
  /** The persisted preference: true after a persisted enable, false after a persisted disable, null never set. */
  enabled: boolean | null;
}

/** Every failure of the store, worded for a status reason or a JSON-RPC error. */
export class EnrollmentStoreError extends Error {
  override name = 'EnrollmentStoreError';
}

interface EnrollmentRow {
  server_id: string;
  environment_id: string;
  server_name: string;
  remote_control_enabled: number | null;
}

const KEY = 'websocket_url = ? AND account_id = ? AND app_server_client_name = ?';

export class EnrollmentStore {
  /**
   * The preference of rows deleted because the backend forgot their server (spec B.3 deletes the
   * row, then enrolls again). The new row takes it over: the user's enable, often persisted just
   * before the refresh that met the 404, must survive the re-enrollment, or a restart would not
   * reconnect. Memory only: a crash between delete and put loses the row as well.
   */
  private readonly carried = new Map<string, number | null>();
  private readonly select: Database.Statement<[string, string, string], EnrollmentRow>;
  private readonly upsert: Database.Statement<[string, string, string, string, string, string, number]>;
  private readonly setFlag: Database.Statement<[number, number, string, string, string]>;
  private readonly remove: Database.Statement<[string, string, string]>;

  constructor(private readonly db: Database.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS remote_control_enrollments (
      websocket_url TEXT NOT NULL,
      account_id TEXT NOT NULL,
      app_server_client_name TEXT NOT NULL,
      server_id TEXT NOT NULL,
      environment_id TEXT NOT NULL,
      server_name TEXT NOT NULL,
      updated_at INTEGER NOT NULL,
      remote_control_enabled INTEGER,
      PRIMARY KEY (websocket_url, account_id, app_server_client_name)
    )`);
    this.select = db.prepare(
      `SELECT server_id, environment_id, server_name, remote_control_enabled
       FROM remote_control_enrollments WHERE ${KEY}`,
    );
    // A new enrollment keeps the row's preference: enrolling again is not a change of mind.
    this.upsert = db.prepare(
      `INSERT INTO remote_control_enrollments (websocket_url, account_id, app_server_client_name,
         server_id, environment_id, server_name, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(websocket_url, account_id, app_server_client_name) DO UPDATE SET
         server_id = excluded.server_id, environment_id = excluded.environment_id,
         server_name = excluded.server_name, updated_at = excluded.updated_at`,
    );
    this.setFlag = db.prepare(
      `UPDATE remote_control_enrollments SET remote_control_enabled = ?, updated_at = ? WHERE ${KEY}`,
    );
    this.remove = db.prepare(`DELETE FROM remote_control_enrollments WHERE ${KEY}`);
  }

  get(key: EnrollmentKey): Enrollment | undefined {
    const row = this.run('read', () => this.select.get(...keyArgs(key)));
    if (!row) return undefined;
    return {
      serverId: row.server_id,
      environmentId: row.environment_id,
      serverName: row.server_name,
      enabled: row.remote_control_enabled === null ? null : row.remote_control_enabled !== 0,
    };
  }

  /** Records a (new) enrollment for the key; the enabled preference of an existing row stays. */
  put(key: EnrollmentKey, e: Omit<Enrollment, 'enabled'>, nowSeconds = unixSeconds()): void {
    const carried = this.carried.get(carryKey(key));
    // One transaction: a crash or a full disk leaves the old state or the new, never a row without its preference.
    this.run('write', () =>
      this.db.transaction(() => {
        this.upsert.run(...keyArgs(key), e.serverId, e.environmentId, e.serverName, nowSeconds);
        if (carried !== undefined && carried !== null) this.setFlag.run(carried, nowSeconds, ...keyArgs(key));
      })(),
    );
    this.carried.delete(carryKey(key));
  }

  /** Persists the preference; a key without a row has nothing to remember it on (codex does the same). */
  setEnabled(key: EnrollmentKey, enabled: boolean, nowSeconds = unixSeconds()): void {
    const changed = this.run('write', () => this.setFlag.run(enabled ? 1 : 0, nowSeconds, ...keyArgs(key)));
    // Between a delete and the re-enrollment's put, the preference waits for the new row.
    if (changed.changes === 0 && this.carried.has(carryKey(key)))
      this.carried.set(carryKey(key), enabled ? 1 : 0);
  }

  /** Deletes the row (its server is gone); its preference is carried to the row `put` makes next. */
  delete(key: EnrollmentKey): void {
    const row = this.run('write', () =>
      this.db.transaction(() => {
        const existing = this.select.get(...keyArgs(key));
        this.remove.run(...keyArgs(key));
        return existing;
      })(),
    );
    if (row) this.carried.set(carryKey(key), row.remote_control_enabled);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private run<T>(what: 'read' | 'write', step: () => T): T {
    try {
      return step();
    } catch (e) {
      throw new EnrollmentStoreError(
        `cannot ${what} the remote control enrollment in ${this.db.name}: ${describeStorageError(e, dirname(this.db.name))}`,
      );
    }
  }
}

function keyArgs(key: EnrollmentKey): [string, string, string] {
  return [key.websocketUrl, key.accountId, key.clientName];
}

function carryKey(key: EnrollmentKey): string {
  return JSON.stringify(keyArgs(key));
}

function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
