/**
 * Spec C against the local backend, through the built CLI: workspace routing discovery with
 * host-owned tokens, the refresh request it triggers on a 401 (every failure text of C.8), the
 * HTTPS rule, cloud requirements of workspace plans, and the browser login with PKCE.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import { chatgptClaims, mintJwt } from '../../src/backend/tokens.js';
import { TestClient, type RpcMessage } from '../helpers/app-server-process.js';

let backend: LocalBackend;

before(async () => {
  backend = await startLocalBackend({ port: 0 });
});

after(async () => {
  await TestClient.disposeAll();
  await backend.close();
});

function token(opts: { accountId?: string; planType?: string; expiresInSec?: number } = {}): string {
  return mintJwt(
    chatgptClaims({
      email: 'dev@example.com',
      accountId: opts.accountId ?? 'acct-1',
      userId: 'user-1',
      planType: opts.planType ?? 'plus',
      expiresInSec: opts.expiresInSec ?? 3600,
    }),
  );
}

function spawn(t: { after(fn: () => Promise<void>): void }, args: string[] = []): TestClient {
  const client = TestClient.spawn({
    args: ['-c', `chatgpt_base_url=${backend.chatgptBaseUrl}`, ...args],
    env: { CODEX_CA_CERTIFICATE: backend.caCertPath },
  });
  t.after(() => client.dispose());
  return client;
}

async function loginWithTokens(
  client: TestClient,
  accessToken: string,
  extra: Record<string, unknown> = {},
): Promise<RpcMessage> {
  return client.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken,
    chatgptAccountId: 'acct-1',
    ...extra,
  });
}

/** Every file under a folder, recursively, as text. */
function filesUnder(dir: string): { path: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile())
    .map((path) => ({ path, text: readFileSync(path, 'latin1') }));
}

