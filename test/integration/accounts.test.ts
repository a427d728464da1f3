/**
 * Spec C (accounts) through the built CLI over stdio, with no backend: `chatgpt_base_url` points
 * at a closed port, so workspace routing discovery fails at once and every login with host-owned
 * tokens ends with `workspace routing discovery failed`. What is checked here is what needs no
 * backend: API-key logins and auth.json, logout, the login policy of config (`forced_login_method`,
 * `forced_chatgpt_workspace_id`), the order of checks, the exact serde texts of bad input, and
 * that secrets stay out of logs and files. Every reply is read with `call`, which fails when
 * anything arrives before it, so "nothing between" holds for every step.
 *
 * The last describe block needs the local backend (managed ChatGPT auth on disk, spec B.3/C.5).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startLocalBackend } from '../../src/backend/local-backend.js';
import {
  TestClient,
  initializeParams,
  isResponseTo,
  type RpcMessage,
} from '../helpers/app-server-process.js';

/** Nothing listens on port 1: discovery fails fast with ECONNREFUSED. */
const CLOSED_BASE_URL = 'https://127.0.0.1:1/backend-api';

const DISCOVERY_FAILED = 'workspace routing discovery failed';
const EXTERNAL_AUTH_ACTIVE =
  'External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it.';
const CHATGPT_DISABLED = 'ChatGPT login is disabled. Use API key login instead.';
const EXTERNAL_DISABLED = 'External ChatGPT auth is disabled. Use API key login instead.';
const API_KEY_DISABLED = 'API key login is disabled. Use ChatGPT login instead.';
const EXPERIMENTAL_TOKENS = 'account/login/start.chatgptAuthTokens requires experimentalApi capability';
const BAD_JWT = 'failed to set external auth: invalid ID token format';
const COMMA_LIST_REFUSED =
  'forced_chatgpt_workspace_id must be a single workspace id; write several as a list: ["ws-a", "ws-b"]';

const READ_NOBODY = { account: null, userId: null, requiresOpenaiAuth: true, workspaceRouting: null };
const READ_API_KEY = {
  account: { type: 'apiKey' },
  userId: null,
  requiresOpenaiAuth: true,
  workspaceRouting: null,
};
const STATUS_NOBODY = { authMethod: null, authToken: null, requiresOpenaiAuth: true };
const LOGIN_OK = { loginId: null, success: true, error: null, onboardingEntrypoint: null };
const LOGIN_DISCOVERY_FAILED = {
  loginId: null,
  success: false,
  error: DISCOVERY_FAILED,
  onboardingEntrypoint: null,
};
const LOGGED_OUT = { authMode: null, planType: null };

interface TestContextLike {
  after(fn: () => Promise<void> | void): void;
}

