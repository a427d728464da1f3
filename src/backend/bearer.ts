/**
 * The `/backend-api` bearer check, as strict as a real backend on what it can see without
 * knowing the issuer's keys: an API key (`sk-…`), or a JWT that is shaped like one, has not
 * expired and has not been revoked. Signatures are not checked (see tokens.ts).
 */
import { readClaims } from './tokens.js';

export type BearerVerdict =
  | { ok: true; kind: 'apiKey' }
  | { ok: true; kind: 'jwt'; claims: Record<string, unknown> }
  | { ok: false; reason: 'missing' | 'malformed' | 'revoked' | 'expired' };

export function checkBearer(
  authorization: string | undefined,
  revoked: ReadonlySet<string>,
  nowMs: number = Date.now(),
): BearerVerdict {
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  if (!match) return { ok: false, reason: 'missing' };
  const token = match[1]!;
  if (revoked.has(token)) return { ok: false, reason: 'revoked' };
  if (token.startsWith('sk-')) return { ok: true, kind: 'apiKey' };
  const claims = readClaims(token);
  if (!claims) return { ok: false, reason: 'malformed' };
  if (claims.exp !== undefined) {
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp))
      return { ok: false, reason: 'malformed' };
    if (claims.exp * 1000 <= nowMs) return { ok: false, reason: 'expired' };
  }
  return { ok: true, kind: 'jwt', claims };
}

/** The answer to a refused bearer, over HTTP and on a refused WebSocket handshake. */
export const UNAUTHORIZED_BODY = JSON.stringify({ detail: 'Unauthorized' });
