/** The issuer's token endpoint: exchanging an authorization code, refreshing a managed login. */
import type { BackendClient } from '../broker/services.js';
import type { IssuedTokens } from './browser-login.js';

const TOKEN_TIMEOUT_MS = 30_000;

export async function issuerTokens(
  backend: BackendClient,
  issuer: string,
  form: Record<string, string>,
): Promise<IssuedTokens> {
  const { status, body } = await backend.postForm(`${issuer.replace(/\/+$/, '')}/oauth/token`, form, {
    timeoutMs: TOKEN_TIMEOUT_MS,
  });
  const b = (body ?? {}) as Record<string, unknown>;
  if (status < 200 || status >= 300) {
    // The issuer's error code is safe to show; its description may echo what was sent.
    const code = typeof b.error === 'string' ? b.error : `HTTP ${status}`;
    throw new Error(`token exchange failed: ${code}`);
  }
  if (typeof b.id_token !== 'string' || typeof b.access_token !== 'string') {
    throw new Error('token exchange failed: the issuer sent no tokens');
  }
  return {
    idToken: b.id_token,
    accessToken: b.access_token,
    refreshToken: typeof b.refresh_token === 'string' ? b.refresh_token : '',
  };
}
