/**
 * The `x-oai-attestation` header value (spec D.3): a compact JSON envelope
 * `{"v":1,"s":<status>,"t":"<token>"}`, with `t` only when the client produced a token. Runs in
 * the worker pool (the crypto actor), so a large or hostile token is escaped and scanned off the
 * main thread.
 */

/** Spec D.3's status codes. */
export const AttestationStatus = {
  ok: 0,
  timeout: 1,
  /** The client answered with a JSON-RPC error. */
  requestFailed: 2,
  /** The request was dropped: the connection closed before it answered. */
  canceled: 3,
  /** The answer was not `{"token": string}` (or, in Gatehouse, its token is too long). */
  malformed: 4,
} as const;

export type AttestationStatusCode = (typeof AttestationStatus)[keyof typeof AttestationStatus];

/**
 * Tokens longer than this are treated as malformed (a Gatehouse rule: codex has none). Servers
 * commonly refuse request headers past 8 to 16 KiB, so a longer token would fail the very
 * request it is meant to vouch for.
 */
export const MAX_ATTESTATION_TOKEN_LENGTH = 8192;

/** Header values may hold tab and visible ASCII only (what codex's `HeaderValue::from_str` accepts). */
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;

/**
 * The header value for an outcome, or null when the envelope is not a legal header value
 * (spec D.3: such a header is omitted, not sent).
 */
export function attestationHeaderValue(status: AttestationStatusCode, token?: string): string | null {
  const withToken = status === AttestationStatus.ok && token !== undefined;
  if (withToken && token.length > MAX_ATTESTATION_TOKEN_LENGTH) {
    return JSON.stringify({ v: 1, s: AttestationStatus.malformed });
  }
  const value = JSON.stringify(withToken ? { v: 1, s: status, t: token } : { v: 1, s: status });
  return HEADER_VALUE.test(value) ? value : null;
}
