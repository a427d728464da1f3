/**
 * The credentials actor holds the one set of credentials the broker uses upstream and runs the
 * refresh loop of spec C.8. A refresh is single-flight: every 401 reported for the same
 * generation of credentials joins the refresh already under way, and a 401 for an older
 * generation is answered with the newer credentials at once. So any number of concurrent 401s,
 * on any number of connections, cause one `account/chatgptAuthTokens/refresh` at a time.
 */
import { later, type Behaviour, type Message } from '../../src/runtime/actor.js';
import { BrokerError, isBrokerError } from '../../src/protocol/errors.js';
import { InvalidJwtError, parseChatgptJwt } from '../../src/auth/jwt.js';
import { workspaceRefreshRefusal } from '../../src/auth/login-policy.js';
import type { UpstreamAuth } from '../../src/upstream/auth-source.js';
import { NOT_LOGGED_IN } from '../../src/upstream/unauthorized-retry.js';
import type { Logger } from '../../src/util/logger.js';
import { accountIdOf, bearerOf, type Credentials } from './credentials.js';

export const CREDENTIALS_ACTOR = 'credentials';

export const CredentialsMessage = {
  install: 'credentials.install',
  clear: 'credentials.clear',
  snapshot: 'credentials.snapshot',
  current: 'credentials.current',
  unauthorized: 'credentials.unauthorized',
} as const;

export interface CredentialsSnapshot {
  credentials: Credentials;
  generation: number;
}

/** What a host answered to `account/chatgptAuthTokens/refresh`, already checked against the schema. */
export interface RefreshedTokens {
  accessToken: string;
  chatgptAccountId: string;
  chatgptPlanType?: string | null;
}

export interface CredentialsDeps {
  log: Logger;
  forcedWorkspaceIds: string[] | null;
  /** The configured deadline of a refresh request, for the timeout's failure text. */
  refreshTimeoutMs: number;
  /** Sends `account/chatgptAuthTokens/refresh` to a connection. */
  askHost(connectionId: string, previousAccountId: string | null): Promise<RefreshedTokens>;
  /** Refreshes a managed browser login against the issuer (and stores the result). */
  refreshManaged(credentials: Extract<Credentials, { mode: 'chatgpt' }>): Promise<Credentials>;
}

export function credentialsBehaviour(deps: CredentialsDeps): Behaviour {
  let credentials: Credentials | null = null;
  let generation = 0;
  let refreshing: Promise<UpstreamAuth> | undefined;

  const upstreamAuth = (): UpstreamAuth | null =>
    credentials && {
      mode: credentials.mode,
      bearer: bearerOf(credentials),
      accountId: accountIdOf(credentials),
      generation,
    };

  function install(next: Credentials | null): number {
    credentials = next;
    // A refresh under way belongs to the old credentials; its result must not overwrite these.
    refreshing = undefined;
    return ++generation;
  }

  async function refresh(current: Credentials, startedAt: number): Promise<UpstreamAuth> {
    let next: Credentials;
    if (current.mode === 'chatgptAuthTokens') {
      next = await refreshFromHost(current);
    } else if (current.mode === 'chatgpt') {
      next = await deps.refreshManaged(current);
    } else {
      throw new BrokerError(
        'AUTH_REFRESH_FAILED',
        'the API key was rejected by the backend (401 Unauthorized)',
      );
    }
    // A logout or a new login while the host was answering wins over this refresh: the waiting
    // requests go on with what is installed now, as a 401 for an older generation does.
    if (generation !== startedAt) {
      const now = upstreamAuth();
      if (now) return now;
      throw new BrokerError('AUTH_REFRESH_FAILED', NOT_LOGGED_IN);
    }
    credentials = next;
    generation++;
    deps.log.info({ mode: next.mode, generation }, 'credentials refreshed');
    return upstreamAuth()!;
  }

  async function refreshFromHost(
    current: Extract<Credentials, { mode: 'chatgptAuthTokens' }>,
  ): Promise<Credentials> {
    let answer: RefreshedTokens;
    try {
      answer = await deps.askHost(current.owner, current.accountId);
    } catch (e) {
      throw new BrokerError('AUTH_REFRESH_FAILED', refreshFailureText(e, deps.refreshTimeoutMs));
    }
    let claims;
    try {
      claims = parseChatgptJwt(answer.accessToken);
    } catch (e) {
      if (!(e instanceof InvalidJwtError)) throw e;
      throw new BrokerError('AUTH_REFRESH_FAILED', 'auth refresh returned invalid credentials');
    }
    const refusal = workspaceRefreshRefusal(answer.chatgptAccountId, deps.forcedWorkspaceIds);
    if (refusal) throw new BrokerError('AUTH_REFRESH_FAILED', refusal);
    return {
      mode: 'chatgptAuthTokens',
      accessToken: answer.accessToken,
      accountId: answer.chatgptAccountId,
      planType: answer.chatgptPlanType ?? claims.planType ?? 'unknown',
      claims,
      owner: current.owner,
    };
  }

  function unauthorized(failedGeneration: number): unknown {
    if (!credentials) throw new BrokerError('AUTH_REFRESH_FAILED', NOT_LOGGED_IN);
    // Someone else already replaced the credentials that failed: retry with the new ones.
    if (failedGeneration !== generation) return upstreamAuth();
    if (!refreshing) {
      const startedAt = generation;
      const flight = refresh(credentials, startedAt).finally(() => {
        if (refreshing === flight) refreshing = undefined;
      });
      refreshing = flight;
    }
    return later(refreshing);
  }

  return {
    receive(message: Message) {
      switch (message.type) {
        case CredentialsMessage.install:
          return install(message.body as Credentials);
        case CredentialsMessage.clear:
          return install(null);
        case CredentialsMessage.snapshot:
          return credentials && ({ credentials, generation } satisfies CredentialsSnapshot);
        case CredentialsMessage.current:
          return upstreamAuth();
        case CredentialsMessage.unauthorized:
          return unauthorized((message.body as { generation: number }).generation);
        default:
          throw new TypeError(`credentials actor cannot handle ${message.type}`);
      }
    },
  };
}

/** Spec C.8's failure texts for a refresh request that got no usable answer. */
export function refreshFailureText(e: unknown, timeoutMs: number): string {
  if (isBrokerError(e, 'REQUEST_TIMEOUT'))
    return `auth refresh request timed out after ${rustDuration(timeoutMs)}`;
  if (isBrokerError(e, 'CLIENT_ERROR')) {
    const code = (e.data as { code?: unknown } | undefined)?.code;
    // 0.169.0 reports the client's code only, never its message.
    return typeof code === 'number'
      ? `auth refresh request failed: code=${code}`
      : 'invalid auth refresh response';
  }
  if (
    isBrokerError(e, 'CONNECTION_CLOSED') ||
    isBrokerError(e, 'ACTOR_STOPPED') ||
    isBrokerError(e, 'NOT_INITIALIZED')
  ) {
    return 'auth refresh request failed: the client that supplied the tokens is not connected';
  }
  return 'auth refresh request failed';
}

/** Rust's `{:?}` of a Duration for whole milliseconds: `10s`, `1.5s`, `250ms`. */
export function rustDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  return `${ms / 1000}s`;
}
