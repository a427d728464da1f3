/**
 * The local backend as integration tests share it: one per test file, started before the first
 * test, emptied of faults and recorded requests before each, closed (with every spawned client)
 * after the last. And the ChatGPT access token most tests log in with.
 */
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
