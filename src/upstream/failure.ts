/**
 * How one upstream attempt failed, worded as codex words it (the texts reach clients in `error`
 * notifications and in `turn/completed`), plus what the retry policy needs to know about it.
 * Nothing here ever holds a credential: URLs lose their query string, and a backend body that
 * quotes the credentials it was sent has them scrubbed.
 */
import { STATUS_CODES } from 'node:http';
import { credentialsIn, scrubSecrets } from '../util/scrub-secrets.js';

export type FailureKind =
  /** The backend answered with a status other than success (401 after the refresh loop included). */
  | 'status'
  /** The 401 refresh loop could not get new credentials; the text is spec C.8's. */
  | 'refresh'
  /** Nobody is logged in. */
  | 'unauthenticated'
  /** No response headers (or WebSocket handshake) within the request deadline. */
  | 'timeout'
  /** The connection could not be made or broke before any answer. */
  | 'network'
  /** The stream stopped before `response.completed` (cut, closed, or idle too long). */
  | 'disconnected'
  /** The backend reported a failed or incomplete response inside the stream. */
  | 'response'
  /** We gave up on purpose (interrupt, shutdown). */
  | 'aborted';

/** Plain data, so a failure can cross an actor boundary in an envelope. */
export interface FailureData {
  message: string;
  kind: FailureKind;
  /** The HTTP status, when the backend gave one. */
  status: number | null;
  retryable: boolean;
  /** The backend's `Retry-After`, when it sent one. */
  retryAfterMs: number | null;
}

export class UpstreamFailure extends Error {
  override name = 'UpstreamFailure';
  constructor(
    message: string,
    readonly kind: FailureKind,
    readonly options: { status?: number | null; retryable?: boolean; retryAfterMs?: number | null } = {},
  ) {
    super(message);
  }

  get status(): number | null {
    return this.options.status ?? null;
  }

  toData(): FailureData {
    return {
      message: this.message,
      kind: this.kind,
      status: this.status,
      // Everything but an abort or a missing login is worth another attempt, as in codex, where
      // an unexpected status (401 included) is retryable.
      retryable: this.options.retryable ?? (this.kind !== 'aborted' && this.kind !== 'unauthenticated'),
      retryAfterMs: this.options.retryAfterMs ?? null,
    };
  }
}

export function isUpstreamFailure(e: unknown, kind?: FailureKind): e is UpstreamFailure {
  return e instanceof UpstreamFailure && (kind === undefined || e.kind === kind);
}

/** Any error as failure data; unknown errors become retryable network failures. */
export function failureData(e: unknown): FailureData {
  if (e instanceof UpstreamFailure) return e.toData();
  return new UpstreamFailure(disconnected(e instanceof Error ? e.message : String(e)), 'network').toData();
}

/** Bodies quoted in failure texts are capped: they end up in notifications and logs. */
const MAX_QUOTED_BODY = 4096;

/**
 * codex's text for a non-success answer: `unexpected status 401 Unauthorized: <body>, url: <url>`.
 * The credentials the request carried (`sent`, its headers) are scrubbed from the quoted body.
 */
export function unexpectedStatusText(
  status: number,
  body: string,
  url: string,
  sent: Readonly<Record<string, string>>,
): string {
  const reason = STATUS_CODES[status];
  const scrubbed = scrubSecrets(body, credentialsIn(sent));
  const quoted = scrubbed.length > MAX_QUOTED_BODY ? `${scrubbed.slice(0, MAX_QUOTED_BODY)}…` : scrubbed;
  return `unexpected status ${status}${reason ? ` ${reason}` : ''}: ${quoted}, url: ${displayUrl(url)}`;
}

/** codex's wording for a stream that ended early: `stream disconnected before completion: <why>`. */
export function disconnected(why: string): string {
  return `stream disconnected before completion: ${why}`;
}

export const TIMEOUT_TEXT = 'request timed out';

/** A URL fit for an error text: origin and path only (a query string may carry secrets). */
export function displayUrl(url: string | URL): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url;
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

export function abortedFailure(): UpstreamFailure {
  return new UpstreamFailure('request aborted', 'aborted', { retryable: false });
}
