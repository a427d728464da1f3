/**
 * The OAuth issuer of the local backend, for the browser login (spec C.2): an authorize page that
 * approves the configured user at once, and a token endpoint with PKCE (S256 only), single-use
 * codes and rotating refresh tokens. No network or HTTP here; local-backend.ts adapts it.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { chatgptClaims, mintJwt, readClaims, type ChatgptUser } from './tokens.js';

export const TOKEN_LIFETIME_SEC = 3600;
const CODE_LIFETIME_MS = 10 * 60 * 1000;
/** Bounds of the remembered codes and refresh tokens (the oldest are forgotten first). */
const MAX_CODES = 10_000;
const MAX_REFRESH_TOKENS = 10_000;

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** A refused authorize request: the text is shown to the person in the browser. */
export class AuthorizeError extends Error {
  override name = 'AuthorizeError';
}

/** An OAuth error answer of the token endpoint (RFC 6749 5.2), always HTTP 400. */
export class TokenError extends Error {
  override name = 'TokenError';
  constructor(
    readonly error: 'invalid_request' | 'invalid_grant' | 'unsupported_grant_type',
    readonly description: string,
  ) {
    super(description);
  }
}

interface PendingCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  expiresAt: number;
}

export class OAuthIssuer {
  private readonly codes = new Map<string, PendingCode>();
  private readonly refreshTokens = new Map<string, { clientId: string }>();

  constructor(
    private readonly issuer: string,
    private readonly user: Readonly<ChatgptUser>,
  ) {}

  /** The redirect (`<redirect_uri>?code=…&state=…`) that approves the configured user. */
  authorize(query: URLSearchParams): string {
    const required = ['response_type', 'client_id', 'redirect_uri', 'code_challenge', 'state'];
    const missing = required.filter((k) => !query.get(k));
    if (missing.length > 0) throw new AuthorizeError(`missing parameter(s): ${missing.join(', ')}`);
    if (query.get('response_type') !== 'code') throw new AuthorizeError('response_type must be "code"');
    if (query.get('code_challenge_method') !== 'S256') {
      throw new AuthorizeError('code_challenge_method must be "S256" (PKCE is required)');
    }
    const challenge = query.get('code_challenge')!;
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      throw new AuthorizeError('code_challenge must be base64url(sha256(verifier)): 43 characters');
    }
    const redirectUri = query.get('redirect_uri')!;
    if (!isLoopbackHttpUrl(redirectUri)) {
      throw new AuthorizeError(
        'redirect_uri must be an http URL on loopback (127.0.0.1, [::1] or localhost)',
      );
    }
    const code = randomBytes(24).toString('base64url');
    remember(this.codes, code, MAX_CODES, {
      clientId: query.get('client_id')!,
      redirectUri,
      challenge,
      expiresAt: Date.now() + CODE_LIFETIME_MS,
    });
    const target = new URL(redirectUri);
    target.searchParams.set('code', code);
    target.searchParams.set('state', query.get('state')!);
    return target.toString();
  }

  /** The token endpoint; throws TokenError for every refusal. */
  token(params: Record<string, string>): Record<string, unknown> {
    switch (params.grant_type) {
      case 'authorization_code':
        return this.exchangeCode(params);
      case 'refresh_token':
        return this.refresh(params);
      case TOKEN_EXCHANGE_GRANT:
        return this.exchangeForApiKey(params);
      case undefined:
      case '':
        throw new TokenError('invalid_request', 'grant_type is required');
      default:
        throw new TokenError(
          'unsupported_grant_type',
          `grant_type must be authorization_code, refresh_token or ${TOKEN_EXCHANGE_GRANT}`,
        );
    }
  }

  private exchangeCode(params: Record<string, string>): Record<string, unknown> {
    const missing = ['code', 'redirect_uri', 'client_id', 'code_verifier'].filter((k) => !params[k]);
    if (missing.length > 0)
      throw new TokenError('invalid_request', `missing parameter(s): ${missing.join(', ')}`);
    const grant = this.codes.get(params.code!);
    // A code is used up by any attempt, right or wrong: a guessed verifier gets one try.
    this.codes.delete(params.code!);
    if (!grant || grant.expiresAt < Date.now()) {
      throw new TokenError('invalid_grant', 'authorization code is unknown, expired or already used');
    }
    if (params.client_id !== grant.clientId)
      throw new TokenError('invalid_grant', 'client_id does not match');
    if (params.redirect_uri !== grant.redirectUri) {
      throw new TokenError('invalid_grant', 'redirect_uri does not match');
    }
    const computed = createHash('sha256').update(params.code_verifier!).digest('base64url');
    if (computed !== grant.challenge) {
      throw new TokenError('invalid_grant', 'code_verifier does not match the code_challenge (PKCE S256)');
    }
    return this.issue(grant.clientId);
  }

  private refresh(params: Record<string, string>): Record<string, unknown> {
    if (!params.refresh_token) throw new TokenError('invalid_request', 'refresh_token is required');
    const known = this.refreshTokens.get(params.refresh_token);
    if (!known) throw new TokenError('invalid_grant', 'refresh token is unknown or was already used');
    if (params.client_id && params.client_id !== known.clientId) {
      throw new TokenError('invalid_grant', 'client_id does not match');
    }
    this.refreshTokens.delete(params.refresh_token); // rotation: each refresh token works once
    return this.issue(known.clientId);
  }

  /** codex's optional second step of a browser login: an API key for the signed-in user. */
  private exchangeForApiKey(params: Record<string, string>): Record<string, unknown> {
    if (params.requested_token !== 'openai-api-key') {
      throw new TokenError('invalid_request', 'requested_token must be "openai-api-key"');
    }
    if (!params.subject_token || !readClaims(params.subject_token)) {
      throw new TokenError('invalid_grant', 'subject_token must be an id token issued here');
    }
    return { access_token: `sk-local-${randomBytes(24).toString('base64url')}` };
  }

  private issue(clientId: string): Record<string, unknown> {
    const claims = chatgptClaims({ ...this.user, expiresInSec: TOKEN_LIFETIME_SEC });
    const refreshToken = `rt_${randomBytes(24).toString('base64url')}`;
    remember(this.refreshTokens, refreshToken, MAX_REFRESH_TOKENS, { clientId });
    return {
      id_token: mintJwt({ ...claims, iss: this.issuer, aud: clientId, sub: this.user.userId }),
      access_token: mintJwt({ ...claims, iss: this.issuer, jti: randomUUID() }), // not the id token's jti
      refresh_token: refreshToken,
      token_type: 'Bearer',
      expires_in: TOKEN_LIFETIME_SEC,
    };
  }
}

/** Adds to a bounded map, forgetting the oldest entries (Map keeps insertion order). */
function remember<V>(map: Map<string, V>, key: string, max: number, value: V): void {
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value!);
}

function isLoopbackHttpUrl(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (
    url.protocol === 'http:' &&
    url.username === '' &&
    url.password === '' &&
    (url.hostname === 'localhost' || url.hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(url.hostname))
  );
}
