/**
 * The enrollment table across a re-enrollment (spec B.3: the row of a server the backend forgot
 * is deleted, then a new one stored): the user's persisted preference moves to the new row, as
 * the storage chaos found it did not; and a failed write leaves the row as it was.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { EnrollmentStore, type EnrollmentKey } from '../../src/remote-control/enrollment-store.js';
import { openStateDb } from '../../src/store/state-db.js';

const KEY: EnrollmentKey = { websocketUrl: 'wss://example.test/ws', accountId: 'acct-1', clientName: 'host' };
const server = (n: number) => ({ serverId: `srv_${n}`, environmentId: `env_${n}`, serverName: 'box' });

function store(t: { after(fn: () => void): void }): { store: EnrollmentStore; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-enrollments-'));
  const path = join(dir, 'state_5.sqlite');
  const opened = new EnrollmentStore(openStateDb(path, { busyTimeoutMs: 0 }));
  t.after(() => {
    opened.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store: opened, path };
}

test('a re-enrollment keeps the preference of the row it replaces', (t) => {
  const { store: s } = store(t);
  s.put(KEY, server(1));
  s.setEnabled(KEY, true);
  s.delete(KEY);
  assert.equal(s.get(KEY), undefined, 'the forgotten server is gone');
  s.put(KEY, server(2));
  assert.deepEqual(s.get(KEY), { ...server(2), enabled: true });
});

test('a preference set between the delete and the new row is the one kept', (t) => {
  const { store: s } = store(t);
  s.put(KEY, server(1));
  s.setEnabled(KEY, true);
  s.delete(KEY);
  s.setEnabled(KEY, false);
  s.put(KEY, server(2));
  assert.equal(s.get(KEY)?.enabled, false);
});

test('a carried preference is used once: a later put does not bring it back', (t) => {
  const { store: s } = store(t);
  s.put(KEY, server(1));
  s.setEnabled(KEY, true);
  s.delete(KEY);
  s.put(KEY, server(2));
  s.setEnabled(KEY, false);
  s.put(KEY, server(3));
  assert.deepEqual(s.get(KEY), { ...server(3), enabled: false });
});

test('a fresh enrollment has no preference; a write refused by a lock changes nothing', (t) => {
  const { store: s, path } = store(t);
  s.put(KEY, server(1));
  assert.equal(s.get(KEY)?.enabled, null);
  s.setEnabled(KEY, true);
  const other = new Database(path);
  t.after(() => other.open && other.close());
  other.exec('BEGIN IMMEDIATE');
  assert.throws(() => s.put(KEY, server(2)), /database is locked \(SQLITE_BUSY\)$/);
  assert.throws(() => s.delete(KEY), /database is locked \(SQLITE_BUSY\)$/);
  other.exec('COMMIT');
  assert.deepEqual(s.get(KEY), { ...server(1), enabled: true });
});
