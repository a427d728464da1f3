/**
 * Reading the claims codex reads from a ChatGPT JWT. The signature is not checked: the token is
 * only ever sent back to the backend that issued it, which checks it; here it is parsed for the
 * account metadata (email, plan, user), as codex does.
 */
const AUTH_CLAIM = 'https://api.openai.com/auth';
const PROFILE_CLAIM = 'https://api.openai.com/profile';

export interface ChatgptClaims {
  email: string | null;
  planType: string | null;
  userId: string | null;
  accountId: string | null;
  /** Expiry in seconds since the epoch, when the token has one. */
  expiresAt: number | null;
}

export class InvalidJwtError extends Error {
  override name = 'InvalidJwtError';
  constructor() {
    // codex's wording; deliberately says nothing about the token's content.
    super('invalid ID token format');
  }
}

export function parseChatgptJwt(token: string): ChatgptClaims {
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((p) => p === '' || !/^[A-Za-z0-9_-]+=*$/.test(p))) {
    throw new InvalidJwtError();
  }
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidJwtError();
  }
  if (!isRecord(payload)) throw new InvalidJwtError();
  const auth = isRecord(payload[AUTH_CLAIM]) ? payload[AUTH_CLAIM] : {};
  const profile = isRecord(payload[PROFILE_CLAIM]) ? payload[PROFILE_CLAIM] : {};
  return {
    email: text(payload.email) ?? text(profile.email),
    planType: text(auth.chatgpt_plan_type),
    userId: text(auth.chatgpt_user_id) ?? text(auth.user_id),
    accountId: text(auth.chatgpt_account_id),
    expiresAt: typeof payload.exp === 'number' ? payload.exp : null,
  };
}

function text(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