describe('host-owned tokens and workspace routing discovery', () => {
  test('response, then accounts/check with the tokens, then login/completed and account/updated', async (t) => {
    const client = spawn(t);
    await client.initialize({ experimentalApi: true });
    backend.requests.length = 0;
    const access = token();
    const reply = await loginWithTokens(client, access);
    assert.deepEqual(reply.result, { type: 'chatgptAuthTokens' });
    const completed = await client.next();
    assert.equal(
      client.rawLine(completed).replace(/"emittedAtMs":\d+/, '"emittedAtMs":0'),
      '{"method":"account/login/completed","params":{"loginId":null,"success":true,"error":null,"onboardingEntrypoint":null},"emittedAtMs":0}',
    );
    const updated = await client.next();
    assert.deepEqual(updated.params, { authMode: 'chatgptAuthTokens', planType: 'plus' });

    const check = backend.requests.find((r) => r.route === 'accounts.check');
    assert.ok(check, 'accounts/check was called');
    assert.equal(check.headers.authorization, `Bearer ${access}`);
    assert.equal(check.headers['chatgpt-account-id'], 'acct-1');
    assert.equal(check.headers['x-oai-attestation'], undefined);

    const read = await client.request('account/read', {});
    const origin = new URL(backend.url).origin;
    assert.equal(
      client.rawLine(read),
      `{"id":${String(read.id)},"result":{"account":{"type":"chatgpt","email":"dev@example.com","planType":"plus","workspaceName":null},"userId":"user-1","requiresOpenaiAuth":true,"workspaceRouting":{"chatgptAccountId":"acct-1","backendOrigin":"${origin}","accountRoutingOverride":"NO_CONSTRAINT"}}}`,
    );
    const status = await client.request('getAuthStatus', { includeToken: true });
    assert.deepEqual(status.result, {
      authMethod: 'chatgptAuthTokens',
      authToken: access,
      requiresOpenaiAuth: true,
    });

    // In memory only: no file under CODEX_HOME and no log line holds the token.
    for (const file of filesUnder(client.codexHome)) assert.ok(!file.text.includes(access), file.path);
    assert.ok(!client.stderrText.includes(access));
  });

  test('an explicit plan type wins over the claim; a missing one falls back to the claim', async (t) => {
    const client = spawn(t);
    await client.initialize({ experimentalApi: true });
    await loginWithTokens(client, token({ planType: 'plus' }), { chatgptPlanType: 'pro' });
    await client.readUntilNotification('account/login/completed');
    assert.deepEqual((await client.readUntilNotification('account/updated')).params, {
      authMode: 'chatgptAuthTokens',
      planType: 'pro',
    });
  });

  test('a 401 from accounts/check asks the host for new tokens and retries discovery with them', async (t) => {
    const client = spawn(t);
    await client.initialize({ experimentalApi: true });
    const stale = token({ expiresInSec: -60 });
    const fresh = token();
    await loginWithTokens(client, stale);
    const refresh = await client.readUntil(
      (m) => m.method === 'account/chatgptAuthTokens/refresh',
      'refresh',
    );
    assert.equal(
      client.rawLine(refresh),
      `{"method":"account/chatgptAuthTokens/refresh","id":${String(refresh.id)},"params":{"reason":"unauthorized","previousAccountId":"acct-1"}}`,
    );
    await client.send({
      id: refresh.id,
      result: { accessToken: fresh, chatgptAccountId: 'acct-1', chatgptPlanType: null },
    });
    const completed = await client.readUntilNotification('account/login/completed');
    assert.equal((completed.params as { success: boolean }).success, true);
    // No account/updated after a refresh, but the login's own one follows.
    assert.deepEqual((await client.next()).params, { authMode: 'chatgptAuthTokens', planType: 'plus' });
    const status = await client.request('getAuthStatus', { includeToken: true });
    assert.equal((status.result as { authToken: string }).authToken, fresh);
  });

  for (const [name, answer, text] of [
    [
      'a JSON-RPC error',
      { error: { code: -32001, message: 'host says no: secret-detail' } },
      'workspace routing discovery failed',
    ],
    ['garbage', { result: { nope: true } }, 'workspace routing discovery failed'],
    [
      'a token that is not a JWT',
      { result: { accessToken: 'not-a-jwt', chatgptAccountId: 'acct-1' } },
      'workspace routing discovery failed',
    ],
  ] as const) {
    test(`a refresh answered with ${name} fails discovery; the broker keeps serving`, async (t) => {
      const client = spawn(t);
      await client.initialize({ experimentalApi: true });
      await loginWithTokens(client, token({ expiresInSec: -60 }));
      const refresh = await client.readUntil(
        (m) => m.method === 'account/chatgptAuthTokens/refresh',
        'refresh',
      );
      await client.send({ id: refresh.id, ...answer });
      const completed = await client.readUntilNotification('account/login/completed');
      assert.deepEqual(completed.params, {
        loginId: null,
        success: false,
        error: text,
        onboardingEntrypoint: null,
      });
      const read = await client.request('account/read', {});
      assert.deepEqual(read.error, { code: -32603, message: text });
      assert.ok(!client.stderrText.includes('secret-detail'));
    });
  }

  test('a refresh the host never answers times out after the configured deadline; a late answer is ignored', async (t) => {
    const client = spawn(t, ['-c', 'gatehouse.chatgpt_auth_tokens_refresh_timeout_ms=300']);
    await client.initialize({ experimentalApi: true });
    await loginWithTokens(client, token({ expiresInSec: -60 }));
    const refresh = await client.readUntil(
      (m) => m.method === 'account/chatgptAuthTokens/refresh',
      'refresh',
    );
    const completed = await client.readUntilNotification('account/login/completed');
    assert.equal((completed.params as { success: boolean }).success, false);
    await client.waitForStderr('auth refresh request timed out after 300ms');
    await client.send({ id: refresh.id, result: { accessToken: token(), chatgptAccountId: 'acct-1' } });
    await client.waitForStderr(`could not find callback for Integer(${String(refresh.id)})`);
    const ping = await client.request('account/read', {});
    assert.equal(ping.error?.code, -32603);
  });

  test('forced workspace: a refresh for another workspace is not used', async (t) => {
    const client = spawn(t, ['-c', 'forced_chatgpt_workspace_id="acct-1"']);
    await client.initialize({ experimentalApi: true });
    const stale = token({ expiresInSec: -60 });
    await loginWithTokens(client, stale);
    const refresh = await client.readUntil(
      (m) => m.method === 'account/chatgptAuthTokens/refresh',
      'refresh',
    );
    await client.send({
      id: refresh.id,
      result: { accessToken: token({ accountId: 'acct-2' }), chatgptAccountId: 'acct-2' },
    });
    await client.waitForStderr(
      'Login is restricted to workspace(s) acct-1, but current credentials belong to acct-2',
    );
    const status = await client.request('getAuthStatus', { includeToken: true });
    assert.equal((status.result as { authToken: string }).authToken, stale);
  });

  test('a workspace plan loads its cloud requirements first; five failures fail the login', async (t) => {
    const client = spawn(t, ['-c', 'gatehouse.retry_base_delay_ms=5']);
    await client.initialize({ experimentalApi: true });
    backend.faults.add({ route: 'config.bundle', action: { kind: 'status', status: 404 }, times: 5 });
    backend.requests.length = 0;
    const reply = await loginWithTokens(client, token({ planType: 'business' }), {
      chatgptPlanType: 'business',
    });
    assert.deepEqual(reply.result, { type: 'chatgptAuthTokens' });
    assert.equal(backend.requests.filter((r) => r.route === 'config.bundle').length, 5);
    const completed = await client.readUntilNotification('account/login/completed');
    const text = 'failed to load workspace requirements: cloud config: request failed (HTTP 404)';
    assert.deepEqual(completed.params, {
      loginId: null,
      success: false,
      error: text,
      onboardingEntrypoint: null,
    });
    assert.deepEqual((await client.request('account/read', {})).error, { code: -32603, message: text });
  });
});

