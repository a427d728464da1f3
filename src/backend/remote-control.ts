/**
 * Remote-control enrollments of the local backend (spec B.2, B.3): the app-servers that enrolled
 * with `POST wham/remote/control/server/enroll`, and the remote-control tokens issued to them
 * there and by `/server/refresh`. The server WebSocket (remote-control-socket.ts) admits a
 * handshake only with one of these tokens, so tests can drive every branch of Gatehouse's token
 * lifecycle (B.4) by forgetting servers, expiring tokens or shortening their lifetime.
 *
 * Tokens live in memory only and never reach a log line or an error message.
 */
import { randomBytes } from 'node:crypto';
import type { Exchange } from './exchange.js';
import { HttpError, readJson } from './http-io.js';

export const DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC = 3600;
/** A year: long enough for any test, short enough that `expires_at` stays a plain date. */
export const MAX_REMOTE_CONTROL_TOKEN_TTL_SEC = 366 * 86_400;
/** The body text of the one 404 that makes an app-server enroll again (spec B.3). */
export const SERVER_NOT_FOUND_DETAIL = 'Remote app server not found';

const MAX_BODY_BYTES = 64 * 1024;
/** Each this many issued tokens, the expired ones are dropped (refreshes would grow the map forever). */
const TOKEN_SWEEP_EVERY = 1024;

export interface RemoteEnrollment {
  serverId: string;
  environmentId: string;
  /** The enroll body's fields. */
  name: string;
  installationId: string;
  /** The enroll request's `chatgpt-account-id`. */
  accountId: string;
  os: string;
  arch: string;
  appServerVersion: string;
}

/** The answer of enroll and refresh, in the order of spec B.2. */
export interface RemoteEnrollmentAnswer {
  server_id: string;
  environment_id: string;
  remote_control_token: string;
  /** RFC 3339 UTC, whole seconds. */
  expires_at: string;
}

/** What the server WebSocket's handshake answers (refusals carry a `{"detail"}` body). */
export type RemoteAdmission =
  { ok: true; enrollment: RemoteEnrollment } | { ok: false; status: 400 | 401 | 403 | 404; detail: string };

export function isTokenTtl(value: unknown): boolean {
  return (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value >= 0 &&
    value <= MAX_REMOTE_CONTROL_TOKEN_TTL_SEC
  );
}

export const TOKEN_TTL_RULE = `an integer number of seconds from 0 to ${MAX_REMOTE_CONTROL_TOKEN_TTL_SEC}`;

export class RemoteEnrollments {
  private readonly enrolled = new Map<string, RemoteEnrollment>();
  /** token → its server and the end of its life (ms since the epoch, a whole second). */
  private readonly tokens = new Map<string, { serverId: string; expiresAtMs: number }>();
  private ttlSec = DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC;
  private issuedSinceSweep = 0;

  constructor(
    tokenTtlSec: number = DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC,
    private readonly now: () => number = Date.now,
  ) {
    this.tokenTtlSec = tokenTtlSec;
  }

  /** Lifetime of the tokens issued from now on; 0 issues tokens that are already expired. */
  get tokenTtlSec(): number {
    return this.ttlSec;
  }

  set tokenTtlSec(seconds: number) {
    if (!isTokenTtl(seconds)) throw new RangeError(`the token TTL must be ${TOKEN_TTL_RULE}, not ${seconds}`);
    this.ttlSec = seconds;
  }

  enroll(fields: Omit<RemoteEnrollment, 'serverId' | 'environmentId'>): RemoteEnrollmentAnswer {
    const enrollment: RemoteEnrollment = {
      serverId: `srv_e_${randomBytes(9).toString('hex')}`,
      environmentId: `env_${randomBytes(9).toString('hex')}`,
      ...fields,
    };
    this.enrolled.set(enrollment.serverId, enrollment);
    return this.issue(enrollment);
  }

  /** A new token for a known server (older ones stay valid); undefined when the server is unknown. */
  refresh(serverId: string): RemoteEnrollmentAnswer | undefined {
    const enrollment = this.enrolled.get(serverId);
    return enrollment && this.issue(enrollment);
  }

  get(serverId: string): RemoteEnrollment | undefined {
    return this.enrolled.get(serverId);
  }

  byEnvironment(environmentId: string): RemoteEnrollment | undefined {
    for (const e of this.enrolled.values()) if (e.environmentId === environmentId) return e;
    return undefined;
  }

  list(): RemoteEnrollment[] {
    return [...this.enrolled.values()].map((e) => ({ ...e }));
  }

