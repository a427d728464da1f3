/**
 * ChatGPT-style JWTs for the local backend, hosts, demos and tests (host-owned tokens).
 *
 * Tokens are HS256 with a random per-process secret. Nobody verifies the signature — codex reads
 * the claims without checking it, and the local backend checks only shape, expiry and
 * revocation, so that tokens minted by a test process are accepted by a backend running as a
 * child process. We still sign rather than use `alg: none` so the tokens look like real ones to
 * any parser: three non-empty parts and an algorithm that JWT libraries do not refuse on sight
 * (an empty or `none` signature is rejected by several of them, and by codex's own parser).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';

const SIGNING_SECRET = randomBytes(32);

export const AUTH_CLAIM = 'https://api.openai.com/auth';
export const PROFILE_CLAIM = 'https://api.openai.com/profile';

export function mintJwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signingInput = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  const signature = createHmac('sha256', SIGNING_SECRET).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/** Who a token speaks for; the local backend's issuer signs in one such user. */
export interface ChatgptUser {
  email: string;
  accountId: string;
  userId: string;
  /** A codex PlanType such as `plus`, `pro`, `business`. */
  planType: string;
}

export const DEFAULT_LOCAL_USER: Readonly<ChatgptUser> = Object.freeze({
  email: 'dev@example.com',
  accountId: 'acct-1',
  userId: 'user-1',
  planType: 'plus',
});

export interface ChatgptIdentity extends ChatgptUser {
  /** Lifetime from now in seconds; a negative value makes an already expired token. */
  expiresInSec: number;
  /** "Now" in seconds since the epoch (default: the clock). */
  nowSec?: number;
}

/**
 * The claim layout codex reads (spec C.2): email, plan, user and account ids, expiry. A random
 * `jti` makes every token distinct, so revoking one token never revokes its twin minted in the
 * same second.
 */
export function chatgptClaims(id: ChatgptIdentity): Record<string, unknown> {
  const now = id.nowSec ?? Math.floor(Date.now() / 1000);
  return {
    email: id.email,
    iat: now,
    exp: now + id.expiresInSec,
    jti: randomUUID(),
    [AUTH_CLAIM]: {
      chatgpt_plan_type: id.planType,
      chatgpt_user_id: id.userId,
      user_id: id.userId,
      chatgpt_account_id: id.accountId,
    },
    [PROFILE_CLAIM]: { email: id.email },
  };
}

/**
 * The claims of a JWT: three non-empty base64url parts whose middle one is a JSON object.
 * Undefined when the text is not shaped like a JWT. The signature is not checked (see above).
 */
export function readClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims)
      ? (claims as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** `https://api.openai.com/auth`.chatgpt_plan_type of a JWT, when it has one. */
export function planTypeOf(claims: Record<string, unknown> | undefined): string | undefined {
  const auth = claims?.[AUTH_CLAIM];
  if (typeof auth !== 'object' || auth === null) return undefined;
  const plan = (auth as Record<string, unknown>).chatgpt_plan_type;
  return typeof plan === 'string' && plan !== '' ? plan : undefined;
}