test('an http:// backend is refused: workspace backend must use an HTTPS origin', async (t) => {
  const plain = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        accounts: [
          {
            id: 'acct-1',
            plan_type: 'pro',
            workspace_backend_origin: 'NO_CONSTRAINT',
            account_routing_override: 'NO_CONSTRAINT',
            structure: 'personal',
          },
        ],
        account_ordering: ['acct-1'],
        default_account_id: 'acct-1',
      }),
    );
  });
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  t.after(() => plain.close());
  const url = `http://127.0.0.1:${(plain.address() as AddressInfo).port}/backend-api`;
  const client = TestClient.spawn({ args: ['-c', `chatgpt_base_url=${url}`] });
  t.after(() => client.dispose());
  await client.initialize({ experimentalApi: true });
  await loginWithTokens(client, token());
  const completed = await client.readUntilNotification('account/login/completed');
  const text = 'workspace backend must use an HTTPS origin without credentials';
  assert.deepEqual(completed.params, {
    loginId: null,
    success: false,
    error: text,
    onboardingEntrypoint: null,
  });
  assert.deepEqual((await client.request('account/read', {})).error, { code: -32603, message: text });
});

describe('browser login with PKCE against the local issuer', () => {
  function spawnBrowser(t: { after(fn: () => Promise<void>): void }): TestClient {
    return spawn(t, [
      '-c',
      `gatehouse.login_issuer="${backend.issuer}"`,
      '-c',
      'gatehouse.login_callback_port=0',
    ]);
  }

  /** Plays the browser: the issuer's authorize page redirects to the callback, which we follow. */
  function getWithCa(url: string): Promise<{ status: number; location?: string }> {
    return new Promise((resolve, reject) => {
      httpsRequest(url, { ca: backend.caCertPem }, (res) => {
        res.resume();
        resolve({
          status: res.statusCode ?? 0,
          ...(res.headers.location ? { location: res.headers.location } : {}),
        });
      })
        .on('error', reject)
        .end();
    });
  }

  test('authUrl → issuer → callback → tokens stored 0600 → completed and updated', async (t) => {
    const client = spawnBrowser(t);
    await client.initialize({ name: 'gatehouse_test' });
    const reply = await client.request('account/login/start', { type: 'chatgpt' });
    const { loginId, authUrl } = reply.result as { loginId: string; authUrl: string };
    assert.match(loginId, /^[0-9a-f-]{36}$/);
    const parsed = new URL(authUrl);
    assert.equal(parsed.origin + parsed.pathname, `${new URL(backend.issuer).origin}/oauth/authorize`);
    assert.equal(parsed.searchParams.get('client_id'), 'app_EMoamEEZ73f0CkXaXp7hrann');
    assert.equal(parsed.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(parsed.searchParams.get('originator'), 'gatehouse_test');
    assert.match(
      parsed.searchParams.get('redirect_uri') ?? '',
      /^http:\/\/127\.0\.0\.1:\d+\/auth\/callback$/,
    );

    const authorize = await getWithCa(authUrl);
    assert.equal(authorize.status, 302);
    const callback = await fetch(authorize.location!);
    assert.equal(callback.status, 200);
    await callback.text();

    const completed = await client.readUntilNotification('account/login/completed');
    assert.deepEqual(completed.params, { loginId, success: true, error: null, onboardingEntrypoint: null });
    assert.deepEqual((await client.readUntilNotification('account/updated')).params, {
      authMode: 'chatgpt',
      planType: 'plus',
    });
    const file = join(client.codexHome, 'auth.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { tokens: { access_token: string } };
    assert.ok(stored.tokens.access_token.split('.').length === 3);
    assert.ok(!client.stderrText.includes(stored.tokens.access_token));
    const read = await client.request('account/read', {});
    assert.equal((read.result as { account: { type: string } }).account.type, 'chatgpt');
  });

  test('a new browser login replaces the pending one; cancel ends a login; both are announced', async (t) => {
    const client = spawnBrowser(t);
    await client.initialize();
    const first = (await client.request('account/login/start', { type: 'chatgpt' })).result as {
      loginId: string;
    };
    const second = (await client.request('account/login/start', { type: 'chatgpt' })).result as {
      loginId: string;
    };
    assert.notEqual(first.loginId, second.loginId);
    assert.deepEqual((await client.next()).params, {
      loginId: first.loginId,
      success: false,
      error: 'Login server error: Login cancelled',
      onboardingEntrypoint: null,
    });
    const cancel = await client.request('account/login/cancel', { loginId: second.loginId });
    assert.deepEqual(cancel.result, { status: 'canceled' });
    assert.deepEqual((await client.next()).params, {
      loginId: second.loginId,
      success: false,
      error: 'Login server error: Login was not completed',
      onboardingEntrypoint: null,
    });
    assert.deepEqual((await client.request('account/login/cancel', { loginId: second.loginId })).result, {
      status: 'notFound',
    });
  });
});
