/**
 * The secrets audit. Every scenario that handles a secret runs through the built CLI with
 * recognisable values, logging at `trace`: an API key, host-owned ChatGPT tokens and the fresh
 * ones a refresh brings, a browser login's stored tokens, an attestation token, remote control's
 * server tokens, the PKCS#11 PINs. The last tests then search stdout, stderr, every error message
 * and every file under every CODEX_HOME for each of them. The only places a secret may be are the
 * ones its owner chose: auth.json (0600) for a stored login, the PIN file (0600) for the PINs.
 * Every file Gatehouse leaves under CODEX_HOME is 0600 and every folder 0700.
 *
 * Positive controls keep the search honest: each secret is shown to have been used (the backend
 * saw it, or it sits in its allowed file), so a scenario that silently stopped exercising it fails.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { chatgptClaims, mintJwt } from '../../src/backend/tokens.js';
import { TestClient, WsTestClient } from '../helpers/app-server-process.js';
import { connectionPayload } from '../helpers/device-key-cases.js';
import { createKey, signWith } from '../helpers/device-keys.js';
import { backendArgs, useLocalBackend } from '../helpers/local-backend.js';
import { widerThanPrivate } from '../helpers/file-modes.js';
import { FAST_RETRIES, filesUnder, statusReached } from '../helpers/remote-control.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';

const backend = useLocalBackend();

/** Where a secret may legitimately be found: nowhere, or one file its owner chose. */
type AllowedIn = 'nowhere' | 'auth.json' | 'pkcs11-pins.json';

interface Secret {
  label: string;
  value: string;
  allowedIn: AllowedIn;
}

const secrets: Secret[] = [];
const clients: (TestClient | WsTestClient)[] = [];
const processes: TestClient[] = [];
const homes: string[] = [];

