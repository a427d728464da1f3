/**
 * One HTTP request to a named route, and the state the handlers share. An exchange records the
 * request once, when its status is decided (before any byte of the answer leaves), so a test
 * that has seen the answer always finds the request in `requests`; and it logs only the route,
 * method and status (never headers, bodies or tokens).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/logger.js';
import type { BearerVerdict } from './bearer.js';
import type { Faults } from './faults.js';
import { sendJson, sendText } from './http-io.js';
import type { OAuthIssuer } from './oauth-issuer.js';
import type { RemoteEnrollments } from './remote-control.js';
import type { RemoteRelay } from './remote-relay.js';
import { headerRecord, recordRequest, type RecordedRequest } from './request-log.js';
import type { RouteName, UNMATCHED_ROUTE } from './routes.js';
import type { ChatgptUser } from './tokens.js';
import { ATTESTATION_HEADER, checkAttestationHeader } from './attestation-check.js';

export interface BackendState {
  readonly log: Logger;
  readonly faults: Faults;
  readonly requests: RecordedRequest[];
  readonly revoked: Set<string>;
  readonly oauth: OAuthIssuer;
  readonly user: Readonly<ChatgptUser>;
  /** Pause between two streamed events. */
  readonly responseDelayMs: number;
  /** Aborted when the backend closes: pending delays end at once. */
  readonly signal: AbortSignal;
  /** Keep request bodies in `requests` (tests that check what a client sent). */
  readonly recordBodies: boolean;
  /** Enrolled app-servers and their remote-control tokens. */
  readonly remoteEnrollments: RemoteEnrollments;
  /** Their sockets and the remote clients relayed to them. */
  readonly remoteRelay: RemoteRelay;
}

/** Records a request (or WebSocket message) and logs its route and status. */
export function noteRequest(
  state: BackendState,
  entry: Omit<RecordedRequest, 'at' | 'headers'> & { headers: IncomingMessage['headers'] },
): void {
  const { body, ...rest } = entry;
  const headers = headerRecord(entry.headers);
  const attestation = headers[ATTESTATION_HEADER];
  recordRequest(state.requests, {
    at: Date.now(),
    ...rest,
    headers,
    ...(state.recordBodies && body !== undefined ? { body } : {}),
    ...(attestation === undefined ? {} : { attestation: checkAttestationHeader(attestation) }),
  });
  state.log.debug(
    { route: entry.route, method: entry.method, status: entry.status },
    'local backend request',
  );
}

export class Exchange {
  private recorded = false;
  /** Set by a `disconnect` fault with `afterEvents` > 0: a streaming answer is cut there. */
  cutAfterEvents: number | undefined;
  /** The accepted bearer, on routes that check one. */
  bearer: Extract<BearerVerdict, { ok: true }> | undefined;
  /** The request body as read by the handler, kept in the record with `recordBodies`. */
  body: unknown;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly url: URL,
    readonly route: RouteName | typeof UNMATCHED_ROUTE,
    readonly state: BackendState,
  ) {}

  /** Records the request with this status; later calls do nothing. */
  record(status: number): void {
    if (this.recorded) return;
    this.recorded = true;
    noteRequest(this.state, {
      route: this.route,
      method: this.req.method ?? 'GET',
      path: this.req.url ?? '/',
      status,
      headers: this.req.headers,
      body: this.body,
    });
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.record(status);
    sendJson(this.res, status, body, headers);
  }

  text(status: number, text: string): void {
    this.record(status);
    sendText(this.res, status, text);
  }

  /** Answers with a body given as text (a scripted fault's), typed JSON when it parses as JSON. */
  raw(status: number, body: string, headers: Record<string, string>): void {
    this.record(status);
    this.res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers }).end(body);
  }

  /** Cuts the connection without an answer (status 0 in the record if none was sent). */
  cut(): void {
    this.record(0);
    this.req.socket.destroy();
  }

  get gone(): boolean {
    return this.res.destroyed;
  }
}
