/**
 * The account pieces with their real parts: JWT claims, auth.json on a real file system, the login
 * policy's messages, workspace routing, the credentials actor and the scope queue inside a real
 * ActorSystem. The only stand-in is the host that answers `account/chatgptAuthTokens/refresh`,
 * which the tests play themselves so they decide when and how it answers.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { InvalidJwtError, parseChatgptJwt } from '../../src/auth/jwt.js';
import { AuthFile, AuthFileError, type AuthFileContent } from '../../src/auth/auth-file.js';
import {
  EXTERNAL_AUTH_ACTIVE_MESSAGE,
  forcedMethodRefusal,
  workspaceLoginRefusal,
  workspaceRefreshRefusal,
  type LoginKind,
} from '../../src/auth/login-policy.js';
import {
  DISCOVERY_FAILED,
  HTTPS_ORIGIN_REQUIRED,
  RoutingError,
  httpsOrigin,
  routingFromAccountsCheck,
} from '../../src/auth/workspace-routing.js';
import {
  CREDENTIALS_ACTOR,
  CredentialsMessage,
  credentialsBehaviour,
  refreshFailureText,
  rustDuration,
  type CredentialsSnapshot,
  type RefreshedTokens,
} from '../../actors/account/credentials.actor.js';
import type { Credentials } from '../../actors/account/credentials.js';
import {
  ScopeMessage,
  scopeQueueBehaviour,
  type ScopedHandler,
} from '../../actors/scope/scope-queue.actor.js';
import type { Session } from '../../actors/connection/connection.machine.js';
import { ActorSystem } from '../../src/runtime/actor-system.js';
import { BrokerError, ProtocolError, isBrokerError, isProtocolError } from '../../src/protocol/errors.js';
import type { UpstreamAuth } from '../../src/upstream/auth-source.js';
import { silentLogger } from '../../src/util/logger.js';

// ---------------------------------------------------------------------------------------------
// Shared helpers

function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

function jwtOf(payload: unknown): string {
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(payload)}.${randomBytes(8).toString('base64url')}`;
}

/** A host-owned access token with codex's claims layout. */
function hostToken(opts: { accountId?: string; planType?: string | null; nonce?: string } = {}): string {
  const auth: Record<string, unknown> = {
    chatgpt_user_id: 'user-1',
    chatgpt_account_id: opts.accountId ?? 'acct-1',
  };
  if (opts.planType !== null) auth.chatgpt_plan_type = opts.planType ?? 'plus';
  return jwtOf({
    email: 'dev@example.com',
    'https://api.openai.com/auth': auth,
    jti: opts.nonce ?? randomBytes(6).toString('hex'),
  });
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls until `cond` holds; fails after `timeoutMs`. */
async function until(cond: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

/** Settles to the value or the error, so a rejection is never left unhandled meanwhile. */
function settled<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-units-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------

describe('jwt: the claims codex reads (spec C.2)', () => {
  test('email, plan, user and account from the auth claim; exp when numeric', () => {
    const token = jwtOf({
      email: 'dev@example.com',
      exp: 1_900_000_000,
      'https://api.openai.com/auth': {
        chatgpt_plan_type: 'pro',
        chatgpt_user_id: 'user-1',
        chatgpt_account_id: 'acct-1',
      },
      'https://api.openai.com/profile': { email: 'profile@example.com' },
    });
    assert.deepEqual(parseChatgptJwt(token), {
      email: 'dev@example.com',
      planType: 'pro',
      userId: 'user-1',
      accountId: 'acct-1',
      expiresAt: 1_900_000_000,
    });
  });

  test('email falls back to the profile claim; user id falls back to auth.user_id', () => {
    const claims = parseChatgptJwt(
      jwtOf({
        'https://api.openai.com/profile': { email: 'profile@example.com' },
        'https://api.openai.com/auth': { user_id: 'user-legacy', chatgpt_account_id: 'acct-9' },
      }),
    );
    assert.equal(claims.email, 'profile@example.com');
    assert.equal(claims.userId, 'user-legacy');
    assert.equal(claims.accountId, 'acct-9');
    assert.equal(claims.planType, null);
    assert.equal(claims.expiresAt, null);
  });

  test('chatgpt_user_id wins over user_id; a top-level user_id is not read', () => {
    const both = parseChatgptJwt(
      jwtOf({ 'https://api.openai.com/auth': { chatgpt_user_id: 'user-new', user_id: 'user-old' } }),
    );
    assert.equal(both.userId, 'user-new');
    assert.equal(parseChatgptJwt(jwtOf({ user_id: 'top-level' })).userId, null);
  });

  test('a token without the auth or profile claims parses to nulls', () => {
    assert.deepEqual(parseChatgptJwt(jwtOf({ sub: 'x' })), {
      email: null,
      planType: null,
      userId: null,
      accountId: null,
      expiresAt: null,
    });
  });

  const header = b64url({ alg: 'none' });
  const payload = b64url({ email: 'a@b.c' });
  const invalid: [string, string][] = [
    ['not a JWT at all', 'nope'],
    ['empty', ''],
    ['two parts', `${header}.${payload}`],
    ['four parts', `${header}.${payload}.sig.extra`],
    ['an empty signature', `${header}.${payload}.`],
    ['an empty payload', `${header}..sig`],
    ['an empty header', `.${payload}.sig`],
    ['a payload that is not base64url', `${header}.%%%.sig`],
    ['a payload that is not JSON', `${header}.${b64url('not json')}.sig`],
    ['a JSON array payload', `${header}.${b64url([1, 2])}.sig`],
    ['a JSON null payload', `${header}.${b64url('null')}.sig`],
    ['a JSON string payload', `${header}.${b64url('"text"')}.sig`],
  ];
  for (const [label, token] of invalid) {
    test(`invalid shape: ${label} → InvalidJwtError "invalid ID token format"`, () => {
      assert.throws(
        () => parseChatgptJwt(token),
        (e) => e instanceof InvalidJwtError && e.message === 'invalid ID token format',
      );
    });
  }

  test('the error never carries the token', () => {
    const secret = `secret-${randomBytes(8).toString('hex')}`;
    try {
      parseChatgptJwt(`${header}.${secret}.sig`);
      assert.fail('should throw');
    } catch (e) {
      assert.ok(e instanceof InvalidJwtError);
      assert.ok(!String(e.stack).includes(secret) && !e.message.includes(secret));
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('auth.json (spec C.3, C.7)', () => {
  const apiKeyContent = (key: string): AuthFileContent => ({
    auth_mode: 'apikey',
    OPENAI_API_KEY: key,
    tokens: null,
    last_refresh: null,
  });

  test('write then read round-trips an API key and managed tokens; mode is 0600', (t) => {
    const file = new AuthFile(tempDir(t));
    assert.equal(file.read(), null, 'no file: nobody');
    file.write(apiKeyContent('sk-1'));
    assert.equal(statSync(file.path).mode & 0o777, 0o600);
    assert.deepEqual(file.read(), apiKeyContent('sk-1'));

    const managed: AuthFileContent = {
      auth_mode: 'chatgpt',
      OPENAI_API_KEY: null,
      tokens: { id_token: 'id.t.k', access_token: 'ac.t.k', refresh_token: 'rt', account_id: 'acct-1' },
      last_refresh: '2026-01-01T00:00:00.000Z',
    };
    file.write(managed);
    assert.equal(statSync(file.path).mode & 0o777, 0o600);
    assert.deepEqual(file.read(), managed);
  });

  test('a pre-existing 0644 file ends up 0600 after a write', (t) => {
    const dir = tempDir(t);
    const file = new AuthFile(dir);
    writeFileSync(file.path, '{}\n', { mode: 0o644 });
    chmodSync(file.path, 0o644);
    assert.equal(statSync(file.path).mode & 0o777, 0o644);
    file.write(apiKeyContent('sk-2'));
    assert.equal(statSync(file.path).mode & 0o777, 0o600);
    assert.equal(file.read()?.OPENAI_API_KEY, 'sk-2');
  });

  test('writes are atomic: a new file replaces the old one, which is never rewritten in place; no temporaries stay', (t) => {
    const dir = tempDir(t);
    const file = new AuthFile(dir);
    file.write(apiKeyContent('sk-old'));
    const before = readFileSync(file.path, 'utf8');
    // A second name for the old inode: an in-place rewrite would change what it shows.
    const witness = join(dir, 'witness.json');
    linkSync(file.path, witness);
    file.write(apiKeyContent('sk-new'));
    assert.equal(readFileSync(witness, 'utf8'), before, 'the old file was not touched');
    assert.notEqual(statSync(witness).ino, statSync(file.path).ino, 'auth.json is a new file');
    assert.equal(file.read()?.OPENAI_API_KEY, 'sk-new');
    assert.deepEqual(readdirSync(dir).sort(), ['auth.json', 'witness.json']);
  });

  test('a write that cannot complete leaves what was there and no temporary file', (t) => {
    const dir = tempDir(t);
    const file = new AuthFile(dir);
    // auth.json is a non-empty directory: the final rename must fail.
    mkdirSync(file.path);
    writeFileSync(join(file.path, 'keep'), 'x');
    assert.throws(() => file.write(apiKeyContent('sk-3')));
    assert.deepEqual(readdirSync(dir), ['auth.json']);
    assert.deepEqual(readdirSync(file.path), ['keep']);
  });

  test('damaged JSON is an AuthFileError, not "nobody", and the message does not quote the file', (t) => {
    const file = new AuthFile(tempDir(t));
    const secret = `sk-${randomBytes(8).toString('hex')}`;
    writeFileSync(file.path, `{"OPENAI_API_KEY": "${secret}"`, { mode: 0o600 });
    assert.throws(
      () => file.read(),
      (e) =>
        e instanceof AuthFileError && e.message.endsWith('is not valid JSON') && !e.message.includes(secret),
    );
  });

  test('a file without a key or tokens reads as nobody', (t) => {
    const file = new AuthFile(tempDir(t));
    for (const text of ['{}', 'null', '{"OPENAI_API_KEY":""}', '{"tokens":{"access_token":"a"}}']) {
      writeFileSync(file.path, text);
      assert.equal(file.read(), null, text);
    }
  });

  test('delete removes the file and says whether there was one', (t) => {
    const file = new AuthFile(tempDir(t));
    assert.equal(file.delete(), false);
    file.write(apiKeyContent('sk-4'));
    assert.equal(file.delete(), true);
    assert.equal(file.read(), null);
    assert.equal(file.delete(), false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('login policy messages (spec C.2, C.8)', () => {
  test('forced_login_method: every refusal, and what each setting allows', () => {
    const expected: Record<string, Record<LoginKind, string | undefined>> = {
      none: {
        apiKey: undefined,
        chatgpt: undefined,
        chatgptDeviceCode: undefined,
        chatgptAuthTokens: undefined,
        amazonBedrock: undefined,
        amazonBedrockAccessKeys: undefined,
      },
      api: {
        apiKey: undefined,
        chatgpt: 'ChatGPT login is disabled. Use API key login instead.',
        chatgptDeviceCode: 'ChatGPT login is disabled. Use API key login instead.',
        chatgptAuthTokens: 'External ChatGPT auth is disabled. Use API key login instead.',
        amazonBedrock: undefined,
        amazonBedrockAccessKeys: undefined,
      },
      chatgpt: {
        apiKey: 'API key login is disabled. Use ChatGPT login instead.',
        chatgpt: undefined,
        chatgptDeviceCode: undefined,
        chatgptAuthTokens: undefined,
        amazonBedrock: 'Amazon Bedrock login is disabled. Use ChatGPT login instead.',
        amazonBedrockAccessKeys: 'Amazon Bedrock login is disabled. Use ChatGPT login instead.',
      },
    };
    for (const forced of [null, 'api', 'chatgpt'] as const) {
      for (const kind of Object.keys(expected.none!) as LoginKind[]) {
        assert.equal(
          forcedMethodRefusal(kind, forced),
          expected[forced ?? 'none']![kind],
          `${forced} ${kind}`,
        );
      }
    }
  });

  test('external auth active', () => {
    assert.equal(
      EXTERNAL_AUTH_ACTIVE_MESSAGE,
      'External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it.',
    );
  });

  test('forced workspace on login: Rust debug list and quoted id', () => {
    assert.equal(workspaceLoginRefusal('acct-1', null), undefined);
    assert.equal(workspaceLoginRefusal('ws-b', ['ws-a', 'ws-b']), undefined);
    assert.equal(
      workspaceLoginRefusal('acct-1', ['ws-allowed']),
      'External auth must use one of workspace(s) ["ws-allowed"], but received "acct-1".',
    );
    assert.equal(
      workspaceLoginRefusal('acct-1', ['ws-a', 'ws-b']),
      'External auth must use one of workspace(s) ["ws-a", "ws-b"], but received "acct-1".',
    );
    assert.equal(
      workspaceLoginRefusal('a"b', ['ws-a']),
      'External auth must use one of workspace(s) ["ws-a"], but received "a\\"b".',
    );
  });

  test('forced workspace on refresh: plain list', () => {
    assert.equal(workspaceRefreshRefusal('acct-1', null), undefined);
    assert.equal(workspaceRefreshRefusal('acct-1', ['acct-1']), undefined);
    assert.equal(
      workspaceRefreshRefusal('acct-2', ['acct-1']),
      'Login is restricted to workspace(s) acct-1, but current credentials belong to acct-2',
    );
    assert.equal(
      workspaceRefreshRefusal('acct-3', ['acct-1', 'acct-2']),
      'Login is restricted to workspace(s) acct-1, acct-2, but current credentials belong to acct-3',
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('workspace routing discovery (spec C.3)', () => {
  const BASE = 'https://127.0.0.1:8443/backend-api';
  const entry = (over: Record<string, unknown> = {}) => ({
    id: 'acct-1',
    plan_type: 'pro',
    workspace_backend_origin: 'NO_CONSTRAINT',
    account_routing_override: 'NO_CONSTRAINT',
    structure: 'personal',
    ...over,
  });
  const body = (...accounts: unknown[]) => ({
    accounts,
    account_ordering: ['acct-1'],
    default_account_id: 'acct-1',
  });

  /** Runs discovery and returns the RoutingError it throws. */
  function failure(run: () => unknown): RoutingError {
    try {
      run();
    } catch (e) {
      assert.ok(e instanceof RoutingError, String(e));
      assert.equal(e.message, e.reported);
      return e;
    }
    assert.fail('discovery should fail');
  }

  test('NO_CONSTRAINT routes to the origin of chatgpt_base_url', () => {
    assert.deepEqual(routingFromAccountsCheck(200, body(entry()), 'acct-1', BASE), {
      chatgptAccountId: 'acct-1',
      backendOrigin: 'https://127.0.0.1:8443',
      accountRoutingOverride: 'NO_CONSTRAINT',
    });
  });

  test('each routing override passes through; a declared HTTPS origin is reduced to its origin', () => {
    for (const override of ['us', 'us_cr'] as const) {
      const routing = routingFromAccountsCheck(
        200,
        body(
          entry({
            account_routing_override: override,
            workspace_backend_origin: 'https://us.example.com:443/x',
          }),
        ),
        'acct-1',
        BASE,
      );
      assert.deepEqual(routing, {
        chatgptAccountId: 'acct-1',
        backendOrigin: 'https://us.example.com',
        accountRoutingOverride: override,
      });
    }
  });

  test('the selected account is found among others', () => {
    const routing = routingFromAccountsCheck(
      200,
      body(entry({ id: 'acct-0' }), entry({ id: 'acct-7' })),
      'acct-7',
      BASE,
    );
    assert.equal(routing.chatgptAccountId, 'acct-7');
  });

  const failures: [string, () => unknown, string][] = [
    [
      '401',
      () => routingFromAccountsCheck(401, {}, 'acct-1', BASE),
      'workspace routing discovery unauthorized (401)',
    ],
    [
      '500',
      () => routingFromAccountsCheck(500, body(entry()), 'acct-1', BASE),
      'workspace routing discovery failed (HTTP 500)',
    ],
    [
      '404',
      () => routingFromAccountsCheck(404, null, 'acct-1', BASE),
      'workspace routing discovery failed (HTTP 404)',
    ],
    [
      'no body',
      () => routingFromAccountsCheck(200, null, 'acct-1', BASE),
      'workspace routing discovery returned no account list',
    ],
    [
      'accounts not a list',
      () => routingFromAccountsCheck(200, { accounts: {} }, 'acct-1', BASE),
      'workspace routing discovery returned no account list',
    ],
    [
      'selected account missing',
      () => routingFromAccountsCheck(200, body(entry({ id: 'acct-2' })), 'acct-1', BASE),
      'selected workspace missing from routing discovery',
    ],
    [
      'selected account twice',
      () => routingFromAccountsCheck(200, body(entry(), entry()), 'acct-1', BASE),
      'duplicate workspace in routing discovery',
    ],
    [
      'unknown routing override',
      () => routingFromAccountsCheck(200, body(entry({ account_routing_override: 'eu' })), 'acct-1', BASE),
      'workspace routing discovery returned an unknown routing override',
    ],
    [
      'routing override missing',
      () =>
        routingFromAccountsCheck(200, body(entry({ account_routing_override: undefined })), 'acct-1', BASE),
      'workspace routing discovery returned an unknown routing override',
    ],
  ];
  for (const [label, run, detail] of failures) {
    test(`failure (${label}): the client hears the generic text, the log the detail`, () => {
      const e = failure(run);
      assert.equal(e.reported, DISCOVERY_FAILED);
      assert.equal(e.reported, 'workspace routing discovery failed');
      assert.equal(e.detail, detail);
    });
  }

  const httpsFailures: [string, () => unknown][] = [
    [
      'an http chatgpt_base_url under NO_CONSTRAINT',
      () => routingFromAccountsCheck(200, body(entry()), 'acct-1', 'http://127.0.0.1:8080/backend-api'),
    ],
    [
      'a declared http origin',
      () =>
        routingFromAccountsCheck(
          200,
          body(entry({ workspace_backend_origin: 'http://us.example.com' })),
          'acct-1',
          BASE,
        ),
    ],
    ['credentials in the URL (user and password)', () => httpsOrigin('https://user:pw@us.example.com/')],
    ['credentials in the URL (user only)', () => httpsOrigin('https://user@us.example.com/')],
    [
      'credentials in chatgpt_base_url',
      () => routingFromAccountsCheck(200, body(entry()), 'acct-1', 'https://u:p@127.0.0.1:8443/backend-api'),
    ],
    ['another scheme', () => httpsOrigin('wss://us.example.com')],
    ['not a URL', () => httpsOrigin('us.example.com')],
    ['not a string', () => httpsOrigin(42)],
  ];
  for (const [label, run] of httpsFailures) {
    test(`HTTPS rule: ${label} → "${HTTPS_ORIGIN_REQUIRED}"`, () => {
      const e = failure(run);
      assert.equal(e.reported, 'workspace backend must use an HTTPS origin without credentials');
    });
  }

  test('httpsOrigin keeps scheme, host and a non-default port only', () => {
    assert.equal(httpsOrigin('https://Example.COM:443/backend-api?x=1#f'), 'https://example.com');
    assert.equal(httpsOrigin('https://127.0.0.1:8443/backend-api'), 'https://127.0.0.1:8443');
  });
});

// ---------------------------------------------------------------------------------------------

describe('credentials actor: single-flight refresh of host-owned tokens (spec C.8)', () => {
  interface HostCall {
    connectionId: string;
    previousAccountId: string | null;
    answer: Deferred<RefreshedTokens>;
  }

  /** A real ActorSystem with the credentials actor; the test plays the host. */
  function setup(opts: { forcedWorkspaceIds?: string[] | null; refreshTimeoutMs?: number } = {}) {
    const system = new ActorSystem({ log: silentLogger() });
    const calls: HostCall[] = [];
    system.spawn(CREDENTIALS_ACTOR, () =>
      credentialsBehaviour({
        log: silentLogger(),
        forcedWorkspaceIds: opts.forcedWorkspaceIds ?? null,
        refreshTimeoutMs: opts.refreshTimeoutMs ?? 10_000,
        askHost: (connectionId, previousAccountId) => {
          const answer = deferred<RefreshedTokens>();
          calls.push({ connectionId, previousAccountId, answer });
          return answer.promise;
        },
        refreshManaged: () => Promise.reject(new Error('no managed login in these tests')),
      }),
    );
    const ask = <T>(type: string, body: unknown) => system.ask<T>(CREDENTIALS_ACTOR, type, body);
    return {
      system,
      calls,
      install: (c: Credentials) => ask<number>(CredentialsMessage.install, c),
      clear: () => ask<number>(CredentialsMessage.clear, null),
      current: () => ask<UpstreamAuth | null>(CredentialsMessage.current, null),
      snapshot: () => ask<CredentialsSnapshot | null>(CredentialsMessage.snapshot, null),
      unauthorized: (generation: number) =>
        ask<UpstreamAuth>(CredentialsMessage.unauthorized, { generation }),
      /** Resolves once every message sent before it has been received (the mailbox is FIFO). */
      drain: () => ask(CredentialsMessage.current, null),
    };
  }

  function hostCredentials(token: string, accountId = 'acct-1'): Credentials {
    return {
      mode: 'chatgptAuthTokens',
      accessToken: token,
      accountId,
      planType: 'plus',
      claims: parseChatgptJwt(token),
      owner: 'connection-7',
    };
  }

  const refreshFailed = (text: string) => (e: unknown) =>
    isBrokerError(e, 'AUTH_REFRESH_FAILED') && (e as Error).message === text;

  test('100 concurrent 401s for one generation: one host request, and all get the new credentials', async () => {
    const a = setup();
    const old = hostToken();
    const generation = await a.install(hostCredentials(old));
    const waiters = Array.from({ length: 100 }, () => settled(a.unauthorized(generation)));
    await a.drain();
    await until(() => a.calls.length > 0, 'the host request');
    await a.drain();
    assert.equal(a.calls.length, 1, 'exactly one refresh request');
    assert.deepEqual(
      { connectionId: a.calls[0]!.connectionId, previousAccountId: a.calls[0]!.previousAccountId },
      { connectionId: 'connection-7', previousAccountId: 'acct-1' },
    );
    // Until the host answers, the old credentials stay in force.
    assert.equal((await a.current())?.bearer, old);

    const fresh = hostToken({ planType: 'pro' });
    a.calls[0]!.answer.resolve({ accessToken: fresh, chatgptAccountId: 'acct-1', chatgptPlanType: null });
    const expected: UpstreamAuth = {
      mode: 'chatgptAuthTokens',
      bearer: fresh,
      accountId: 'acct-1',
      generation: generation + 1,
    };
    for (const r of await Promise.all(waiters)) assert.deepEqual(r, { ok: true, value: expected });
    assert.deepEqual(await a.current(), expected);
    const snap = await a.snapshot();
    assert.equal(snap?.generation, generation + 1);
    assert.equal(snap?.credentials.mode === 'chatgptAuthTokens' && snap.credentials.planType, 'pro');
    assert.equal(a.calls.length, 1);
  });

  test('a 401 for a stale generation gets the current credentials without asking the host', async () => {
    const a = setup();
    const generation = await a.install(hostCredentials(hostToken()));
    const first = a.unauthorized(generation);
    await until(() => a.calls.length === 1, 'the host request');
    const fresh = hostToken();
    a.calls[0]!.answer.resolve({ accessToken: fresh, chatgptAccountId: 'acct-1', chatgptPlanType: 'team' });
    assert.equal((await first).bearer, fresh);

    const late = await a.unauthorized(generation);
    assert.deepEqual(late, {
      mode: 'chatgptAuthTokens',
      bearer: fresh,
      accountId: 'acct-1',
      generation: generation + 1,
    });
    await a.drain();
    assert.equal(a.calls.length, 1, 'no second host request');
    const snap = await a.snapshot();
    assert.equal(snap?.credentials.mode === 'chatgptAuthTokens' && snap.credentials.planType, 'team');
  });

  const hostFailures: [string, (answer: Deferred<RefreshedTokens>) => void, string][] = [
    [
      'no answer in time',
      (d) =>
        d.reject(
          new BrokerError('REQUEST_TIMEOUT', 'account/chatgptAuthTokens/refresh was not answered in time'),
        ),
      'auth refresh request timed out after 10s',
    ],
    [
      'a JSON-RPC error',
      (d) =>
        d.reject(
          new BrokerError('CLIENT_ERROR', 'account/chatgptAuthTokens/refresh failed with code -32001', {
            code: -32001,
            message: 'host detail that must not leak',
          }),
        ),
      'auth refresh request failed: code=-32001',
    ],
    [
      'a malformed result',
      (d) =>
        d.reject(new BrokerError('CLIENT_ERROR', 'malformed account/chatgptAuthTokens/refresh response')),
      'invalid auth refresh response',
    ],
    [
      'a token that is not a JWT',
      (d) => d.resolve({ accessToken: 'not-a-jwt', chatgptAccountId: 'acct-1' }),
      'auth refresh returned invalid credentials',
    ],
  ];
  for (const [label, answer, text] of hostFailures) {
    test(`a refresh that fails (${label}) reports "${text}" and keeps the old credentials`, async () => {
      const a = setup();
      const old = hostToken();
      const generation = await a.install(hostCredentials(old));
      const waiters = [settled(a.unauthorized(generation)), settled(a.unauthorized(generation))];
      await until(() => a.calls.length === 1, 'the host request');
      answer(a.calls[0]!.answer);
      for (const r of await Promise.all(waiters)) {
        assert.equal(r.ok, false);
        assert.ok(!r.ok && refreshFailed(text)(r.error), !r.ok ? String(r.error) : '');
      }
      assert.deepEqual(await a.current(), {
        mode: 'chatgptAuthTokens',
        bearer: old,
        accountId: 'acct-1',
        generation,
      });
    });
  }

  test('forced workspace: a refresh for another workspace is refused and the old token stays in force', async () => {
    const a = setup({ forcedWorkspaceIds: ['acct-1'] });
    const old = hostToken();
    const generation = await a.install(hostCredentials(old));
    const waiter = settled(a.unauthorized(generation));
    await until(() => a.calls.length === 1, 'the host request');
    a.calls[0]!.answer.resolve({
      accessToken: hostToken({ accountId: 'acct-2' }),
      chatgptAccountId: 'acct-2',
    });
    const r = await waiter;
    assert.ok(
      !r.ok &&
        refreshFailed('Login is restricted to workspace(s) acct-1, but current credentials belong to acct-2')(
          r.error,
        ),
      JSON.stringify(r),
    );
    assert.deepEqual(await a.current(), {
      mode: 'chatgptAuthTokens',
      bearer: old,
      accountId: 'acct-1',
      generation,
    });
  });

  test('after a failed refresh the next 401 starts a new one', async () => {
    const a = setup();
    const generation = await a.install(hostCredentials(hostToken()));
    const first = settled(a.unauthorized(generation));
    await until(() => a.calls.length === 1, 'the first host request');
    a.calls[0]!.answer.reject(new BrokerError('REQUEST_TIMEOUT', 'late'));
    assert.equal((await first).ok, false);

    const second = a.unauthorized(generation);
    await until(() => a.calls.length === 2, 'a second host request');
    const fresh = hostToken();
    a.calls[1]!.answer.resolve({ accessToken: fresh, chatgptAccountId: 'acct-1' });
    assert.deepEqual(await second, {
      mode: 'chatgptAuthTokens',
      bearer: fresh,
      accountId: 'acct-1',
      generation: generation + 1,
    });
  });

  test('a logout during a refresh fails the waiters and the late answer does not bring credentials back', async () => {
    const a = setup();
    const generation = await a.install(hostCredentials(hostToken()));
    const waiters = Array.from({ length: 5 }, () => settled(a.unauthorized(generation)));
    await until(() => a.calls.length === 1, 'the host request');
    await a.clear();
    assert.equal(await a.current(), null);
    a.calls[0]!.answer.resolve({ accessToken: hostToken(), chatgptAccountId: 'acct-1' });
    for (const r of await Promise.all(waiters)) {
      assert.ok(!r.ok && isBrokerError(r.error, 'AUTH_REFRESH_FAILED'), JSON.stringify(r));
      assert.equal(r.error.message, 'not logged in: log in with account/login/start first');
    }
    assert.equal(await a.current(), null);
    assert.equal(await a.snapshot(), null);
    const after = await settled(a.unauthorized(generation + 1));
    assert.ok(!after.ok && isBrokerError(after.error, 'AUTH_REFRESH_FAILED'));
    assert.equal(a.calls.length, 1, 'nobody logged in: the host is not asked');
  });

  test('a new login during a refresh wins over the refresh: waiters go on with it; its own 401 starts a new refresh', async () => {
    const a = setup();
    const generation = await a.install(hostCredentials(hostToken()));
    const waiter = settled(a.unauthorized(generation));
    await until(() => a.calls.length === 1, 'the first host request');
    const relogin = hostToken({ accountId: 'acct-5' });
    const next = await a.install(hostCredentials(relogin, 'acct-5'));
    a.calls[0]!.answer.resolve({ accessToken: hostToken(), chatgptAccountId: 'acct-1' });
    const relogged = { mode: 'chatgptAuthTokens', bearer: relogin, accountId: 'acct-5', generation: next };
    assert.deepEqual(await waiter, { ok: true, value: relogged });
    assert.deepEqual(await a.current(), relogged);
    const again = settled(a.unauthorized(next));
    await until(() => a.calls.length === 2, 'a refresh for the new login');
    assert.equal(a.calls[1]!.previousAccountId, 'acct-5');
    a.calls[1]!.answer.reject(new BrokerError('REQUEST_TIMEOUT', 'late'));
    assert.equal((await again).ok, false);
  });

  test('an API key rejected with 401 is not refreshed; nobody logged in is an error too', async () => {
    const a = setup();
    await assert.rejects(a.unauthorized(0), (e) => isBrokerError(e, 'AUTH_REFRESH_FAILED'));
    const generation = await a.install({ mode: 'apikey', apiKey: 'sk-1' });
    await assert.rejects(a.unauthorized(generation), (e) => isBrokerError(e, 'AUTH_REFRESH_FAILED'));
    assert.equal(a.calls.length, 0);
    assert.deepEqual(await a.current(), { mode: 'apikey', bearer: 'sk-1', accountId: null, generation });
  });

  test('refreshFailureText maps each host failure to spec C.8 text', () => {
    assert.equal(
      refreshFailureText(new BrokerError('REQUEST_TIMEOUT', 'x'), 10_000),
      'auth refresh request timed out after 10s',
    );
    assert.equal(
      refreshFailureText(new BrokerError('REQUEST_TIMEOUT', 'x'), 300),
      'auth refresh request timed out after 300ms',
    );
    assert.equal(
      refreshFailureText(
        new BrokerError('CLIENT_ERROR', 'x', { code: -32001, message: 'secret detail' }),
        10_000,
      ),
      'auth refresh request failed: code=-32001',
    );
    assert.equal(
      refreshFailureText(new BrokerError('CLIENT_ERROR', 'x', { code: -32603 }), 10_000),
      'auth refresh request failed: code=-32603',
    );
    assert.equal(
      refreshFailureText(new BrokerError('CLIENT_ERROR', 'x'), 10_000),
      'invalid auth refresh response',
    );
    assert.equal(
      refreshFailureText(new BrokerError('CLIENT_ERROR', 'x', { code: 'nope' }), 10_000),
      'invalid auth refresh response',
    );
    assert.equal(rustDuration(10_000), '10s');
    assert.equal(rustDuration(1_500), '1.5s');
    assert.equal(rustDuration(250), '250ms');
  });
});

// ---------------------------------------------------------------------------------------------

describe('scope queue: one request at a time per scope, follow-ups before the next', () => {
  const SESSION: Session = {
    clientName: 'unit',
    clientVersion: '0',
    experimentalApi: false,
    requestAttestation: false,
    optOutNotificationMethods: [],
  };

  function setup(handlers: Record<string, ScopedHandler>, capacity = 10_000) {
    const system = new ActorSystem({ log: silentLogger() });
    system.spawn('scope/test', () => scopeQueueBehaviour({ handlers, capacity, log: silentLogger() }));
    return (method: string, params: unknown = null, connectionId = 'c1') =>
      system.ask('scope/test', ScopeMessage.request, { method, params, connectionId, session: SESSION });
  }

  test('strict arrival order across many requests and connections, never two at once', async () => {
    const events: string[] = [];
    let active = 0;
    let maxActive = 0;
    const ask = setup({
      slow: async (params, ctx) => {
        const { i } = params as { i: number };
        active++;
        maxActive = Math.max(maxActive, active);
        events.push(`start ${i} ${ctx.connectionId}`);
        await sleep(i % 3);
        events.push(`end ${i}`);
        active--;
        return i * 2;
      },
      fast: (params) => {
        const { i } = params as { i: number };
        events.push(`start ${i} sync`);
        events.push(`end ${i}`);
        return i * 2;
      },
    });
    const n = 200;
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) => ask(i % 4 === 0 ? 'fast' : 'slow', { i }, `c${i % 5}`)),
    );
    assert.deepEqual(
      replies,
      Array.from({ length: n }, (_, i) => i * 2),
    );
    assert.equal(maxActive, 1);
    assert.deepEqual(
      events,
      Array.from({ length: n }, (_, i) => [
        `start ${i} ${i % 4 === 0 ? 'sync' : `c${i % 5}`}`,
        `end ${i}`,
      ]).flat(),
    );
  });

  test('`after` work runs after the reply and before the next request, in the order it was left', async () => {
    const events: string[] = [];
    const ask = setup({
      login: (_params, ctx) => {
        events.push('handle login');
        ctx.after(async () => {
          events.push('after 1 start');
          await sleep(20);
          events.push('after 1 end');
        });
        ctx.after(() => {
          events.push('after 2');
        });
        return 'logged in';
      },
      read: () => {
        events.push('handle read');
        return 'read';
      },
    });
    await Promise.all([
      ask('login').then((v) => events.push(`reply ${String(v)}`)),
      ask('read').then((v) => events.push(`reply ${String(v)}`)),
    ]);
    assert.deepEqual(events, [
      'handle login',
      'reply logged in',
      'after 1 start',
      'after 1 end',
      'after 2',
      'handle read',
      'reply read',
    ]);
  });

  test('failing `after` work is logged, the later work and the next request still run', async () => {
    const events: string[] = [];
    const ask = setup({
      a: (_p, ctx) => {
        ctx.after(() => {
          throw new Error('follow-up bug');
        });
        ctx.after(() => {
          events.push('second follow-up');
        });
        return 'a';
      },
      b: () => 'b',
    });
    assert.deepEqual(await Promise.all([ask('a'), ask('b')]), ['a', 'b']);
    assert.deepEqual(events, ['second follow-up']);
  });

  test('a throwing handler replies with its error; the queue goes on with the same state', async () => {
    let count = 0;
    const ask = setup({
      refuse: () => {
        throw new ProtocolError(-32600, 'API key login is disabled. Use ChatGPT login instead.');
      },
      refuseLater: async () => {
        await sleep(1);
        throw new ProtocolError(-32603, 'failed to set external auth: invalid ID token format');
      },
      bug: () => {
        throw new TypeError('a bug');
      },
      count: () => ++count,
    });
    const results = await Promise.all([
      settled(ask('count')),
      settled(ask('refuse')),
      settled(ask('count')),
      settled(ask('refuseLater')),
      settled(ask('bug')),
      settled(ask('no/such/method')),
      settled(ask('count')),
    ]);
    assert.deepEqual(results[0], { ok: true, value: 1 });
    const refused = results[1];
    assert.ok(
      !refused.ok &&
        isProtocolError(refused.error) &&
        refused.error.code === -32600 &&
        refused.error.message === 'API key login is disabled. Use ChatGPT login instead.',
    );
    assert.deepEqual(results[2], { ok: true, value: 2 });
    const later = results[3];
    assert.ok(
      !later.ok &&
        isProtocolError(later.error) &&
        later.error.code === -32603 &&
        later.error.message === 'failed to set external auth: invalid ID token format',
    );
    assert.equal(results[4].ok, false);
    assert.equal(results[5].ok, false);
    assert.deepEqual(results[6], { ok: true, value: 3 }, 'same state: the actor was not restarted');
  });

  test('work a handler left with `after` before failing still runs: its side effects already happened', async () => {
    // The account service cancels a pending browser login (and leaves the announcement of that
    // to `after`) before steps that can still fail, such as removing auth.json on logout or
    // starting the next login's callback server. codex announces the cancelled login anyway.
    const events: string[] = [];
    const ask = setup({
      logout: (_p, ctx) => {
        ctx.after(() => {
          events.push('announce cancelled login');
        });
        throw new ProtocolError(-32603, 'failed to remove auth.json: EISDIR');
      },
      read: () => {
        events.push('handle read');
        return 'read';
      },
    });
    const results = await Promise.all([settled(ask('logout')), settled(ask('read'))]);
    assert.equal(results[0].ok, false);
    assert.deepEqual(events, ['announce cancelled login', 'handle read']);
  });

  test('past its capacity the queue refuses with MAILBOX_FULL, then serves again', async () => {
    const gate = deferred<void>();
    const ask = setup(
      {
        block: async () => {
          await gate.promise;
          return 'unblocked';
        },
        echo: (params) => params,
      },
      3,
    );
    const held = [settled(ask('block')), settled(ask('echo', 1)), settled(ask('echo', 2))];
    const refused = await settled(ask('echo', 3));
    assert.ok(!refused.ok && isBrokerError(refused.error, 'MAILBOX_FULL'), JSON.stringify(refused));
    gate.resolve();
    assert.deepEqual(await Promise.all(held), [
      { ok: true, value: 'unblocked' },
      { ok: true, value: 1 },
      { ok: true, value: 2 },
    ]);
    assert.equal(await ask('echo', 4), 4);
  });

  test('a request whose `after` work is still running holds its place in the capacity', async () => {
    const gate = deferred<void>();
    const ask = setup(
      {
        login: (_p, ctx) => {
          ctx.after(() => gate.promise);
          return 'ok';
        },
        echo: (params) => params,
      },
      2,
    );
    assert.equal(await ask('login'), 'ok');
    const queued = settled(ask('echo', 1));
    const refused = await settled(ask('echo', 2));
    assert.ok(!refused.ok && isBrokerError(refused.error, 'MAILBOX_FULL'), JSON.stringify(refused));
    gate.resolve();
    assert.deepEqual(await queued, { ok: true, value: 1 });
  });
});
