/**
 * A plain JSON GET to the backend (`/wham/accounts/check`, `/wham/config/bundle`) with the
 * credentials in force and the 401 loop of spec C.8. The answer is the status and the parsed
 * body, whatever the status; a timeout, a network failure, a refresh failure, or a success whose
 * body is not JSON are errors with clear texts (BrokerError, so they survive actor envelopes).
 */
import { BrokerError } from '../protocol/errors.js';
import type { AuthSource } from './auth-source.js';
import { UpstreamFailure, displayUrl, isUpstreamFailure, unexpectedStatusText } from './failure.js';
import { openRequest, readText, type UpstreamAgents } from './http-request.js';
import { authHeaders, currentAuth, withUnauthorizedRetry } from './unauthorized-retry.js';

const MAX_JSON_BODY = 4 * 1024 * 1024;

export interface JsonAnswer {
  status: number;
  body: unknown;
}

export interface JsonGetDeps {
  auth: AuthSource;
  agents: UpstreamAgents;
}

export async function getJson(
  deps: JsonGetDeps,
  url: URL,
  options: { timeoutMs: number; headers?: Record<string, string>; signal?: AbortSignal },
): Promise<JsonAnswer> {
  const where = displayUrl(url);
  let last: { status: number; text: string } | undefined;
  const send = async (auth: Parameters<typeof authHeaders>[0]): Promise<JsonAnswer> => {
    const headers = { ...authHeaders(auth), accept: 'application/json', ...options.headers };
    const res = await openRequest(
      url,
      {
        method: 'GET',
        headers,
        timeoutMs: options.timeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      deps.agents,
    );
    const text = await readText(res.body, MAX_JSON_BODY, options.timeoutMs);
    last = { status: res.status, text };
    if (res.status === 401) {
      // The 401 loop recognises this failure; after the second one the answer is returned as is.
      throw new UpstreamFailure(unexpectedStatusText(401, text, url.href, headers), 'status', {
        status: 401,
      });
    }
    return { status: res.status, body: parseBody(res.status, text, where) };
  };
  try {
    const auth = await currentAuth(deps.auth);
    return await withUnauthorizedRetry(deps.auth, auth, send);
  } catch (e) {
    if (isUpstreamFailure(e, 'status') && e.status === 401 && last?.status === 401) {
      return { status: 401, body: parseBody(401, last.text, where) };
    }
    if (isUpstreamFailure(e, 'refresh')) throw new BrokerError('AUTH_REFRESH_FAILED', e.message);
    if (isUpstreamFailure(e, 'unauthenticated')) throw new BrokerError('UPSTREAM_FAILED', e.message);
    if (e instanceof BrokerError) throw e;
    const why = isUpstreamFailure(e) ? e.message : String(e);
    throw new BrokerError('UPSTREAM_FAILED', `GET ${where} failed: ${why}`);
  }
}

/** JSON when it parses; an error body that is not JSON (an HTML error page) is kept as text. */
function parseBody(status: number, text: string, where: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    if (status >= 200 && status < 300) {
      throw new BrokerError(
        'UPSTREAM_FAILED',
        `GET ${where} answered ${status} with a body that is not JSON`,
      );
    }
    return text;
  }
}
