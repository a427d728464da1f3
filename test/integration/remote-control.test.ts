/**
 * Remote control through the built CLI against the local backend (spec B): the methods and their
 * gate, enrollment with the exact headers, the relay socket and remote clients served as broker
 * connections, persistence across a restart with the token never written, disable.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { RpcMessage } from '../helpers/app-server-process.js';
import { connectionPayload } from '../helpers/device-key-cases.js';
import { createKey, opensslVerify, signWith } from '../helpers/device-keys.js';
import { chatgptToken, useLocalBackend } from '../helpers/local-backend.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  filesUnder,
  tempHome,
  loginWithTokens,
  startRemoteControlServer,
  statusReached,
  statusTrail,
  type StatusParams,
} from '../helpers/remote-control.js';

const backend = useLocalBackend();

interface EnrollmentRow {
  websocket_url: string;
  account_id: string;
  app_server_client_name: string;
  server_id: string;
  environment_id: string;
  server_name: string;
  updated_at: number;
  remote_control_enabled: number | null;
}

function enrollmentRows(home: string): EnrollmentRow[] {
  const db = new Database(join(home, 'state_5.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT * FROM remote_control_enrollments').all() as EnrollmentRow[];
  } finally {
    db.close();
  }
}

test('the gate: remoteControl/* needs experimentalApi, the status notification does not', async (t) => {
  const client = await startRemoteControlServer(t, backend, { experimental: false });
  const greeting = await statusReached(client, 'disabled');
  assert.equal(greeting.environmentId, null);
  for (const method of ['remoteControl/status/read', 'remoteControl/enable', 'remoteControl/disable']) {
    const reply = await client.request(method);
    assert.deepEqual(reply.error, { code: -32600, message: `${method} requires experimentalApi capability` });
  }
});

test('enable needs ChatGPT auth: none, or an API key, is refused and nothing is stored', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  const greeting = await statusReached(client, 'disabled');
  assert.match(greeting.installationId, /^[0-9a-f-]{36}$/);
  assert.equal(readFileSync(join(client.codexHome, 'installation_id'), 'utf8'), greeting.installationId);

  assert.deepEqual((await client.request('remoteControl/enable')).error, {
    code: -32600,
    message: 'remote control requires ChatGPT authentication',
  });
  const login = await client.request('account/login/start', { type: 'apiKey', apiKey: 'sk-test-remote' });
  assert.ok(login.result, JSON.stringify(login.error));
  assert.deepEqual((await client.request('remoteControl/enable', { ephemeral: false })).error, {
    code: -32600,
    message: 'remote control requires ChatGPT authentication; API key auth is not supported',
  });
  const read = await client.request('remoteControl/status/read');
  assert.equal((read.result as StatusParams).status, 'disabled');
  assert.equal(backend.requests.filter((r) => r.route.startsWith('remote.')).length, 0);

  assert.deepEqual((await client.request('remoteControl/enable', { ephemeral: 'yes' })).error, {
    code: -32600,
    message: 'Invalid request: invalid type: string "yes", expected a boolean',
  });
});

test('enable: enroll with the ChatGPT token, connect with the server token, statuses in order', async (t) => {
  const home = tempHome(t);
  const client = await startRemoteControlServer(t, backend, { home, clientName: 'rc-host' });
  const access = chatgptToken();
  await loginWithTokens(client, access);

  const reply = await client.request('remoteControl/enable');
  const result = reply.result as StatusParams;
  assert.ok(result, JSON.stringify(reply.error));
  assert.equal(result.status, 'connecting');
  assert.match(result.environmentId ?? '', /^env_/, 'enable enrolls before answering');
  const connected = await statusReached(client, 'connected');
  assert.equal(connected.environmentId, result.environmentId);
  assert.deepEqual(statusTrail(client), [
    'disabled:null',
    'connecting:null',
    `connecting:${result.environmentId}`,
    `connected:${result.environmentId}`,
  ]);

  const enroll = backend.requests.find((r) => r.route === 'remote.enroll');
  assert.ok(enroll);
  assert.equal(enroll.headers.authorization, `Bearer ${access}`);
  assert.equal(enroll.headers['chatgpt-account-id'], 'acct-1');
  assert.equal(enroll.headers.originator, 'rc-host');
  assert.match(enroll.headers['user-agent'] ?? '', /^rc-host\/0\.169\.0 /);
  assert.equal(enroll.headers['x-codex-installation-id'], result.installationId);
  assert.equal(enroll.headers['content-type'], 'application/json');

  const handshake = backend.requests.find((r) => r.route === 'remote.ws' && r.status === 101);
  assert.ok(handshake);
  const server = backend.remoteControl.servers()[0]!;
  assert.match(handshake.headers.authorization ?? '', /^Bearer rct_/);
  assert.equal(handshake.headers['x-codex-protocol-version'], '3');
  assert.equal(handshake.headers['x-codex-name'], Buffer.from(result.serverName).toString('base64'));
  assert.equal(handshake.headers['x-codex-server-id'], server.serverId);
  assert.equal(handshake.headers['x-codex-installation-id'], result.installationId);
  for (const absent of ['chatgpt-account-id', 'user-agent', 'originator', 'x-codex-subscribe-cursor']) {
    assert.equal(handshake.headers[absent], undefined, absent);
  }
  assert.equal(server.environmentId, result.environmentId);
  assert.equal(server.installationId, result.installationId);

  const rows = enrollmentRows(home);
  assert.equal(rows.length, 1);
  assert.deepEqual(
    { ...rows[0], updated_at: 0 },
    {
      websocket_url: `${backend.chatgptBaseUrl.replace('https:', 'wss:')}/wham/remote/control/server`,
      account_id: 'acct-1',
      app_server_client_name: 'rc-host',
      server_id: server.serverId,
      environment_id: result.environmentId,
      server_name: result.serverName,
      updated_at: 0,
      remote_control_enabled: 1,
    },
  );
  assert.equal(statSync(join(home, 'state_5.sqlite')).mode & 0o777, 0o600);
  const read = await client.request('remoteControl/status/read', null);
  assert.deepEqual(read.result, { ...result, status: 'connected' });
});

test('a remote client through the relay is a connection: initialize, status, account/read', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  await client.request('remoteControl/enable');
  await statusReached(client, 'connected');
  const server = await backend.remoteControl.waitForServer();

  const remote = backend.remoteControl.openClient({ environmentId: server.environmentId });
  const init = await remote.request('initialize', {
    clientInfo: { name: 'remote-phone', title: null, version: '1.0.0' },
    capabilities: { experimentalApi: true },
  });
  assert.ok(init.result, JSON.stringify(init.error));
  assert.match((init.result as { userAgent: string }).userAgent, /\(remote-phone; 1\.0\.0\)$/);
  const hello = await remote.next();
  assert.equal(hello.method, 'remoteControl/status/changed');
  assert.equal((hello.params as StatusParams).status, 'connected');

  const account = await remote.request('account/read', {});
  assert.deepEqual((account.result as { account: { email: string } }).account.email, 'dev@example.com');
  const again = await remote.request('initialize', {
    clientInfo: { name: 'remote-phone', title: null, version: '1.0.0' },
  });
  assert.ok(again.result, 'a repeated initialize restarts the stream');
  assert.equal(await remote.ping(), 'active');
  remote.close();
  // The local client is unaffected.
  assert.ok((await client.request('account/read', {})).result);
});

test('a remote client signs with a device key through the relay (SoftHSM2), verified with openssl', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const client = await startRemoteControlServer(t, backend, {
    extra: ['-c', 'gatehouse.device_key_tpm=off'],
  });
  await loginWithTokens(client);
  await client.request('remoteControl/enable');
  await statusReached(client, 'connected');
  const remote = backend.remoteControl.openClient();
  t.after(() => remote.close());
  await remote.request('initialize', { clientInfo: { name: 'remote-phone', title: null, version: '1.0.0' } });
  const requester = {
    request: async (method: string, params?: unknown) => (await remote.request(method, params)) as RpcMessage,
  };
  const ids = { accountUserId: 'account-user-1', clientId: 'cli_123' };
  const key = await createKey(requester, { ...ids, protectionPolicy: 'allow_os_protected_nonextractable' });
  const signature = await signWith(requester, key.keyId, connectionPayload(Math.floor(Date.now() / 1000)));
  assert.equal(await opensslVerify(key.publicKeySpkiDerBase64, signature), 'Verified OK');
});

test('restart: the persisted preference reconnects through /refresh; the token is never written', async (t) => {
  const home = tempHome(t);
  const first = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(first);
  const enabled = (await first.request('remoteControl/enable')).result as StatusParams;
  await statusReached(first, 'connected');
  const server = await backend.remoteControl.waitForServer();
  first.closeStdin();
  assert.equal((await first.exited).code, 0);

  backend.requests.length = 0;
  const second = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(second);
  const connected = await statusReached(second, 'connected');
  assert.equal(connected.environmentId, enabled.environmentId, 'same enrollment, no enable call');
  const routes = backend.requests
    .filter((r) => r.route.startsWith('remote.'))
    .map((r) => `${r.route}:${r.status}`);
  assert.deepEqual(routes, ['remote.refresh:200', 'remote.ws:101']);
  const refresh = backend.requests.find((r) => r.route === 'remote.refresh')!;
  assert.equal(refresh.headers['chatgpt-account-id'], 'acct-1');
  assert.ok(backend.remoteControl.servers().some((s) => s.serverId === server.serverId && s.connected));

  // Every server token the backend saw: on no disk, in no log, on no stdout.
  const tokens = backend.requests
    .concat()
    .filter((r) => r.route === 'remote.ws')
    .map((r) => (r.headers.authorization ?? '').replace(/^Bearer /, ''));
  assert.ok(tokens.length > 0 && tokens.every((tok) => tok.startsWith('rct_')));
  second.closeStdin();
  await second.exited;
  for (const token of tokens) {
    for (const file of filesUnder(home)) assert.ok(!file.text.includes(token), `token in ${file.path}`);
    for (const c of [first, second]) {
      assert.ok(!c.stderrText.includes(token), 'token in the log');
      assert.ok(!c.stdoutText.includes(token), 'token on stdout');
    }
  }
});

test('disable drops the socket and stores the preference; ephemeral calls leave it alone', async (t) => {
  const home = tempHome(t);
  const first = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(first);
  const enabled = (await first.request('remoteControl/enable', { ephemeral: true })).result as StatusParams;
  await statusReached(first, 'connected');
  assert.equal(enrollmentRows(home)[0]!.remote_control_enabled, null, 'ephemeral enable: never set');

  const disabled = await first.request('remoteControl/disable', { ephemeral: true });
  assert.deepEqual(disabled.result, { ...enabled, status: 'disabled', environmentId: null });
  assert.equal(statusTrail(first).at(-1), 'disabled:null');
  const serverOf = () =>
    backend.remoteControl.servers().find((s) => s.environmentId === enabled.environmentId)!;
  await waitUntil(() => !serverOf().connected, 'the backend socket closed');
  assert.equal(enrollmentRows(home)[0]!.remote_control_enabled, null);

  // Enabling again in this process reuses the cached token: no refresh.
  backend.requests.length = 0;
  await first.request('remoteControl/enable');
  await statusReached(first, 'connected');
  assert.deepEqual(
    backend.requests.filter((r) => r.route.startsWith('remote.')).map((r) => r.route),
    ['remote.ws'],
  );
  assert.equal(enrollmentRows(home)[0]!.remote_control_enabled, 1);
  await first.request('remoteControl/disable');
  assert.equal(enrollmentRows(home)[0]!.remote_control_enabled, 0);
  first.closeStdin();
  await first.exited;

  backend.requests.length = 0;
  const second = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(second);
  const read = await second.request('remoteControl/status/read');
  assert.equal((read.result as StatusParams).status, 'disabled', 'a persisted disable stays disabled');
  assert.equal(backend.requests.filter((r) => r.route.startsWith('remote.')).length, 0);
});

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