after(() => {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

/** Registers a secret; a JWT's signature is registered too, so a log of half a token is caught. */
function secret(label: string, value: string, allowedIn: AllowedIn = 'nowhere'): string {
  secrets.push({ label, value, allowedIn });
  const signature = value.split('.')[2];
  if (signature && signature.length >= 16)
    secrets.push({ label: `${label} (signature)`, value: signature, allowedIn });
  return value;
}

/** A token that is unmistakable in any text it lands in. */
const marked = (what: string) => `GHAUDIT_${what}_${randomBytes(9).toString('hex')}`;

function hostToken(): string {
  const claims = chatgptClaims({
    email: 'audit@example.com',
    accountId: 'acct-1',
    userId: 'user-1',
    planType: 'plus',
    expiresInSec: 3600,
  });
  // The nonce makes every minted token distinct, even two minted in the same second.
  return mintJwt({ ...claims, audit_nonce: marked('jwt') });
}

/** A CODEX_HOME kept for the audit, removed after it. */
function home(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-'));
  homes.push(dir);
  return dir;
}

/** The built CLI against the local backend, logging everything it logs at `trace`. */
function spawn(
  t: { after(fn: () => Promise<void>): void },
  codexHome: string,
  extra: string[] = [],
): TestClient {
  const client = TestClient.spawn({
    args: backendArgs(backend, extra),
    env: { CODEX_CA_CERTIFICATE: backend.caCertPath },
    logLevel: 'trace',
    codexHome,
    readTimeoutMs: 15_000,
  });
  clients.push(client);
  processes.push(client);
  t.after(() => client.dispose());
  return client;
}

/** Answers every refresh request with a new recognisable token, and attestation with `token`. */
function playHost(client: TestClient | WsTestClient, attestationToken?: string): void {
  client.onMessage((m) => {
    if (m.method === 'account/chatgptAuthTokens/refresh') {
      const accessToken = secret('refreshed access token', hostToken());
      void client.answer(m.id!, {
        result: { accessToken, chatgptAccountId: 'acct-1', chatgptPlanType: null },
      });
    } else if (m.method === 'attestation/generate' && attestationToken) {
      void client.answer(m.id!, { result: { token: attestationToken } });
    }
  });
}

async function loginWithHostTokens(client: TestClient | WsTestClient): Promise<string> {
  const accessToken = secret('host access token', hostToken());
  const reply = await client.request('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken,
    chatgptAccountId: 'acct-1',
  });
  assert.deepEqual(reply.result, { type: 'chatgptAuthTokens' }, JSON.stringify(reply.error));
  return accessToken;
}

/** One text turn on a new thread, read to its end; returns the completed turn's status. */
async function turn(client: TestClient | WsTestClient, text: string): Promise<string> {
  const thread = await client.request('thread/start', {});
  const threadId = (thread.result as { thread: { id: string } }).thread.id;
  const started = await client.request('turn/start', { threadId, input: [{ type: 'text', text }] });
  const turnId = (started.result as { turn: { id: string } }).turn.id;
  const done = await client.readUntil(
    (m) => m.method === 'turn/completed' && (m.params as { turn: { id: string } }).turn.id === turnId,
    `turn/completed for ${turnId}`,
  );
  return (done.params as { turn: { status: string } }).turn.status;
}

const bearers = (route: string) =>
  backend.requests
    .filter((r) => r.route === route)
    .map((r) => (r.headers.authorization ?? '').replace(/^Bearer /, ''));

describe('scenarios, with recognisable secrets', () => {
  test('API key: login, turns, a rejected key, logout and a restart on the stored login', async (t) => {
    const codexHome = home();
    const apiKey = secret('API key', `sk-proj-${marked('apikey')}`, 'auth.json');
    const first = spawn(t, codexHome);
    await first.initialize({ experimentalApi: true });
    const login = await first.request('account/login/start', { type: 'apiKey', apiKey });
    assert.deepEqual(login.result, { type: 'apiKey' }, JSON.stringify(login.error));
    assert.equal(await turn(first, 'with an API key'), 'completed');
    assert.ok(bearers('responses.ws').concat(bearers('responses.http')).includes(apiKey), 'the key was used');

    // The backend refuses the key, once quoting it in its answer: the failures the client sees
    // quote the body (codex's text) but not the key.
    backend.revokeBearer(apiKey);
    assert.equal(await turn(first, 'with a revoked key'), 'failed');
    const echo = { kind: 'status', status: 400, body: `{"error":{"message":"bad key ${apiKey}"}}` } as const;
    for (const route of ['responses.ws', 'responses.http'] as const)
      backend.faults.add({ route, action: echo, times: -1 });
    assert.equal(await turn(first, 'with a key the backend quotes'), 'failed');
    backend.faults.clear();
    assert.ok(
      errorTexts(first).some((text) => text.includes('bad key <redacted>')),
      'the body is quoted, the key scrubbed',
    );
    first.closeStdin();
    assert.equal((await first.waitExit()).code, 0);

    // A new process reads the stored key from auth.json, then logs out.
    const second = spawn(t, codexHome);
    await second.initialize();
    const read = await second.request('account/read', {});
    assert.equal((read.result as { account: { type: string } }).account.type, 'apiKey');
    const authFile = join(codexHome, 'auth.json');
    assert.ok(readFileSync(authFile, 'utf8').includes(apiKey), 'stored in auth.json');
    assert.equal(statSync(authFile).mode & 0o777, 0o600);
    await second.request('account/logout');
    second.closeStdin();
    assert.equal((await second.waitExit()).code, 0);
  });

  test('host-owned tokens: turns, a 401 answered by a refresh, attestation, a malformed token', async (t) => {
    const attestation = secret('attestation token', `v1.${marked('attestation')}`);
    const client = spawn(t, home());
    playHost(client, attestation);
    await client.initialize({ experimentalApi: true, requestAttestation: true });
    const first = await loginWithHostTokens(client);
    assert.equal(await turn(client, 'first'), 'completed');
    backend.revokeBearer(first);
    assert.equal(await turn(client, 'after a revocation'), 'completed');
    const attested = backend.requests.filter((r) => r.attestation?.ok && r.attestation.token === attestation);
    assert.ok(attested.length > 0, 'the attestation token went to the backend');
    assert.ok(
      bearers('responses.ws').some((b) => b !== first),
      'a refreshed token was used',
    );

    const malformed = secret('malformed token', `not-a-jwt.${marked('malformed')}`);
    const refused = await client.request('account/login/start', {
      type: 'chatgptAuthTokens',
      accessToken: malformed,
      chatgptAccountId: 'acct-1',
    });
    assert.ok(refused.error, 'a malformed token is refused');
    client.closeStdin();
    assert.equal((await client.waitExit()).code, 0);
  });

  test('host-owned tokens over a WebSocket connection', async (t) => {
    const server = spawn(t, home(), ['--listen', 'ws://127.0.0.1:0']);
    const ws = await WsTestClient.connect(await server.listenUrl(), 15_000);
    clients.push(ws);
    t.after(() => ws.close());
    playHost(ws);
    await ws.initialize({ experimentalApi: true });
    await loginWithHostTokens(ws);
    assert.equal(await turn(ws, 'over a socket'), 'completed');
    await ws.close();
    server.signal('SIGTERM');
    assert.equal((await server.waitExit()).code, 0);
  });

  test('browser login: the issued tokens are stored in auth.json and nowhere else', async (t) => {
    const codexHome = home();
    const client = spawn(t, codexHome, [
      '-c',
      `gatehouse.login_issuer="${backend.issuer}"`,
      '-c',
      'gatehouse.login_callback_port=0',
    ]);
    await client.initialize();
    const started = await client.request('account/login/start', { type: 'chatgpt' });
    const { authUrl } = started.result as { authUrl: string };
    const location = await new Promise<string>((resolve, reject) => {
      httpsRequest(authUrl, { ca: backend.caCertPem }, (res) => {
        res.resume();
        resolve(res.headers.location ?? '');
      })
        .on('error', reject)
        .end();
    });
    await (await fetch(location)).text();
    const completed = await client.readUntilNotification('account/login/completed');
    assert.equal((completed.params as { success: boolean }).success, true);
    const stored = JSON.parse(readFileSync(join(codexHome, 'auth.json'), 'utf8')) as {
      tokens: Record<string, string>;
    };
    for (const name of ['access_token', 'refresh_token', 'id_token']) {
      assert.ok(stored.tokens[name], `auth.json has ${name}`);
      secret(`browser login ${name}`, stored.tokens[name], 'auth.json');
    }
    assert.equal(await turn(client, 'with the browser login'), 'completed');
    client.closeStdin();
    assert.equal((await client.waitExit()).code, 0);
  });

  test('remote control: enrollment, refresh and the relay socket use server tokens kept in memory', async (t) => {
    const codexHome = home();
    for (const round of [1, 2]) {
      const client = spawn(t, codexHome, FAST_RETRIES);
      await client.initialize({ experimentalApi: true, keepGreeting: true });
      await loginWithHostTokens(client);
      if (round === 1) await client.request('remoteControl/enable');
      await statusReached(client, 'connected');
      const remote = backend.remoteControl.openClient();
      await remote.request('initialize', {
        clientInfo: { name: 'audit-phone', title: null, version: '1.0.0' },
      });
      assert.ok(await remote.request('account/read', {}));
      remote.close();
      client.closeStdin();
      assert.equal((await client.waitExit()).code, 0);
    }
    const tokens = new Set(
      bearers('remote.ws')
        .concat(bearers('remote.refresh'))
        .filter((b) => b.startsWith('rct_')),
    );
    assert.ok(tokens.size >= 2, `server tokens seen by the backend: ${tokens.size}`);
    for (const token of tokens) secret('remote control server token', token);
  });

  test('device keys in SoftHSM2: the PINs stay in their file', async (t) => {
    if (skippedFor(t, softhsmMissing())) return;
    const codexHome = home();
    const client = spawn(t, codexHome, ['-c', 'gatehouse.device_key_tpm=off']);
    await client.initialize();
    const ids = { accountUserId: 'account-user-1', clientId: 'cli_123' };
    const key = await createKey(client, { ...ids, protectionPolicy: 'allow_os_protected_nonextractable' });
    await signWith(client, key.keyId, connectionPayload(Math.floor(Date.now() / 1000)));
    const pins = JSON.parse(readFileSync(join(codexHome, 'device-keys', 'pkcs11-pins.json'), 'utf8')) as {
      soPin: string;
      userPin: string;
    };
    secret('PKCS#11 SO PIN', pins.soPin, 'pkcs11-pins.json');
    secret('PKCS#11 user PIN', pins.userPin, 'pkcs11-pins.json');
    client.closeStdin();
    assert.equal((await client.waitExit()).code, 0);
  });
});

/** Every error a client was sent: JSON-RPC errors and the error fields of notifications. */
function errorTexts(client: TestClient | WsTestClient): string[] {
  const texts: string[] = [];
  for (const m of client.messages) {
    if (m.error) texts.push(JSON.stringify(m.error));
    const params = m.params as { error?: unknown; turn?: { error?: unknown } } | undefined;
    if (params?.error) texts.push(JSON.stringify(params.error));
    if (params?.turn?.error) texts.push(JSON.stringify(params.turn.error));
  }
  return texts;
}

describe('the audit', () => {
  test('no secret is on stdout, on stderr, in an error message, or in a file it does not belong in', (t) => {
    assert.ok(secrets.length >= 12, `secrets registered: ${secrets.length}`);
    const places: { where: string; text: string }[] = [];
    for (const p of processes) {
      places.push({ where: `stdout of pid ${p.child.pid}`, text: p.stdoutText });
      places.push({ where: `stderr of pid ${p.child.pid}`, text: p.stderrText });
    }
    for (const c of clients) {
      if (c instanceof WsTestClient) places.push({ where: 'WebSocket frames', text: c.frames.join('\n') });
      for (const text of errorTexts(c)) places.push({ where: 'an error message', text });
    }
    assert.ok(
      places.some((p) => p.where === 'an error message'),
      'the scenarios produced errors to search',
    );
    const files = homes.flatMap(filesUnder);
    const leaks: string[] = [];
    for (const s of secrets) {
      for (const p of places) if (p.text.includes(s.value)) leaks.push(`${s.label} in ${p.where}`);
      for (const file of files) {
        if (basename(file.path) === s.allowedIn) continue;
        if (file.text.includes(s.value)) leaks.push(`${s.label} in ${file.path}`);
      }
    }
    t.diagnostic(`searched ${secrets.length} secrets in ${places.length} outputs and ${files.length} files`);
    assert.deepEqual(leaks, []);
  });

  test('files Gatehouse leaves under CODEX_HOME are 0600 and folders 0700', () => {
    const checked = homes.reduce((n, home) => n + readdirSync(home, { recursive: true }).length, 0);
    assert.ok(checked >= 8, `entries checked: ${checked}`);
    assert.deepEqual(
      homes.flatMap((home) => widerThanPrivate(home)),
      [],
    );
  });
});
