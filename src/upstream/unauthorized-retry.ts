/**
 * The 401 loop of spec C.8, for one attempt: send with the credentials in force; on 401 ask the
 * auth source for new ones (one refresh, however many requests ask at once) and send once more.
 * A second 401 is not refreshed again: it fails the attempt with `unexpected status 401
 * Unauthorized: <body>, url: <url>`. A refresh that fails fails the attempt with its own text.
 */
import type { AuthSource, UpstreamAuth } from './auth-source.js';
import { UpstreamFailure, isUpstreamFailure } from './failure.js';

/** What a request meets when nobody is logged in (a Gatehouse text: codex has no relay without auth). */
export const NOT_LOGGED_IN = 'not logged in: log in with account/login/start first';

/** The credentials in force, or a failure saying nobody is logged in. */
export async function currentAuth(auth: AuthSource): Promise<UpstreamAuth> {
  const current = await auth.current();
  if (!current) {
    throw new UpstreamFailure(NOT_LOGGED_IN, 'unauthenticated', {
      retryable: false,
    });
  }
  return current;
}

/**
 * Runs `send` with `first`, and once more with refreshed credentials if it failed with a 401.
 * `send` reports a 401 by throwing an UpstreamFailure with status 401.
 */
export async function withUnauthorizedRetry<T>(
  auth: AuthSource,
  first: UpstreamAuth,
  send: (auth: UpstreamAuth) => Promise<T>,
): Promise<T> {
  try {
    return await send(first);
  } catch (e) {
    if (!isUpstreamFailure(e, 'status') || e.status !== 401) throw e;
  }
  let refreshed: UpstreamAuth;
  try {
    refreshed = await auth.unauthorized(first);
  } catch (e) {
    // The auth source words its failures as spec C.8 does; they are retryable like any attempt.
    throw new UpstreamFailure(e instanceof Error ? e.message : String(e), 'refresh', { status: 401 });
  }
  return send(refreshed);
}

/** `Authorization` and `chatgpt-account-id`, the credentials part of every backend request. */
export function authHeaders(auth: UpstreamAuth): Record<string, string> {
  const headers: Record<string, string> = {};
  if (auth.accountId) headers['chatgpt-account-id'] = auth.accountId;
  headers.authorization = `Bearer ${auth.bearer}`;
  return headers;
}
