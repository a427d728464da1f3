/**
 * Remote-control test helpers: the built CLI logged in with host-owned ChatGPT tokens against the
 * local backend, with short retry delays, and ways to follow its status notifications.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LocalBackend } from '../../src/backend/local-backend.js';
import { TestClient, type RpcMessage } from './app-server-process.js';
import { backendArgs, chatgptToken } from './local-backend.js';

/** Retries in tens of milliseconds instead of codex's seconds, so faults play out quickly. */
export const FAST_RETRIES = [
  '-c',
  'gatehouse.remote_control_retry_base_ms=40',
  '-c',
  'gatehouse.remote_control_refresh_retry_ms=150',
];

export interface StatusParams {
  status: string;
  serverName: string;
  installationId: string;
  environmentId: string | null;
}

/** The CLI against `on`, initialized with experimentalApi; `home` keeps CODEX_HOME across restarts. */
export async function startRemoteControlServer(
  t: { after(fn: () => Promise<void>): void },
  on: LocalBackend,
  opts: { home?: string; extra?: string[]; experimental?: boolean; clientName?: string } = {},
): Promise<TestClient> {
  const client = TestClient.spawn({
    args: backendArgs(on, [...FAST_RETRIES, ...(opts.extra ?? [])]),
    env: { CODEX_CA_CERTIFICATE: on.caCertPath },
    readTimeoutMs: 10_000,
    ...(opts.home !== undefined ? { codexHome: opts.home } : {}),
  });
  t.after(() => client.dispose());
  const init = await client.initialize({
    keepGreeting: true,
    experimentalApi: opts.experimental ?? true,
    ...(opts.clientName !== undefined ? { name: opts.clientName } : {}),
  });
  assert.ok(init.result, `initialize failed: ${JSON.stringify(init.error)}`);
  return client;
}

/** Logs in with host-owned tokens for acct-1 and reads past the login notifications. */
export async function loginWithTokens(client: TestClient, accessToken = chatgptToken()): Promise<void> {
  const reply = await client.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken,
    chatgptAccountId: 'acct-1',
  });
  assert.deepEqual(reply.result, { type: 'chatgptAuthTokens' }, JSON.stringify(reply.error));
}

/** Reads `remoteControl/status/changed` notifications until one has `status`; returns its params. */
export async function statusReached(
  client: TestClient,
  status: string,
  timeoutMs = 10_000,
): Promise<StatusParams> {
  const m = await client.readUntil(
    (x) => x.method === 'remoteControl/status/changed' && (x.params as StatusParams).status === status,
    `remote control status ${status}`,
    timeoutMs,
  );
  return m.params as StatusParams;
}

/** Every `remoteControl/status/changed` read so far, as `status:environmentId`. */
export function statusTrail(client: TestClient): string[] {
  return client.messages
    .filter((m: RpcMessage) => m.method === 'remoteControl/status/changed')
    .map((m) => {
      const p = m.params as StatusParams;
      return `${p.status}:${p.environmentId}`;
    });
}

/** Every file under a folder, recursively, as bytes read as latin1 (token bytes survive either way). */
export function filesUnder(dir: string): { path: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile())
    .map((path) => ({ path, text: readFileSync(path, 'latin1') }));
}

/** A CODEX_HOME that outlives one server (restart tests), removed when the test ends. */
export function tempHome(t: { after(fn: () => void): void }): string {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-rc-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  return home;
}
