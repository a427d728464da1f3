/**
 * Who this app-server is to the remote-control backend (spec B.1): the trimmed host name, and the
 * installation id kept in `$CODEX_HOME/installation_id`, a UUID made on first use. A file that
 * does not hold a UUID is replaced, since the backend keys enrollments on it.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';

export const INSTALLATION_ID_FILE = 'installation_id';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface ServerIdentity {
  serverName: string;
  installationId: string;
}

export function serverIdentity(codexHome: string): ServerIdentity {
  return { serverName: serverName(), installationId: installationId(codexHome) };
}

export function serverName(): string {
  return hostname().trim();
}

export function installationId(codexHome: string): string {
  const path = join(codexHome, INSTALLATION_ID_FILE);
  try {
    const existing = readFileSync(path, 'utf8').trim();
    if (UUID.test(existing)) return existing.toLowerCase();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = randomUUID();
  writeFileAtomic(path, id);
  return id;
}
