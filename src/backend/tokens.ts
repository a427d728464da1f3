/**
 * ChatGPT-style JWTs for the local backend, hosts and tests. Unsigned (`alg: none`): codex reads
 * the claims without checking a signature, and the local backend checks only shape and expiry,
 * so a signature would protect nothing here.
 */
export function mintJwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.${Buffer.from('unsigned').toString('base64url')}`;
}

export interface ChatgptIdentity {
  email: string;
  accountId: string;
  userId: string;
  planType: string;
  /** Lifetime from now; negative makes an already expired token. */
  expiresInSec: number;
}

/** The claim layout codex reads (spec C.2). */
export function chatgptClaims(id: ChatgptIdentity): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    email: id.email,
    iat: now,
    exp: now + id.expiresInSec,
    'https://api.openai.com/auth': {
      chatgpt_plan_type: id.planType,
      chatgpt_user_id: id.userId,
      user_id: id.userId,
      chatgpt_account_id: id.accountId,
    },
    'https://api.openai.com/profile': { email: id.email },
  };
}

/** The claims of a JWT, or undefined when the text is not one. */
export function readClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims)
      ? (claims as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
