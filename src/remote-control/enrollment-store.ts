/**
 * The `remote_control_enrollments` table (spec B.3): the durable half of an enrollment. Only the
 * server's identity and the user's enabled preference are written; the short-lived
 * `remote_control_token` and its expiry live in memory only, so nothing here is a secret.
 *
 * The table is used from the main thread, a few times per enrollment (never per message), so it
 * gets its own connection with a short busy timeout: a database another process holds locked
 * fails the step quickly with a reason instead of stalling every local client behind it.
 */
import type Database from 'better-sqlite3';

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
    this.run('write', () =>
      this.upsert.run(...keyArgs(key), e.serverId, e.environmentId, e.serverName, nowSeconds),
    );
  }

  /** Persists the preference; a key without a row has nothing to remember it on (codex does the same). */
  setEnabled(key: EnrollmentKey, enabled: boolean, nowSeconds = unixSeconds()): void {
    this.run('write', () => this.setFlag.run(enabled ? 1 : 0, nowSeconds, ...keyArgs(key)));
  }

  delete(key: EnrollmentKey): void {
    this.run('write', () => this.remove.run(...keyArgs(key)));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private run<T>(what: 'read' | 'write', step: () => T): T {
    try {
      return step();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new EnrollmentStoreError(
        `cannot ${what} the remote control enrollment in ${this.db.name}: ${(e as Error).message}` +
          (typeof code === 'string' ? ` (${code})` : ''),
      );
    }
  }
}

function keyArgs(key: EnrollmentKey): [string, string, string] {
  return [key.websocketUrl, key.accountId, key.clientName];
}

function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
