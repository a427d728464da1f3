/** The credentials Gatehouse can hold: one kind at a time, for the whole broker. */
import type { ChatgptClaims } from '../../src/auth/jwt.js';

export type Credentials =
  | { mode: 'apikey'; apiKey: string }
  /** A browser login Gatehouse manages: stored in auth.json, refreshed against the issuer. */
  | {
      mode: 'chatgpt';
      idToken: string;
      accessToken: string;
      refreshToken: string;
      accountId: string | null;
      claims: ChatgptClaims;
    }
  /** Host-owned tokens: memory only; the host refreshes them when asked. */
  | {
      mode: 'chatgptAuthTokens';
      accessToken: string;
      accountId: string;
      planType: string;
      claims: ChatgptClaims;
      /** The connection that supplied them, which is asked for new ones. */
      owner: string;
    };

export function bearerOf(c: Credentials): string {
  return c.mode === 'apikey' ? c.apiKey : c.accessToken;
}

export function planTypeOf(c: Credentials): string | null {
  if (c.mode === 'apikey') return null;
  if (c.mode === 'chatgptAuthTokens') return c.planType;
  return c.claims.planType ?? 'unknown';
}

export function accountIdOf(c: Credentials): string | null {
  if (c.mode === 'apikey') return null;
  return c.accountId ?? c.claims.accountId;
}
