/**
 * The `device_key_bindings` table (spec A.2): which account user and client each key was created
 * for, so a key signs only payloads naming them. codex's columns, in codex's state file.
 */
import type Database from 'better-sqlite3';

export interface DeviceKeyBinding {
  keyId: string;
  accountUserId: string;
  clientId: string;
}

interface BindingRow {
  account_user_id: string;
  client_id: string;
}

export class BindingStore {
  private readonly select: Database.Statement<[string], BindingRow>;
  private readonly upsert: Database.Statement<[string, string, string, number, number]>;
  private readonly remove: Database.Statement<[string]>;

  constructor(db: Database.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS device_key_bindings (
      key_id TEXT PRIMARY KEY NOT NULL,
      account_user_id TEXT NOT NULL,
      client_id TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    )`);
    this.select = db.prepare('SELECT account_user_id, client_id FROM device_key_bindings WHERE key_id = ?');
    this.upsert = db.prepare(
      `INSERT INTO device_key_bindings (key_id, account_user_id, client_id, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(key_id) DO UPDATE SET account_user_id = excluded.account_user_id,
         client_id = excluded.client_id, updated_at = excluded.updated_at`,
    );
    this.remove = db.prepare('DELETE FROM device_key_bindings WHERE key_id = ?');
  }

  get(keyId: string): DeviceKeyBinding | undefined {
    const row = this.select.get(keyId);
    return row && { keyId, accountUserId: row.account_user_id, clientId: row.client_id };
  }

  put(binding: DeviceKeyBinding, nowSeconds = Math.floor(Date.now() / 1000)): void {
    this.upsert.run(binding.keyId, binding.accountUserId, binding.clientId, nowSeconds, nowSeconds);
  }

  delete(keyId: string): void {
    this.remove.run(keyId);
  }
}