  /**
   * Deletes the enrollment. Its tokens are kept, so that a handshake with one is told the
   * server is gone (404) rather than that the token is bad (401).
   */
  forget(serverId: string): boolean {
    return this.enrolled.delete(serverId);
  }

  /** Every token issued so far is now expired (to a handshake, expired and unknown look the same). */
  expireAll(): void {
    this.tokens.clear();
  }

  /**
   * The handshake's checks, in order: an issued, unexpired token (401); its server still
   * enrolled (404 with the detail codex recognises); `x-codex-server-id` present (400), naming
   * an enrolled server (404) and the token's own (403).
   */
  admit(authorization: string | undefined, serverIdHeader: string | undefined): RemoteAdmission {
    const token = /^Bearer +(\S+) *$/i.exec(authorization ?? '')?.[1];
    const issued = token === undefined ? undefined : this.tokens.get(token);
    if (!issued || issued.expiresAtMs <= this.now()) {
      return { ok: false, status: 401, detail: 'Unauthorized' };
    }
    const enrollment = this.enrolled.get(issued.serverId);
    if (!enrollment) return { ok: false, status: 404, detail: SERVER_NOT_FOUND_DETAIL };
    if (serverIdHeader === undefined || serverIdHeader.trim() === '') {
      return { ok: false, status: 400, detail: 'missing x-codex-server-id header' };
    }
    if (!this.enrolled.has(serverIdHeader)) {
      return { ok: false, status: 404, detail: SERVER_NOT_FOUND_DETAIL };
    }
    if (serverIdHeader !== issued.serverId) {
      return { ok: false, status: 403, detail: 'the remote control token was issued to another server' };
    }
    return { ok: true, enrollment };
  }

  private issue(enrollment: RemoteEnrollment): RemoteEnrollmentAnswer {
    if (++this.issuedSinceSweep >= TOKEN_SWEEP_EVERY) this.sweep();
    const token = `rct_${randomBytes(32).toString('base64url')}`;
    // Whole seconds, so that the token dies exactly at the `expires_at` the app-server reads.
    const expiresAtMs = (Math.floor(this.now() / 1000) + this.ttlSec) * 1000;
    this.tokens.set(token, { serverId: enrollment.serverId, expiresAtMs });
    return {
      server_id: enrollment.serverId,
      environment_id: enrollment.environmentId,
      remote_control_token: token,
      expires_at: rfc3339Seconds(expiresAtMs),
    };
  }

  private sweep(): void {
    this.issuedSinceSweep = 0;
    const now = this.now();
    for (const [token, issued] of this.tokens) if (issued.expiresAtMs <= now) this.tokens.delete(token);
  }
}

/** `2026-11-20T22:45:03Z`: RFC 3339 in UTC with whole seconds, as the real backend writes it. */
export function rfc3339Seconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `remote.enroll`: a new server and its first token. */
export async function remoteEnroll(x: Exchange): Promise<void> {
  const accountId = requireAccountId(x);
  const body = await readBodyObject(x);
  const field = (name: string): string => {
    const value = body[name];
    if (typeof value !== 'string') throw new HttpError(400, `${name} must be a string`);
    return value;
  };
  const enrollment = {
    name: field('name'),
    os: field('os'),
    arch: field('arch'),
    appServerVersion: field('app_server_version'),
    installationId: field('installation_id'),
    accountId,
  };
  const apns = body.apns_registration;
  if (apns !== undefined && (typeof apns !== 'object' || apns === null || Array.isArray(apns))) {
    throw new HttpError(400, 'apns_registration must be an object when present');
  }
  x.json(200, x.state.remoteEnrollments.enroll(enrollment));
}

/** `remote.refresh`: a new token for a known server. */
export async function remoteRefresh(x: Exchange): Promise<void> {
  requireAccountId(x);
  const body = await readBodyObject(x);
  for (const name of ['server_id', 'installation_id']) {
    if (typeof body[name] !== 'string') throw new HttpError(400, `${name} must be a string`);
  }
  const answer = x.state.remoteEnrollments.refresh(body.server_id as string);
  if (!answer) throw new HttpError(404, SERVER_NOT_FOUND_DETAIL);
  x.json(200, answer);
}

function requireAccountId(x: Exchange): string {
  const accountId = x.req.headers['chatgpt-account-id'];
  if (typeof accountId !== 'string' || accountId.trim() === '') {
    x.req.resume(); // the body is not needed; let the connection be reused
    throw new HttpError(400, 'missing chatgpt-account-id header');
  }
  return accountId;
}

async function readBodyObject(x: Exchange): Promise<Record<string, unknown>> {
  const body = await readJson(x.req, MAX_BODY_BYTES);
  x.body = body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'the request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}