after(async () => {
  await TestClient.disposeAll();
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** A server pointed at the closed port; the browser-login port is 0 so no test can take 1455. */
function spawnServer(t: TestContextLike, opts: { args?: string[]; codexHome?: string } = {}): TestClient {
  const client = TestClient.spawn({
    args: [
      '-c',
      `chatgpt_base_url=${CLOSED_BASE_URL}`,
      '-c',
      'gatehouse.login_callback_port=0',
      ...(opts.args ?? []),
    ],
    logLevel: 'debug',
    ...(opts.codexHome !== undefined ? { codexHome: opts.codexHome } : {}),
  });
  t.after(() => client.dispose());
  return client;
}

/** A CODEX_HOME that outlives one server (restarts), removed when the test ends. */
function tempHome(t: TestContextLike, configToml?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-accounts-'));
  if (configToml !== undefined) writeFileSync(join(dir, 'config.toml'), configToml);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** An unsigned host-owned access token with codex's claims layout; unique per call. */
function hostToken(opts: { accountId?: string; planType?: string } = {}): string {
  const claims = {
    email: 'dev@example.com',
    'https://api.openai.com/auth': {
      chatgpt_plan_type: opts.planType ?? 'plus',
      chatgpt_user_id: 'user-1',
      chatgpt_account_id: opts.accountId ?? 'acct-1',
    },
    exp: Math.floor(Date.now() / 1000) + 3600,
    jti: randomBytes(8).toString('hex'),
  };
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.${randomBytes(16).toString('base64url')}`;
}

function apiKey(): string {
  return `sk-test-${randomBytes(12).toString('hex')}`;
}

/**
 * Sends a request and requires its answer to be the very next message. A successful `initialize`
 * is followed by the remote-control status greeting every connection gets; it is read here too.
 */
async function call(client: TestClient, method: string, params?: unknown): Promise<RpcMessage> {
  const id = await client.sendRequest(method, params);
  const m = await client.next();
  assert.ok(isResponseTo(id)(m), `expected the answer to ${String(id)} first, got ${client.rawLine(m)}`);
  if (method === 'initialize' && m.result) {
    assert.equal((await client.next()).method, 'remoteControl/status/changed');
  }
  return m;
}

/** `{"id":ID,"result":R}` exactly, key order included. */
function assertResult(client: TestClient, reply: RpcMessage, result: unknown): void {
  assert.deepEqual(reply, { id: reply.id, result }, client.rawLine(reply));
  assert.equal(
    client.rawLine(reply),
    `{"id":${JSON.stringify(reply.id)},"result":${JSON.stringify(result)}}`,
  );
}

/** `{"error":{"code":C,"message":M},"id":ID}` exactly: no `data`, no `jsonrpc`. */
function assertError(client: TestClient, reply: RpcMessage, message: string, code = -32600): void {
  assert.deepEqual(reply, { error: { code, message }, id: reply.id }, client.rawLine(reply));
  assert.equal(
    client.rawLine(reply),
    `{"error":${JSON.stringify({ code, message })},"id":${JSON.stringify(reply.id)}}`,
  );
}

/** `{"method":M,"params":P,"emittedAtMs":<recent ms>}` exactly. */
function assertNotification(client: TestClient, m: RpcMessage, method: string, params: unknown): void {
  const raw = client.rawLine(m);
  assert.equal(
    raw.replace(/"emittedAtMs":\d+\}$/, '"emittedAtMs":0}'),
    `{"method":${JSON.stringify(method)},"params":${JSON.stringify(params)},"emittedAtMs":0}`,
  );
  assert.ok(Math.abs(Date.now() - (m.emittedAtMs ?? 0)) < 60_000, raw);
}

async function expectResult(client: TestClient, method: string, params: unknown, result: unknown) {
  assertResult(client, await call(client, method, params), result);
}

async function expectError(
  client: TestClient,
  method: string,
  params: unknown,
  message: string,
  code = -32600,
): Promise<void> {
  assertError(client, await call(client, method, params), message, code);
}

/** An API-key login with its exact sequence: response, login/completed, account/updated. */
async function loginApiKey(client: TestClient, key: string): Promise<void> {
  await expectResult(client, 'account/login/start', { type: 'apiKey', apiKey: key }, { type: 'apiKey' });
  assertNotification(client, await client.next(), 'account/login/completed', LOGIN_OK);
  assertNotification(client, await client.next(), 'account/updated', { authMode: 'apikey', planType: null });
}

/** A host-token login against the closed port: response, then a failed login/completed only. */
async function loginTokens(
  client: TestClient,
  accessToken: string,
  chatgptAccountId = 'acct-1',
  extra: Record<string, unknown> = {},
): Promise<void> {
  await expectResult(
    client,
    'account/login/start',
    { type: 'chatgptAuthTokens', accessToken, chatgptAccountId, ...extra },
    { type: 'chatgptAuthTokens' },
  );
  assertNotification(client, await client.next(), 'account/login/completed', LOGIN_DISCOVERY_FAILED);
}

/** `account/logout` (params as given; omitted by default): `{}`, then account/updated with nulls. */
async function logout(client: TestClient, params?: null): Promise<void> {
  await expectResult(client, 'account/logout', params, {});
  assertNotification(client, await client.next(), 'account/updated', LOGGED_OUT);
}

function authFile(client: TestClient | string): string {
  return join(typeof client === 'string' ? client : client.codexHome, 'auth.json');
}

/** Every regular file under a folder, recursively, as bytes decoded as latin1. */
function filesUnder(dir: string): { path: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile())
    .map((path) => ({ path, text: readFileSync(path, 'latin1') }));
}

async function stop(client: TestClient): Promise<void> {
  client.closeStdin();
  assert.deepEqual(await client.waitExit(), { code: 0, signal: null });
}

// ---------------------------------------------------------------------------------------------

describe('API key login, read, status, logout (spec C.2, C.5, C.6, C.7)', () => {
  test('before any login: account/read and getAuthStatus report nobody; no auth.json', async (t) => {
    const client = spawnServer(t);
    assert.ok((await call(client, 'initialize', initializeParams())).result);
    await expectResult(client, 'account/read', {}, READ_NOBODY);
    await expectResult(client, 'account/read', { refreshToken: true }, READ_NOBODY);
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);
    await expectResult(client, 'getAuthStatus', { includeToken: true, refreshToken: true }, STATUS_NOBODY);
    assert.equal(existsSync(authFile(client)), false);
    await client.expectNoOutput(100);
  });

  test('login: response, login/completed, account/updated and nothing else; auth.json 0600 holds the key', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams());
    const key = apiKey();
    await loginApiKey(client, key);

    const stat = statSync(authFile(client));
    assert.equal(stat.mode & 0o777, 0o600, `auth.json mode ${(stat.mode & 0o777).toString(8)}`);
    const stored = JSON.parse(readFileSync(authFile(client), 'utf8')) as Record<string, unknown>;
    assert.equal(stored.OPENAI_API_KEY, key);

    await expectResult(client, 'account/read', {}, READ_API_KEY);
    // refreshToken is ignored for API keys: same answer, no server request.
    await expectResult(client, 'account/read', { refreshToken: true }, READ_API_KEY);
    const withoutToken = { authMethod: 'apikey', authToken: null, requiresOpenaiAuth: true };
    await expectResult(client, 'getAuthStatus', {}, withoutToken);
    await expectResult(client, 'getAuthStatus', { includeToken: false }, withoutToken);
    await expectResult(client, 'getAuthStatus', { includeToken: null, refreshToken: null }, withoutToken);
    await expectResult(
      client,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'apikey', authToken: key, requiresOpenaiAuth: true },
    );
    await client.expectNoOutput(150);
  });

  test('a second API key login replaces the first, in memory and on disk', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams());
    const first = apiKey();
    const second = apiKey();
    await loginApiKey(client, first);
    await loginApiKey(client, second);
    await expectResult(
      client,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'apikey', authToken: second, requiresOpenaiAuth: true },
    );
    const text = readFileSync(authFile(client), 'utf8');
    assert.ok(text.includes(second) && !text.includes(first), text.replace(/sk-test-\w+/g, 'sk-…'));
  });

  test('a restarted server on the same CODEX_HOME is logged in with the stored key, and says nothing', async (t) => {
    const home = tempHome(t);
    const key = apiKey();
    const first = spawnServer(t, { codexHome: home });
    await call(first, 'initialize', initializeParams());
    await loginApiKey(first, key);
    await stop(first);

    const second = spawnServer(t, { codexHome: home });
    await call(second, 'initialize', initializeParams());
    await expectResult(second, 'account/read', {}, READ_API_KEY);
    await expectResult(
      second,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'apikey', authToken: key, requiresOpenaiAuth: true },
    );
    // account/updated at start-up is for managed ChatGPT auth only (spec B.3, C.5).
    await second.expectNoOutput(200);
    await logout(second);
    assert.equal(existsSync(authFile(home)), false, 'logout deletes auth.json');
    await stop(second);

    const third = spawnServer(t, { codexHome: home });
    await call(third, 'initialize', initializeParams());
    await expectResult(third, 'account/read', {}, READ_NOBODY);
    await expectResult(third, 'getAuthStatus', { includeToken: true }, STATUS_NOBODY);
  });

  test('logout with params omitted or null: `{}` then account/updated, even when nobody is logged in', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams());
    await logout(client);
    await logout(client, null);
    assert.equal(existsSync(authFile(client)), false);

    await loginApiKey(client, apiKey());
    await logout(client, null);
    assert.equal(existsSync(authFile(client)), false, 'logout deletes auth.json');
    await expectResult(client, 'account/read', {}, READ_NOBODY);
    await expectResult(client, 'getAuthStatus', { includeToken: true }, STATUS_NOBODY);

    await loginApiKey(client, apiKey());
    await logout(client);
    await expectResult(client, 'account/read', {}, READ_NOBODY);
    await client.expectNoOutput(100);
  });

  test('logout with params `{}` is refused as serde refuses a map for a unit; nothing changes', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams());
    const key = apiKey();
    await loginApiKey(client, key);
    await expectError(client, 'account/logout', {}, 'Invalid request: invalid type: map, expected unit');
    await expectError(client, 'account/logout', [], 'Invalid request: invalid type: sequence, expected unit');
    await expectError(
      client,
      'account/logout',
      false,
      'Invalid request: invalid type: boolean `false`, expected unit',
    );
    // Still logged in: no account/updated was sent (call() would have seen it) and the file stays.
    await expectResult(client, 'account/read', {}, READ_API_KEY);
    assert.ok(existsSync(authFile(client)));
    await client.expectNoOutput(100);
  });

  test('pipelined login, read, logout, read cycles keep their exact order', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams());
    const cycles = 25;
    let batch = '';
    const expected: string[] = [];
    const loginLine = `{"method":"account/login/completed","params":${JSON.stringify(LOGIN_OK)},"emittedAtMs":0}`;
    const updatedLine =
      '{"method":"account/updated","params":{"authMode":"apikey","planType":null},"emittedAtMs":0}';
    const outLine = '{"method":"account/updated","params":{"authMode":null,"planType":null},"emittedAtMs":0}';
    for (let i = 0; i < cycles; i++) {
      batch += `${JSON.stringify({ id: `login-${i}`, method: 'account/login/start', params: { type: 'apiKey', apiKey: apiKey() } })}\n`;
      batch += `${JSON.stringify({ id: `read-${i}`, method: 'account/read', params: {} })}\n`;
      batch += `${JSON.stringify({ id: `logout-${i}`, method: 'account/logout' })}\n`;
      batch += `${JSON.stringify({ id: `after-${i}`, method: 'account/read', params: {} })}\n`;
      expected.push(
        `{"id":"login-${i}","result":{"type":"apiKey"}}`,
        loginLine,
        updatedLine,
        `{"id":"read-${i}","result":${JSON.stringify(READ_API_KEY)}}`,
        `{"id":"logout-${i}","result":{}}`,
        outLine,
        `{"id":"after-${i}","result":${JSON.stringify(READ_NOBODY)}}`,
      );
    }
    await client.write(batch);
    const got: string[] = [];
    for (let i = 0; i < expected.length; i++) {
      got.push(client.rawLine(await client.next()).replace(/"emittedAtMs":\d+\}$/, '"emittedAtMs":0}'));
    }
    assert.deepEqual(got, expected);
    await client.expectNoOutput(100);
  });
});

describe('forced_login_method (spec C.2)', () => {
  test('"api" (-c): browser and host-token logins are refused, the API key login works', async (t) => {
    const client = spawnServer(t, { args: ['-c', 'forced_login_method="api"'] });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(client, 'account/login/start', { type: 'chatgpt' }, CHATGPT_DISABLED);
    await expectError(client, 'account/login/start', { type: 'chatgptDeviceCode' }, CHATGPT_DISABLED);
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgpt', codexStreamlinedLogin: true, useHostedLoginSuccessPage: true, appBrand: 'chatgpt' },
      CHATGPT_DISABLED,
    );
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: hostToken(), chatgptAccountId: 'acct-1' },
      EXTERNAL_DISABLED,
    );
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);
    await loginApiKey(client, apiKey());
    await expectResult(client, 'account/read', {}, READ_API_KEY);
  });

  test('"chatgpt" (-c): the API key login is refused and nothing is stored; host tokens are allowed', async (t) => {
    const client = spawnServer(t, { args: ['-c', 'forced_login_method="chatgpt"'] });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(client, 'account/login/start', { type: 'apiKey', apiKey: apiKey() }, API_KEY_DISABLED);
    await expectError(
      client,
      'account/login/start',
      { type: 'amazonBedrock', apiKey: 'bedrock-key', region: 'us-east-1' },
      'Amazon Bedrock login is disabled. Use ChatGPT login instead.',
    );
    assert.equal(existsSync(authFile(client)), false);
    await expectResult(client, 'account/read', {}, READ_NOBODY);
    await loginTokens(client, hostToken());
    // With host tokens active the external-auth rule answers first, as codex checks it first.
    await expectError(
      client,
      'account/login/start',
      { type: 'apiKey', apiKey: apiKey() },
      EXTERNAL_AUTH_ACTIVE,
    );
  });

  test('config.toml sets it as well, and -c overrides config.toml', async (t) => {
    const apiOnly = spawnServer(t, { codexHome: tempHome(t, 'forced_login_method = "api"\n') });
    await call(apiOnly, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(apiOnly, 'account/login/start', { type: 'chatgpt' }, CHATGPT_DISABLED);
    await expectError(
      apiOnly,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: hostToken(), chatgptAccountId: 'acct-1' },
      EXTERNAL_DISABLED,
    );
    await loginApiKey(apiOnly, apiKey());

    const chatgptHome = tempHome(t, 'forced_login_method = "chatgpt"\n');
    const chatgptOnly = spawnServer(t, { codexHome: chatgptHome });
    await call(chatgptOnly, 'initialize', initializeParams());
    await expectError(
      chatgptOnly,
      'account/login/start',
      { type: 'apiKey', apiKey: apiKey() },
      API_KEY_DISABLED,
    );
    await stop(chatgptOnly);

    const overridden = spawnServer(t, { codexHome: chatgptHome, args: ['-c', 'forced_login_method="api"'] });
    await call(overridden, 'initialize', initializeParams());
    await loginApiKey(overridden, apiKey());
  });
});

describe('forced_chatgpt_workspace_id (spec C.2, C.3)', () => {
  test('a single id: a token for another workspace is refused and nothing is installed', async (t) => {
    const client = spawnServer(t, { args: ['-c', 'forced_chatgpt_workspace_id="ws-a"'] });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: hostToken(), chatgptAccountId: 'acct-1' },
      'External auth must use one of workspace(s) ["ws-a"], but received "acct-1".',
    );
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);
    // The rule is about host tokens: an API key login is not affected.
    await loginApiKey(client, apiKey());
  });

  test('a TOML list: refused outside it; an allowed workspace passes, discovery fails, the tokens stay', async (t) => {
    const client = spawnServer(t, { args: ['-c', 'forced_chatgpt_workspace_id=["ws-a", "ws-b"]'] });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: hostToken(), chatgptAccountId: 'acct-1' },
      'External auth must use one of workspace(s) ["ws-a", "ws-b"], but received "acct-1".',
    );
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);

    const token = hostToken({ accountId: 'ws-b' });
    await loginTokens(client, token, 'ws-b');
    await expectError(client, 'account/read', {}, DISCOVERY_FAILED, -32603);
    await expectError(client, 'account/read', { refreshToken: true }, DISCOVERY_FAILED, -32603);
    await expectResult(
      client,
      'getAuthStatus',
      {},
      { authMethod: 'chatgptAuthTokens', authToken: null, requiresOpenaiAuth: true },
    );
    await expectResult(
      client,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'chatgptAuthTokens', authToken: token, requiresOpenaiAuth: true },
    );
    await expectError(
      client,
      'account/login/start',
      { type: 'apiKey', apiKey: apiKey() },
      EXTERNAL_AUTH_ACTIVE,
    );
    // No account/updated after a failed completion, and no refresh request to the host.
    await client.expectNoOutput(200);
  });

  test('a list in config.toml works the same', async (t) => {
    const home = tempHome(t, 'forced_chatgpt_workspace_id = ["ws-a", "ws-b"]\n');
    const client = spawnServer(t, { codexHome: home });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: hostToken(), chatgptAccountId: 'acct-1' },
      'External auth must use one of workspace(s) ["ws-a", "ws-b"], but received "acct-1".',
    );
    await loginTokens(client, hostToken({ accountId: 'ws-a' }), 'ws-a');
  });

  for (const [label, opts] of [
    ['-c', { args: ['-c', 'forced_chatgpt_workspace_id="ws-a,ws-b"'] }],
    ['config.toml', { config: 'forced_chatgpt_workspace_id = "ws-a, ws-b"\n' }],
  ] as const) {
    test(`a comma-separated string (${label}): the server refuses to start and says why`, async (t) => {
      const client = spawnServer(t, {
        args: 'args' in opts ? [...opts.args] : [],
        ...('config' in opts ? { codexHome: tempHome(t, opts.config) } : {}),
      });
      const status = await client.waitExit();
      assert.equal(status.signal, null);
      assert.notEqual(status.code, 0, client.stderrText);
      assert.ok(client.stderrText.includes(COMMA_LIST_REFUSED), client.stderrText);
      assert.equal(client.stdoutText, '');
    });
  }
});

describe('chatgptAuthTokens: order of checks (spec A.6, C.2)', () => {
  const badJwtOutsideWorkspace = {
    type: 'chatgptAuthTokens',
    accessToken: 'nope',
    chatgptAccountId: 'acct-1',
  };

  test('without experimentalApi the experimental gate answers, though every later check would refuse too', async (t) => {
    const client = spawnServer(t, {
      args: ['-c', 'forced_login_method="api"', '-c', 'forced_chatgpt_workspace_id="ws-a"'],
    });
    await call(client, 'initialize', initializeParams({ experimentalApi: false }));
    await expectError(client, 'account/login/start', badJwtOutsideWorkspace, EXPERIMENTAL_TOKENS);
    await expectError(
      client,
      'account/login/start',
      {
        type: 'chatgptAuthTokens',
        accessToken: hostToken(),
        chatgptAccountId: 'ws-a',
        chatgptPlanType: 'pro',
      },
      EXPERIMENTAL_TOKENS,
    );
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);
  });

  test('then forced_login_method, before the workspace and the token', async (t) => {
    const client = spawnServer(t, {
      args: ['-c', 'forced_login_method="api"', '-c', 'forced_chatgpt_workspace_id="ws-a"'],
    });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(client, 'account/login/start', badJwtOutsideWorkspace, EXTERNAL_DISABLED);
  });

  test('then the workspace, before the token; a bad token in an allowed workspace gets -32603', async (t) => {
    const client = spawnServer(t, { args: ['-c', 'forced_chatgpt_workspace_id="ws-a"'] });
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    await expectError(
      client,
      'account/login/start',
      badJwtOutsideWorkspace,
      'External auth must use one of workspace(s) ["ws-a"], but received "acct-1".',
    );
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: 'nope', chatgptAccountId: 'ws-a' },
      BAD_JWT,
      -32603,
    );
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);
  });

  test('a token that is not a JWT: -32603 without echoing it, nothing installed; a good one then works', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    const headerAndPayload = hostToken().split('.').slice(0, 2).join('.');
    for (const accessToken of ['nope', 'only.two', `${headerAndPayload}.`, '']) {
      await expectError(
        client,
        'account/login/start',
        { type: 'chatgptAuthTokens', accessToken, chatgptAccountId: 'acct-1' },
        BAD_JWT,
        -32603,
      );
    }
    await expectResult(client, 'getAuthStatus', {}, STATUS_NOBODY);
    await loginTokens(client, hostToken());
  });
});

describe('host-owned tokens active (spec C.2, C.3)', () => {
  test('managed logins are refused; a new token login replaces; logout clears; then an API key works', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    const first = hostToken({ planType: 'plus' });
    await loginTokens(client, first, 'acct-1', { chatgptPlanType: 'pro' });
    await expectError(
      client,
      'account/login/start',
      { type: 'apiKey', apiKey: apiKey() },
      EXTERNAL_AUTH_ACTIVE,
    );
    await expectError(client, 'account/login/start', { type: 'chatgpt' }, EXTERNAL_AUTH_ACTIVE);
    await expectError(client, 'account/login/start', { type: 'chatgptDeviceCode' }, EXTERNAL_AUTH_ACTIVE);
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgpt', codexStreamlinedLogin: false, appBrand: 'codex' },
      EXTERNAL_AUTH_ACTIVE,
    );
    assert.equal(existsSync(authFile(client)), false, 'host tokens are never written');

    const second = hostToken({ accountId: 'acct-2' });
    await loginTokens(client, second, 'acct-2', { chatgptPlanType: null });
    await expectResult(
      client,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'chatgptAuthTokens', authToken: second, requiresOpenaiAuth: true },
    );
    await expectError(client, 'account/read', {}, DISCOVERY_FAILED, -32603);

    await logout(client);
    await expectResult(client, 'getAuthStatus', { includeToken: true }, STATUS_NOBODY);
    await expectResult(client, 'account/read', {}, READ_NOBODY);
    await loginApiKey(client, apiKey());
    await expectResult(client, 'account/read', {}, READ_API_KEY);
    await client.expectNoOutput(100);
  });

  test('host tokens live in memory only: a restarted server is logged out', async (t) => {
    const home = tempHome(t);
    const first = spawnServer(t, { codexHome: home });
    await call(first, 'initialize', initializeParams({ experimentalApi: true }));
    await loginTokens(first, hostToken());
    assert.equal(existsSync(authFile(home)), false);
    await stop(first);

    const second = spawnServer(t, { codexHome: home });
    await call(second, 'initialize', initializeParams({ experimentalApi: true }));
    await expectResult(second, 'account/read', {}, READ_NOBODY);
    await expectResult(second, 'getAuthStatus', { includeToken: true }, STATUS_NOBODY);
    await loginApiKey(second, apiKey());
  });
});

describe('bad input (spec A.5, A.6, C.2, C.7): serde texts, and the server keeps serving', () => {
  const cases: [label: string, method: string, params: unknown, message: string][] = [
    [
      'seed-era token shape',
      'account/login/start',
      { type: 'chatgptAuthTokens', idToken: hostToken(), accessToken: hostToken() },
      'Invalid request: missing field `chatgptAccountId`',
    ],
    ['apiKey missing', 'account/login/start', { type: 'apiKey' }, 'Invalid request: missing field `apiKey`'],
    [
      'apiKey of the wrong type',
      'account/login/start',
      { type: 'apiKey', apiKey: 5 },
      'Invalid request: invalid type: integer `5`, expected a string',
    ],
    [
      'unknown login type',
      'account/login/start',
      { type: 'bogus' },
      'Invalid request: unknown variant `bogus`, expected one of `apiKey`, `chatgpt`, `chatgptDeviceCode`, `chatgptAuthTokens`, `amazonBedrock`, `amazonBedrockAccessKeys`',
    ],
    [
      'device-code login, which Gatehouse does not serve',
      'account/login/start',
      { type: 'chatgptDeviceCode' },
      'chatgptDeviceCode login is not supported by Gatehouse; use chatgpt (browser), chatgptAuthTokens or apiKey',
    ],
    [
      'Bedrock login, which Gatehouse does not serve',
      'account/login/start',
      { type: 'amazonBedrock', apiKey: 'bedrock-key', region: 'us-east-1' },
      'amazonBedrock login is not supported by Gatehouse; use chatgpt (browser), chatgptAuthTokens or apiKey',
    ],
    [
      'Bedrock access keys without their region',
      'account/login/start',
      { type: 'amazonBedrockAccessKeys', accessKeyId: 'AKIA', secretAccessKey: 'secret' },
      'Invalid request: missing field `region`',
    ],
    [
      'login type missing',
      'account/login/start',
      { apiKey: 'sk-x' },
      'Invalid request: missing field `type`',
    ],
    ['login params missing', 'account/login/start', undefined, 'Invalid request: missing field `params`'],
    ['account/read params missing', 'account/read', undefined, 'Invalid request: missing field `params`'],
    [
      'account/read params of the wrong type',
      'account/read',
      'nope',
      'Invalid request: invalid type: string "nope", expected struct GetAccountParams',
    ],
    ['cancel without loginId', 'account/login/cancel', {}, 'Invalid request: missing field `loginId`'],
    [
      'cancel with a login id that is not a UUID',
      'account/login/cancel',
      { loginId: 'not-a-uuid' },
      'invalid login id: not-a-uuid',
    ],
    [
      'getAuthStatus includeToken of the wrong type',
      'getAuthStatus',
      { includeToken: 'yes' },
      'Invalid request: invalid type: string "yes", expected a boolean',
    ],
  ];

  test('each is refused with its exact text; an account/read right after is served', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    for (const [label, method, params, message] of cases) {
      await t.test(label, async () => {
        await expectError(client, method, params, message);
        await expectResult(client, 'account/read', {}, READ_NOBODY);
      });
    }
    assert.equal(existsSync(authFile(client)), false);
    await client.expectNoOutput(100);
  });

  test('cancel of an unknown login (any UUID case) is `notFound`', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams());
    await expectResult(
      client,
      'account/login/cancel',
      { loginId: '123e4567-e89b-42d3-a456-426614174000' },
      { status: 'notFound' },
    );
    await expectResult(
      client,
      'account/login/cancel',
      { loginId: '123E4567-E89B-42D3-A456-426614174000' },
      { status: 'notFound' },
    );
    await client.expectNoOutput(100);
  });

  test('before initialize: valid account requests get `Not initialized`, bad ones their decode error', async (t) => {
    const client = spawnServer(t);
    const valid: [string, unknown][] = [
      ['account/login/start', { type: 'apiKey', apiKey: apiKey() }],
      ['account/login/start', { type: 'chatgpt' }],
      // An experimental variant: the init gate comes before the experimental gate.
      [
        'account/login/start',
        { type: 'chatgptAuthTokens', accessToken: hostToken(), chatgptAccountId: 'acct-1' },
      ],
      ['account/login/cancel', { loginId: 'not-a-uuid' }],
      ['account/read', {}],
      ['account/logout', undefined],
      ['account/logout', null],
      ['getAuthStatus', { includeToken: true }],
    ];
    for (const [method, params] of valid) await expectError(client, method, params, 'Not initialized');
    await expectError(client, 'account/read', undefined, 'Invalid request: missing field `params`');
    await expectError(client, 'account/logout', {}, 'Invalid request: invalid type: map, expected unit');
    await expectError(
      client,
      'account/login/start',
      { type: 'bogus' },
      'Invalid request: unknown variant `bogus`, expected one of `apiKey`, `chatgpt`, `chatgptDeviceCode`, `chatgptAuthTokens`, `amazonBedrock`, `amazonBedrockAccessKeys`',
    );
    assert.equal(existsSync(authFile(client)), false, 'the refused login stored nothing');

    await call(client, 'initialize', initializeParams());
    await expectResult(client, 'account/read', {}, READ_NOBODY);
    await client.expectNoOutput(100);
  });
});

describe('secrets (GATEHOUSE_LOG=debug)', () => {
  test('API keys and host tokens never reach stderr; host tokens never reach a file', async (t) => {
    const client = spawnServer(t);
    await call(client, 'initialize', initializeParams({ experimentalApi: true }));
    const key = apiKey();
    const refusedKey = apiKey();
    const token = hostToken();
    const replaced = hostToken();
    const notAJwt = `not-a-jwt-${randomBytes(8).toString('hex')}`;

    await loginApiKey(client, key);
    await expectResult(
      client,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'apikey', authToken: key, requiresOpenaiAuth: true },
    );
    await loginTokens(client, replaced);
    await loginTokens(client, token, 'acct-1', { chatgptPlanType: 'pro' });
    await expectError(
      client,
      'account/login/start',
      { type: 'apiKey', apiKey: refusedKey },
      EXTERNAL_AUTH_ACTIVE,
    );
    await expectError(
      client,
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: notAJwt, chatgptAccountId: 'acct-1' },
      BAD_JWT,
      -32603,
    );
    await expectError(client, 'account/read', {}, DISCOVERY_FAILED, -32603);
    await expectResult(
      client,
      'getAuthStatus',
      { includeToken: true },
      { authMethod: 'chatgptAuthTokens', authToken: token, requiresOpenaiAuth: true },
    );

    // While the tokens are in force: none of them is in any file; the key only in auth.json.
    for (const file of filesUnder(client.codexHome)) {
      for (const secret of [token, replaced, refusedKey, notAJwt]) {
        assert.ok(!file.text.includes(secret), `a secret is in ${file.path}`);
      }
      if (file.path !== authFile(client))
        assert.ok(!file.text.includes(key), `the API key is in ${file.path}`);
    }

    await logout(client);
    for (const file of filesUnder(client.codexHome)) {
      for (const secret of [key, token, replaced, refusedKey, notAJwt]) {
        assert.ok(!file.text.includes(secret), `a secret is in ${file.path} after logout`);
      }
    }
    await stop(client);

    // The log was on (the discovery failure is logged at WARN) and holds none of them.
    assert.ok(client.stderrText.includes('workspace routing discovery failed'), client.stderrText);
    for (const secret of [key, refusedKey, token, replaced, notAJwt, token.split('.')[2]!]) {
      assert.ok(!client.stderrText.includes(secret), 'a secret is in stderr');
    }
  });
});

describe('managed ChatGPT auth on disk (spec B.3, C.5; needs the local backend)', () => {
  test('after initialize the server announces the stored login with account/updated once routing is known', async (t) => {
    const backend = await startLocalBackend({ port: 0 });
    t.after(() => backend.close());
    const home = tempHome(t);
    const claims = {
      email: 'dev@example.com',
      'https://api.openai.com/auth': {
        chatgpt_plan_type: 'plus',
        chatgpt_user_id: 'user-1',
        chatgpt_account_id: 'acct-1',
      },
      exp: Math.floor(Date.now() / 1000) + 3600,
    };
    const jwt = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.c2ln`;
    writeFileSync(
      authFile(home),
      JSON.stringify({
        auth_mode: 'chatgpt',
        OPENAI_API_KEY: null,
        tokens: { id_token: jwt, access_token: jwt, refresh_token: 'rt-1', account_id: 'acct-1' },
        last_refresh: new Date().toISOString(),
      }),
      { mode: 0o600 },
    );
    const client = TestClient.spawn({
      args: ['-c', `chatgpt_base_url=${backend.chatgptBaseUrl}`],
      codexHome: home,
      env: { CODEX_CA_CERTIFICATE: backend.caCertPath },
    });
    t.after(() => client.dispose());
    await call(client, 'initialize', initializeParams());
    let announced: RpcMessage | undefined;
    try {
      announced = await client.next(3_000);
    } catch {
      announced = undefined;
    }
    // The stored login itself is restored and served...
    const read = await call(client, 'account/read', {});
    assert.deepEqual(
      (read.result as { account?: unknown } | undefined)?.account,
      { type: 'chatgpt', email: 'dev@example.com', planType: 'plus', workspaceName: null },
      client.rawLine(read),
    );
    // ...and must have been announced right after initialize.
    assert.ok(announced, 'no account/updated within 3 s of initialize, though the stored login is served');
    assertNotification(client, announced, 'account/updated', { authMode: 'chatgpt', planType: 'plus' });
  });
});
