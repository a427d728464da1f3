/**
 * What the local backend was asked, for tests and demos to check (which headers a client sent,
 * how many times a route was hit). Entries hold credentials as received, so they stay in memory
 * and in the control API's answer; they are never logged.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteName, UNMATCHED_ROUTE } from './routes.js';
import type { AttestationCheck } from './attestation-check.js';

export const MAX_RECORDED_REQUESTS = 10_000;

export interface RecordedRequest {
  /** When the backend decided the answer, in ms since the epoch. */
  at: number;
  route: RouteName | typeof UNMATCHED_ROUTE;
  /** The HTTP method, or `WS` for a message on an open WebSocket. */
  method: string;
  /** Path and query string, as received. */
  path: string;
  /**
   * The status answered (101 for an accepted WebSocket handshake, 200 for an answered
   * `response.create`, the status of a scripted error frame), or 0 when the connection was cut
   * before any status was sent.
   */
  status: number;
  /** Header names are lower-case, as Node delivers them; repeated headers are joined with ", ". */
  headers: Record<string, string>;
  /**
   * The request body, only when the backend runs with `recordBodies`: the parsed JSON of a
   * `responses.http` POST, a `responses.ws.create` frame or a `realtime.calls` POST (its text when
   * it is not JSON). Absent otherwise, and for every other route.
   */
  body?: unknown;
  /** The backend's reading of the `x-oai-attestation` header, when the request carried one. */
  attestation?: AttestationCheck;
}

/**
 * Appends to `log`, a plain array that callers read and may empty (`log.length = 0`), keeping it
 * to the newest `MAX_RECORDED_REQUESTS` entries.
 */
export function recordRequest(log: RecordedRequest[], entry: RecordedRequest): void {
  log.push(entry);
  if (log.length > MAX_RECORDED_REQUESTS) log.splice(0, log.length - MAX_RECORDED_REQUESTS);
}

export function headerRecord(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}
