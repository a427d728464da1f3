/**
 * Shared by the storage chaos tests (test/integration/chaos-storage-*.test.ts): the built CLI with
 * remote control against the local backend and SoftHSM2 device keys kept under CODEX_HOME, requests
 * counted in a ChaosTally, and the state database as a second process sees it.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { LocalBackend } from '../../src/backend/local-backend.js';
import type { RpcId, RpcMessage, TestClient } from './app-server-process.js';
import type { ChaosTally } from './chaos.js';
import { connectionPayload } from './device-key-cases.js';
import { startRemoteControlServer } from './remote-control.js';

export const KEY_IDS = { accountUserId: 'account-user-1', clientId: 'cli_123' };
export const SOFTHSM_KEY = { ...KEY_IDS, protectionPolicy: 'allow_os_protected_nonextractable' };

/** The CLI on `home`, with SoftHSM2 as its only device-key provider (its token under `home`). */
export function startStorageBroker(
  t: { after(fn: () => Promise<void>): void },
  backend: LocalBackend,
  home: string,
): Promise<TestClient> {
  return startRemoteControlServer(t, backend, { home, extra: ['-c', 'gatehouse.device_key_tpm=off'] });
}

/** Sends a request and counts it: answered with a result, answered with an error, or lost. */
export async function tallied(
  tally: ChaosTally,
  client: TestClient,
  method: string,
  params?: unknown,
): Promise<RpcMessage> {
  tally.sent++;
  let reply: RpcMessage;
  try {
    reply = await client.request(method, params);
  } catch (e) {
    tally.lost++;
    throw e;
  }
  if (reply.error) tally.failed(`${method}: ${reply.error.message}`);
  else tally.succeeded++;
  return reply;
}

/**
 * Requests in flight at once on one client (its `request` reads one answer at a time): each
 * resolves with its answer, or with undefined when the server exits first, which is how a
 * killed broker's connection ends.
 */
export class InFlight {
  private readonly waiting = new Map<RpcId, (m: RpcMessage | undefined) => void>();
  private next = 0;
  /** Requests still in flight when the server exited: their connection closed under them. */
  closedByExit = 0;

  constructor(
    private readonly client: TestClient,
    private readonly tally: ChaosTally,
  ) {
    client.onMessage((m) => {
      if (m.method !== undefined || m.id === undefined || m.id === null) return;
      const resolve = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      resolve?.(m);
    });
    void client.exited.then(() => {
      this.closedByExit += this.waiting.size;
      for (const resolve of this.waiting.values()) resolve(undefined);
      this.waiting.clear();
    });
  }

  get count(): number {
    return this.waiting.size;
  }

  send(method: string, params?: unknown): Promise<RpcMessage | undefined> {
    const id = `in-flight-${this.next++}`;
    this.tally.sent++;
    const answer = new Promise<RpcMessage | undefined>((resolve) => this.waiting.set(id, resolve));
    void this.client.sendRequest(method, params, id);
    return answer.then((m) => {
      if (m?.error) this.tally.failed(`${method}: ${m.error.message}`);
      else if (m) this.tally.succeeded++;
      return m;
    });
  }
}

export function signParams(keyId: string): { keyId: string; payload: unknown } {
  return { keyId, payload: connectionPayload(Math.floor(Date.now() / 1000)) };
}

export interface EnrollmentRow {
  server_id: string;
  environment_id: string;
  remote_control_enabled: number | null;
}

export interface BindingRow {
  key_id: string;
  account_user_id: string;
  client_id: string;
}

export interface PersistedState {
  integrity: string;
  enrollments: EnrollmentRow[];
  bindings: BindingRow[];
}

/** Temporary files an atomic write (auth.json and others) left in `home`: there should be none. */
export function leftoverTemporaries(home: string): string[] {
  return readdirSync(home).filter((name) => name.endsWith('.tmp'));
}

export function stateDb(home: string): string {
  return join(home, 'state_5.sqlite');
}

/** Bytes in the write-ahead log (frames not yet checkpointed into the database file). */
export function walBytes(home: string): number {
  const wal = `${stateDb(home)}-wal`;
  return existsSync(wal) ? statSync(wal).size : 0;
}

function hasTable(db: Database.Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

/**
 * The state database read by this process while the broker may be using it. Not read-only: a
 * read-only connection cannot rebuild the -shm index after a crash (SQLITE_READONLY_RECOVERY).
 * Never the last connection while the broker runs, so closing it checkpoints nothing; after a
 * crash use `readAfterCrash`, which leaves the log for the restarted broker to replay.
 */
export function readPersistedState(home: string): PersistedState {
  return readState(stateDb(home));
}

/**
 * What a killed broker left, read from a copy of the database and its write-ahead log (without
 * the -shm index): opening the copy replays the log as the restarted broker will, while the
 * original files stay as they were for the broker itself.
 */
export function readAfterCrash(home: string): PersistedState {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-crash-copy-'));
  try {
    const copy = join(dir, 'state_5.sqlite');
    copyFileSync(stateDb(home), copy);
    if (existsSync(`${stateDb(home)}-wal`)) copyFileSync(`${stateDb(home)}-wal`, `${copy}-wal`);
    return readState(copy);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function readState(path: string): PersistedState {
  const db = new Database(path, { fileMustExist: true });
  try {
    const integrity = db.pragma('integrity_check', { simple: true }) as string;
    const enrollments = hasTable(db, 'remote_control_enrollments')
      ? (db
          .prepare('SELECT server_id, environment_id, remote_control_enabled FROM remote_control_enrollments')
          .all() as EnrollmentRow[])
      : [];
    const bindings = hasTable(db, 'device_key_bindings')
      ? (db
          .prepare('SELECT key_id, account_user_id, client_id FROM device_key_bindings ORDER BY key_id')
          .all() as BindingRow[])
      : [];
    return { integrity, enrollments, bindings };
  } finally {
    db.close();
  }
}

/** Integrity ok, and a binding row for each key, bound to KEY_IDS. */
export function assertBindingsIntact(state: PersistedState, keyIds: Iterable<string>): void {
  assert.equal(state.integrity, 'ok');
  const bound = new Map(state.bindings.map((b) => [b.key_id, b]));
  for (const keyId of keyIds) {
    assert.deepEqual(
      bound.get(keyId),
      { key_id: keyId, account_user_id: KEY_IDS.accountUserId, client_id: KEY_IDS.clientId },
      `the binding of ${keyId}`,
    );
  }
}

/**
 * Another process's writer, as far as SQLite can tell: a second connection holding the write lock
 * (`BEGIN IMMEDIATE`, what any writer takes first) until `release`. Readers are not blocked in WAL
 * mode; every other writer waits for its busy timeout, then fails with SQLITE_BUSY.
 */
export function holdWriteLock(t: { after(fn: () => void): void }, home: string): { release(): void } {
  const db = new Database(stateDb(home), { fileMustExist: true });
  t.after(() => db.open && db.close());
  db.exec('BEGIN IMMEDIATE');
  return {
    release() {
      if (!db.open) return;
      db.exec('COMMIT');
      db.close();
    },
  };
}

/** Whether the database file has this table yet (read by a connection of this process). */
export function hasStateTable(home: string, table: string): boolean {
  if (!existsSync(stateDb(home))) return false;
  const db = new Database(stateDb(home), { fileMustExist: true });
  try {
    return hasTable(db, table);
  } finally {
    db.close();
  }
}
