/**
 * The local backend's OAuth issuer over real sockets: the authorize redirect, the code exchange
 * with PKCE S256 (success, mismatch, reuse), refresh token rotation, and the API-key exchange.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { requestLocalBackend, type BackendResponse } from '../../src/backend/control-client.js';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import { readClaims } from '../../src/backend/tokens.js';

const CLIENT_ID = 'app_EMoamEEZ73f0CkXaXp7hrann';
const REDIRECT = 'http://localhost:1455/auth/callback';

let backend: LocalBackend;
before(async () => {
  backend = await startLocalBackend({
    user: { email: 'ada@example.com', accountId: 'acct-9', userId: 'user-9' },
  });
});
after(() => backend.close());

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorize(params: Record<string, string>): Promise<BackendResponse> {
  return requestLocalBackend(`${backend.issuer}/oauth/authorize?${new URLSearchParams(params).toString()}`, {
    ca: backend.caCertPem,
  });
}

function authorizeParams(challenge: string): Record<string, string> {
  return {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'st-123',
    scope: 'openid profile email offline_access',
  };
}

function token(params: Record<string, string>, as: 'form' | 'json' = 'form'): Promise<BackendResponse> {
  return requestLocalBackend(`${backend.issuer}/oauth/token`, {
    method: 'POST',
    headers: {
      'content-type': as === 'form' ? 'application/x-www-form-urlencoded' : 'application/json',
    },
    body: as === 'form' ? new URLSearchParams(params).toString() : JSON.stringify(params),
    ca: backend.caCertPem,
  });
}

async function codeFor(challenge: string): Promise<string> {
  const answer = await authorize(authorizeParams(challenge));
  assert.equal(answer.status, 302);
  return new URL(answer.headers.location!).searchParams.get('code')!;
}

const exchange = (code: string, verifier: string) =>
  token({
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT,
    client_id: CLIENT_ID,
    code_verifier: verifier,
  });

test('authorize approves at once: 302 to redirect_uri with a code and the state', async () => {
  const { challenge } = pkce();
  const answer = await authorize(authorizeParams(challenge));
  assert.equal(answer.status, 302);
  const location = new URL(answer.headers.location!);
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT);
  assert.equal(location.searchParams.get('state'), 'st-123');
  assert.match(location.searchParams.get('code') ?? '', /^[A-Za-z0-9_-]{20,}$/);
});

test('authorize refuses missing or invalid parameters with a 400 that says which', async () => {
  const { challenge } = pkce();
  const cases: [Record<string, string | undefined>, RegExp][] = [
    [{ state: undefined, client_id: undefined }, /missing parameter\(s\): client_id, state/],
    [{ response_type: 'token' }, /response_type must be "code"/],
    [{ code_challenge_method: 'plain' }, /code_challenge_method must be "S256"/],
    [{ code_challenge: 'short' }, /code_challenge must be base64url/],
    [{ redirect_uri: 'https://evil.example/cb' }, /redirect_uri must be an http URL on loopback/],
    [{ redirect_uri: 'not a url' }, /redirect_uri must be/],
  ];
  for (const [change, message] of cases) {
    const params = { ...authorizeParams(challenge), ...change };
    for (const [k, v] of Object.entries(params)) if (v === undefined) delete params[k];
    const answer = await authorize(params as Record<string, string>);
    assert.equal(answer.status, 400, JSON.stringify(change));
    assert.match(answer.headers['content-type'] ?? '', /^text\/plain/);
    assert.match(answer.body, message);
  }
});

test('the code exchange with the right verifier gives tokens for the configured user', async () => {
  const { verifier, challenge } = pkce();
  const answer = await exchange(await codeFor(challenge), verifier);
  assert.equal(answer.status, 200);
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  assert.equal(body.expires_in, 3600);
  assert.match(body.refresh_token as string, /^rt_/);
  const id = readClaims(body.id_token as string)!;
  const access = readClaims(body.access_token as string)!;
  assert.equal(id.email, 'ada@example.com');
  assert.equal(id.aud, CLIENT_ID);
  assert.equal(id.iss, backend.issuer);
  assert.deepEqual(access['https://api.openai.com/auth'], {
    chatgpt_plan_type: 'plus',
    chatgpt_user_id: 'user-9',
    user_id: 'user-9',
    chatgpt_account_id: 'acct-9',
  });
  assert.ok((access.exp as number) > Date.now() / 1000 + 3500);
  // The access token works against /backend-api.
  const check = await requestLocalBackend(`${backend.chatgptBaseUrl}/wham/accounts/check`, {
    headers: { authorization: `Bearer ${body.access_token as string}`, 'chatgpt-account-id': 'acct-9' },
    ca: backend.caCertPem,
  });
  assert.equal(check.status, 200);
});

test('a wrong verifier is invalid_grant, and the code is then used up', async () => {
  const { verifier, challenge } = pkce();
  const code = await codeFor(challenge);
  const wrong = await exchange(code, pkce().verifier);
  assert.equal(wrong.status, 400);
  assert.deepEqual(JSON.parse(wrong.body), {
    error: 'invalid_grant',
    error_description: 'code_verifier does not match the code_challenge (PKCE S256)',
  });
  const retry = await exchange(code, verifier);
  assert.equal((JSON.parse(retry.body) as { error: string }).error, 'invalid_grant');
});

test('a code works once', async () => {
  const { verifier, challenge } = pkce();
  const code = await codeFor(challenge);
  assert.equal((await exchange(code, verifier)).status, 200);
  const again = await exchange(code, verifier);
  assert.equal(again.status, 400);
  assert.deepEqual(JSON.parse(again.body), {
    error: 'invalid_grant',
    error_description: 'authorization code is unknown, expired or already used',
  });
});

test('redirect_uri and client_id must match the authorize request', async () => {
  const { verifier, challenge } = pkce();
  const otherRedirect = await token({
    grant_type: 'authorization_code',
    code: await codeFor(challenge),
    redirect_uri: 'http://localhost:9999/cb',
    client_id: CLIENT_ID,
    code_verifier: verifier,
  });
  assert.match(otherRedirect.body, /redirect_uri does not match/);
  const otherClient = await token({
    grant_type: 'authorization_code',
    code: await codeFor(challenge),
    redirect_uri: REDIRECT,
    client_id: 'someone-else',
    code_verifier: verifier,
  });
  assert.match(otherClient.body, /client_id does not match/);
});

test('refresh tokens rotate: form or JSON, each refresh token works once', async () => {
  const { verifier, challenge } = pkce();
  const first = JSON.parse((await exchange(await codeFor(challenge), verifier)).body) as {
    refresh_token: string;
  };
  const refreshed = await token(
    { grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: CLIENT_ID },
    'json',
  );
  assert.equal(refreshed.status, 200);
  const second = JSON.parse(refreshed.body) as Record<string, string>;
  assert.ok(readClaims(second.access_token!));
  assert.notEqual(second.refresh_token, first.refresh_token);
  const reused = await token({
    grant_type: 'refresh_token',
    refresh_token: first.refresh_token,
    client_id: CLIENT_ID,
  });
  assert.deepEqual(JSON.parse(reused.body), {
    error: 'invalid_grant',
    error_description: 'refresh token is unknown or was already used',
  });
  assert.equal(
    (await token({ grant_type: 'refresh_token', refresh_token: second.refresh_token! })).status,
    200,
  );
});

test('other token requests: unknown grants, missing parameters, wrong content type', async () => {
  const unknown = await token({ grant_type: 'password' });
  assert.equal(unknown.status, 400);
  assert.equal((JSON.parse(unknown.body) as { error: string }).error, 'unsupported_grant_type');
  const missing = await token({ grant_type: 'authorization_code', code: 'x' });
  assert.deepEqual(JSON.parse(missing.body), {
    error: 'invalid_request',
    error_description: 'missing parameter(s): redirect_uri, client_id, code_verifier',
  });
  const text = await requestLocalBackend(`${backend.issuer}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: 'grant_type=refresh_token',
    ca: backend.caCertPem,
  });
  assert.equal(text.status, 400);
  assert.match(text.body, /content-type must be application\/x-www-form-urlencoded or application\/json/);
});

test('the token exchange for an API key (codex login step two) returns an sk- key', async () => {
  const { verifier, challenge } = pkce();
  const tokens = JSON.parse((await exchange(await codeFor(challenge), verifier)).body) as {
    id_token: string;
  };
  const answer = await token({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    client_id: CLIENT_ID,
    requested_token: 'openai-api-key',
    subject_token: tokens.id_token,
    subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
  });
  assert.equal(answer.status, 200);
  assert.match((JSON.parse(answer.body) as { access_token: string }).access_token, /^sk-local-/);
});
