/**
 * How remote-control error texts quote a backend answer (spec B.3 "Redaction"): the body,
 * trimmed, with the secrets a remote-control body can carry replaced by `<redacted>`, cut at
 * 4096 bytes; and the `request-id: …, cf-ray: …` pair that lets the backend find the request.
 * These texts reach clients (JSON-RPC errors) and logs, so nothing secret may pass through.
 */
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { REDACTED, scrubSecrets } from '../util/scrub-secrets.js';

export const BODY_PREVIEW_MAX_BYTES = 4096;

export { REDACTED };

/** Top-level members of a JSON object body that hold secrets. */
const SECRET_MEMBERS = ['remote_control_token', 'pairing_code', 'manual_pairing_code'] as const;

/**
 * Rust's `str::trim` (Unicode White_Space). Not JS's `trim`, which also strips U+FEFF and keeps
 * U+0085: the byte count of what is left decides where a long preview is cut.
 */
const RUST_WHITESPACE =
  '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const RUST_TRIM = new RegExp(`^[${RUST_WHITESPACE}]+|[${RUST_WHITESPACE}]+$`, 'g');

/**
 * The body as error texts quote it: `<empty>` when blank; a JSON object with its secret members
 * replaced and re-serialized compactly (member order kept); anything else as text. `secrets`
 * are values the caller knows (the token it holds, say) and are scrubbed wherever they appear,
 * so that a body which is not a JSON object cannot leak them either.
 */
export function previewBody(body: string | Uint8Array, secrets: readonly string[] = []): string {
  const text = (typeof body === 'string' ? body : Buffer.from(body).toString('utf8')).replace(RUST_TRIM, '');
  if (text === '') return '<empty>';
  const preview = scrubSecrets(redactJsonObject(text), secrets);
  return cutAtBytes(preview, BODY_PREVIEW_MAX_BYTES);
}

/**
 * JSON.parse keeps member order except for integer-like keys (which JS moves first) and
 * re-serializes numbers its own way (`1.0` becomes `1`); neither matters for a preview.
 */
function redactJsonObject(text: string): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return text;
  const object = value as Record<string, unknown>;
  for (const member of SECRET_MEMBERS) {
    if (Object.hasOwn(object, member)) object[member] = REDACTED;
  }
  return JSON.stringify(object);
}

/** At most `maxBytes` of UTF-8, cut on a character boundary, then `...` when anything was cut. */
function cutAtBytes(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let cut = maxBytes;
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--; // a continuation byte: not a boundary
  return `${bytes.subarray(0, cut).toString('utf8')}...`;
}

/** `request-id: <x-request-id, else x-oai-request-id, else <none>>, cf-ray: <cf-ray or <none>>`. */
export function requestIdSuffix(headers: IncomingHttpHeaders): string {
  const requestId =
    headerText(headers['x-request-id']) ?? headerText(headers['x-oai-request-id']) ?? '<none>';
  const cfRay = headerText(headers['cf-ray']) ?? '<none>';
  return `request-id: ${requestId}, cf-ray: ${cfRay}`;
}

/** A header as Rust's `HeaderValue::to_str` shows it: visible ASCII only, else `<invalid utf-8>`. */
function headerText(value: string | string[] | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  if (first === undefined) return undefined;
  return /^[\t\x20-\x7e]*$/.test(first) ? first : '<invalid utf-8>';
}

/** A status as Rust's `http::StatusCode` displays it: `401 Unauthorized`. */
export function statusText(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? '<unknown status code>'}`;
}
