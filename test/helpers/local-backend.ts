/**
 * The local backend as integration tests share it: one per test file, started before the first
 * test, emptied of faults and recorded requests before each, closed (with every spawned client)
 * after the last. And the ChatGPT access token most tests log in with.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach } from 'node:test';
import {
  startLocalBackend,
  type LocalBackend,
  type LocalBackendOptions,
} from '../../src/backend/local-backend.js';
import { chatgptClaims, mintJwt, type ChatgptIdentity } from '../../src/backend/tokens.js';
import { TestClient } from './app-server-process.js';

/** Registers the file's hooks and returns the backend (usable from the first test on). */
export function useLocalBackend(options: Omit<LocalBackendOptions, 'port'> = {}): LocalBackend {
  let started: LocalBackend | undefined;
  before(async () => {
    started = await startLocalBackend({ port: 0, ...options });
  });
  beforeEach(() => {
    started!.faults.clear();
    started!.requests.length = 0;
  });
  after(async () => {
    await TestClient.disposeAll();
    await started?.close();
  });
  // Hooks run after the file is loaded, so tests get a stand-in that forwards to the started one.
  return new Proxy({} as LocalBackend, {
    get(_target, key) {
      if (!started) throw new Error('the local backend is started by the before() hook');
      const value: unknown = Reflect.get(started, key);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(started) : value;
    },
  });
}

/** A valid access token for dev@example.com in workspace acct-1 (plan plus), an hour long. */
export function chatgptToken(overrides: Partial<ChatgptIdentity> = {}): string {
  return mintJwt(
    chatgptClaims({
      email: 'dev@example.com',
      accountId: 'acct-1',
      userId: 'user-1',
      planType: 'plus',
      expiresInSec: 3600,
      ...overrides,
    }),
  );
}

/** `-c` arguments pointing Gatehouse at a local backend (both base URLs), with short retry delays. */
export function backendArgs(on: LocalBackend, extra: string[] = []): string[] {
  return [
    '-c',
    `chatgpt_base_url=${on.chatgptBaseUrl}`,
    '-c',
    `openai_base_url=${on.chatgptBaseUrl}/codex`,
    '-c',
    'gatehouse.retry_base_delay_ms=5',
    ...extra,
  ];
}

/** The built CLI pointed at `on`, trusting its CA; disposed when the test ends. */
export function spawnAgainst(
  t: { after(fn: () => Promise<void>): void },
  on: LocalBackend,
  extra: string[] = [],
): TestClient {
  const client = TestClient.spawn({
    args: backendArgs(on, extra),
    env: { CODEX_CA_CERTIFICATE: on.caCertPath },
    readTimeoutMs: 10_000,
  });
  t.after(() => client.dispose());
  return client;
}

export async function startThread(client: TestClient, params: Record<string, unknown> = {}): Promise<string> {
  const reply = await client.request('thread/start', params);
  return (reply.result as { thread: { id: string } }).thread.id;
}

/** Starts a text turn, checks it is in progress, and returns its id. */
export async function startTurn(client: TestClient, threadId: string, text: string): Promise<string> {
  const reply = await client.request('turn/start', { threadId, input: [{ type: 'text', text }] });
  assert.equal(
    (reply.result as { turn: { status: string } }).turn.status,
    'inProgress',
    JSON.stringify(reply),
  );
  return (reply.result as { turn: { id: string } }).turn.id;
}
