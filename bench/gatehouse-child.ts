/**
 * A `gatehouse app-server` child for the benches that run against the local backend (`relay.ts`,
 * `remote-control.ts`): the built CLI spawned over stdio with its ChatGPT base URL and CA pointed
 * at the backend, initialized with the experimental API, and logged in with host-owned tokens
 * (`chatgptAuthTokens`) for the bench identity. Both benches then speak to it in their own way.
 */
import { fileURLToPath } from 'node:url';
import type { LocalBackend } from '../src/backend/local-backend.js';
import { chatgptClaims, mintJwt } from '../src/backend/tokens.js';
import { LineChild, withTimeout } from './line-child.js';

/** The account the backend's tokens speak for; `account/read` answers with its email. */
export const BENCH_IDENTITY = {
  email: 'bench@example.com',
  accountId: 'acct-bench',
  userId: 'user-bench',
  planType: 'plus',
};

/** The deadline of each set-up call. */
export const SETUP_TIMEOUT_MS = 15_000;
/** The set-up calls use the ids below this one; the caller's own requests can start here. */
export const FIRST_FREE_ID = 3;

export interface RpcMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

export interface GatehouseChildOptions {
  /** Names the child in failure reports. */
  label: string;
  codexHome: string;
  /** Node flags for the child (`--cpu-prof ...` under --cpu-prof). */
  nodeArgs: string[];
  /** Initialize capabilities on top of `experimentalApi`. */
  capabilities?: Record<string, boolean>;
  /** The host-owned access token to log in with. */
  accessToken: string;
}

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** An access token for the bench identity that expires in `expiresInSec`. */
export function benchToken(expiresInSec: number): string {
  return mintJwt(chatgptClaims({ ...BENCH_IDENTITY, expiresInSec }));
}

/** Spawns, initializes and logs in; the child is killed when any of that fails. */
export async function startGatehouse(
  backend: LocalBackend,
  options: GatehouseChildOptions,
): Promise<LineChild> {
  const child = new LineChild({
    label: options.label,
    args: [...options.nodeArgs, cli, 'app-server', '-c', `chatgpt_base_url=${backend.chatgptBaseUrl}`],
    env: {
      ...process.env,
      CODEX_HOME: options.codexHome,
      CODEX_CA_CERTIFICATE: backend.caCertPath,
      GATEHOUSE_LOG: 'warn',
    },
  });
  try {
    await setupCall(child, 1, 'initialize', {
      clientInfo: { name: 'bench', version: '1' },
      capabilities: { experimentalApi: true, ...options.capabilities },
    });
    await setupCall(child, 2, 'account/login/start', {
      type: 'chatgptAuthTokens',
      accessToken: options.accessToken,
      chatgptAccountId: BENCH_IDENTITY.accountId,
    });
    return child;
  } catch (e) {
    child.kill();
    throw e;
  }
}

/**
 * Sends one request and resolves with its answer once `until` (when given) has also been seen;
 * an error answer or no answer within SETUP_TIMEOUT_MS fails. Takes over the child's `onLine`.
 */
export function setupCall(
  child: LineChild,
  id: number,
  method: string,
  params: unknown,
  until?: (m: RpcMessage) => boolean,
): Promise<RpcMessage> {
  const done = new Promise<RpcMessage>((resolve, reject) => {
    let answer: RpcMessage | undefined;
    let seen = until === undefined;
    child.onLine = (line) => {
      const m = JSON.parse(line) as RpcMessage;
      if (m.id === id && m.method === undefined) {
        if (m.error) return reject(child.failure(`${method} failed: ${m.error.message}`));
        answer = m;
      } else if (until?.(m)) {
        seen = true;
      }
      if (answer && seen) resolve(answer);
    };
  });
  child.write(`${JSON.stringify({ id, method, params })}\n`);
  return withTimeout(done, SETUP_TIMEOUT_MS, () =>
    child.failure(`${method}: no answer within ${SETUP_TIMEOUT_MS} ms`),
  );
}
