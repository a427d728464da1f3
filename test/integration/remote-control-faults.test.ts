/**
 * Remote control under faults, through the built CLI against the local backend (spec B.3, B.4):
 * every status-code path of enroll, refresh and the handshake, bad enrollment answers, tokens that
 * expire, sockets dropped mid-message, hostile chunks, a flood of remote clients and a locked or
 * unusable SQLite file. Each ends with remote control working again or a clear error, and the
 * local client unaffected.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { chatgptToken, useLocalBackend } from '../helpers/local-backend.js';
import {
  loginWithTokens,
  tempHome,
  startRemoteControlServer,
  statusReached,
  statusTrail,
  type StatusParams,
} from '../helpers/remote-control.js';
import type { RpcId, RpcMessage, TestClient } from '../helpers/app-server-process.js';

const backend = useLocalBackend();

/** `route:status` of the remote-control requests the backend saw, in order. */
function remoteTrail(): string[] {
  return backend.requests
    .filter((r) => r.route.startsWith('remote.') && r.route !== 'remote.ws.envelope')
    .map((r) => `${r.route}:${r.status}`);
}

async function enabledAndConnected(client: TestClient): Promise<StatusParams> {
  await loginWithTokens(client);
  const reply = await client.request('remoteControl/enable');
  assert.ok(reply.result, JSON.stringify(reply.error));
  return statusReached(client, 'connected');
}

const enrollUrl = () => `${backend.chatgptBaseUrl}/wham/remote/control/server/enroll`;

/** Sends `enable` against an enroll that answers 401 once; returns its id and the host refresh request. */
async function enableAfterEnroll401(client: TestClient): Promise<{ id: RpcId; ask: RpcMessage }> {
  backend.faults.add({
    route: 'remote.enroll',
    action: { kind: 'status', status: 401, body: '{"detail":"token expired"}' },
  });
  const id = await client.sendRequest('remoteControl/enable');
  const ask = await client.readUntil(
    (m) => m.method === 'account/chatgptAuthTokens/refresh',
    'the refresh request',
  );
  return { id, ask };
}

test('enroll 401: the host is asked for new tokens, and the enroll is retried with them', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  const { id, ask } = await enableAfterEnroll401(client);
  assert.deepEqual(ask.params, { reason: 'unauthorized', previousAccountId: 'acct-1' });
  const fresh = chatgptToken({ expiresInSec: 7200 });
  await client.answer(ask.id!, {
    result: { accessToken: fresh, chatgptAccountId: 'acct-1', chatgptPlanType: null },
  });
  const reply = await client.readUntilResponse(id);
  assert.equal((reply.result as StatusParams).status, 'connecting', JSON.stringify(reply.error));
  const enrolls = backend.requests.filter((r) => r.route === 'remote.enroll');
  assert.deepEqual(
    enrolls.map((r) => r.status),
    [401, 200],
  );
  assert.equal(enrolls[1]!.headers.authorization, `Bearer ${fresh}`);
  await statusReached(client, 'connected');
});

test('enroll 401 and the host cannot help: -32600 with the backend answer, still disabled', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  const { id, ask } = await enableAfterEnroll401(client);
  await client.answer(ask.id!, { error: { code: -32000, message: 'no tokens here' } });
  const reply = await client.readUntilResponse(id);
  assert.deepEqual(reply.error, {
    code: -32600,
    message: `remote control server enrollment failed at \`${enrollUrl()}\`: HTTP 401 Unauthorized, request-id: <none>, cf-ray: <none>, body: {"detail":"token expired"}`,
  });
  assert.equal(
    ((await client.request('remoteControl/status/read')).result as StatusParams).status,
    'disabled',
  );
});

test('an undecodable enroll answer: -32603, the token in it redacted everywhere', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  const secret = 'rct_secret_must_not_leak_0123456789';
  const body = `{"server_id":"srv_e_mock","environment_id":"env_mock","remote_control_token":"${secret}"}`;
  backend.faults.add({ route: 'remote.enroll', action: { kind: 'status', status: 200, body } });
  const reply = await client.request('remoteControl/enable');
  assert.deepEqual(reply.error, {
    code: -32603,
    message:
      `failed to parse remote control server enrollment response from \`${enrollUrl()}\`: HTTP 200 OK, ` +
      'request-id: <none>, cf-ray: <none>, body: {"server_id":"srv_e_mock","environment_id":"env_mock",' +
      `"remote_control_token":"<redacted>"}, decode error: missing field \`expires_at\` at line 1 column ${body.length}`,
  });
  assert.ok(!client.stderrText.includes(secret) && !client.stdoutText.includes(secret));
  assert.equal(
    ((await client.request('remoteControl/status/read')).result as StatusParams).status,
    'disabled',
  );
});

test('an unparsable expires_at is a clear error; one in the past is used as is and recovered from', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  const answer = (expiresAt: string) =>
    JSON.stringify({
      server_id: 'srv_e_ghost',
      environment_id: 'env_ghost',
      remote_control_token: 'rct_ghost',
      expires_at: expiresAt,
    });
  backend.faults.add({
    route: 'remote.enroll',
    action: { kind: 'status', status: 200, body: answer('next tuesday') },
  });
  const bad = await client.request('remoteControl/enable');
  assert.equal(bad.error?.code, -32603);
  assert.match(bad.error?.message ?? '', /expires_at/);
  assert.ok(!(bad.error?.message ?? '').includes('rct_ghost'));

  // A past expiry: the token must be refreshed first; the backend does not know the server (404),
  // so it is forgotten and a real one enrolled in the same attempt.
  backend.faults.add({
    route: 'remote.enroll',
    action: { kind: 'status', status: 200, body: answer('2001-01-01T00:00:00Z') },
  });
  const reply = await client.request('remoteControl/enable');
  assert.equal((reply.result as StatusParams).environmentId, 'env_ghost');
  const connected = await statusReached(client, 'connected');
  assert.match(connected.environmentId ?? '', /^env_(?!ghost)/);
  assert.deepEqual(remoteTrail(), [
    'remote.enroll:200',
    'remote.enroll:200',
    'remote.refresh:404',
    'remote.enroll:200',
    'remote.ws:101',
  ]);
});

test('handshake 401: only the token is dropped; refresh, then connected again', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  backend.faults.add({ route: 'remote.ws', action: { kind: 'status', status: 401 } });
  const env = ((await client.request('remoteControl/enable')).result as StatusParams).environmentId;
  const connected = await statusReached(client, 'connected');
  assert.equal(connected.environmentId, env);
  assert.deepEqual(remoteTrail(), [
    'remote.enroll:200',
    'remote.ws:401',
    'remote.refresh:200',
    'remote.ws:101',
  ]);
  assert.ok(statusTrail(client).includes(`errored:${env}`), 'errored, environment id kept');
});

test('handshake 404 "Remote app server not found": re-enroll at once, connect after the backoff', async (t) => {
  const home = tempHome(t);
  const client = await startRemoteControlServer(t, backend, { home });
  const first = await enabledAndConnected(client);
  const server = backend.remoteControl.servers().find((s) => s.environmentId === first.environmentId)!;
  backend.requests.length = 0;
  backend.remoteControl.forget(server.serverId); // also cuts the socket
  const trail = statusTrail(client).length;
  const again = await statusReached(client, 'connected');
  assert.notEqual(again.environmentId, first.environmentId);
  assert.deepEqual(remoteTrail(), ['remote.ws:404', 'remote.enroll:200', 'remote.ws:101']);
  assert.deepEqual(statusTrail(client).slice(trail), [
    `connecting:${first.environmentId}`,
    `errored:${again.environmentId}`,
    `connected:${again.environmentId}`,
  ]);
  const db = new Database(join(home, 'state_5.sqlite'), { readonly: true });
  t.after(() => db.close());
  const rows = db.prepare('SELECT environment_id FROM remote_control_enrollments').all();
  assert.deepEqual(rows, [{ environment_id: again.environmentId }], 'the row was replaced');
});

test('any other handshake 404, and 503 with Retry-After: the enrollment is kept, retried later', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  backend.faults.add({
    route: 'remote.ws',
    action: { kind: 'status', status: 404, body: '{"detail":"no route"}' },
  });
  backend.faults.add({ route: 'remote.ws', action: { kind: 'status', status: 503, retryAfterSec: 1 } });
  await client.request('remoteControl/enable');
  await statusReached(client, 'connected');
  assert.deepEqual(remoteTrail(), ['remote.enroll:200', 'remote.ws:404', 'remote.ws:503', 'remote.ws:101']);
  const [, , refused, accepted] = backend.requests.filter((r) => r.route.startsWith('remote.'));
  assert.ok(accepted!.at - refused!.at >= 1000, `Retry-After honoured: ${accepted!.at - refused!.at} ms`);
  assert.match(
    client.stderrText,
    /failed to connect app-server remote control websocket `wss:[^`]+`: HTTP error: 503 Service Unavailable/,
  );
});

test('restart with a persisted enrollment: refresh 502 then 404 then a new server', async (t) => {
  const home = tempHome(t);
  const first = await startRemoteControlServer(t, backend, { home });
  const before = await enabledAndConnected(first);
  first.closeStdin();
  await first.exited;

  backend.requests.length = 0;
  backend.faults.add({ route: 'remote.refresh', action: { kind: 'status', status: 502 } });
  const server = backend.remoteControl.servers().find((s) => s.environmentId === before.environmentId)!;
  backend.remoteControl.forget(server.serverId);
  const second = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(second);
  const after = await statusReached(second, 'connected');
  assert.notEqual(after.environmentId, before.environmentId);
  assert.deepEqual(remoteTrail(), [
    'remote.refresh:502',
    'remote.refresh:404',
    'remote.enroll:200',
    'remote.ws:101',
  ]);
  assert.ok(statusTrail(second).includes(`errored:${before.environmentId}`), 'the failed refresh shows');
});

test('a token that expires while connected: nothing until the socket drops, then a required refresh', async (t) => {
  const ttl = backend.remoteControl.tokenTtlSec;
  backend.remoteControl.tokenTtlSec = 1;
  t.after(() => (backend.remoteControl.tokenTtlSec = ttl));
  const client = await startRemoteControlServer(t, backend);
  const status = await enabledAndConnected(client);
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assert.equal(statusTrail(client).at(-1), `connected:${status.environmentId}`, 'still connected');
  backend.requests.length = 0;
  backend.remoteControl.dropSockets();
  await statusReached(client, 'connected');
  assert.deepEqual(remoteTrail(), ['remote.refresh:200', 'remote.ws:101']);
});

test('unacknowledged answers are replayed with their seq_id after a reconnect', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await enabledAndConnected(client);
  const remote = backend.remoteControl.openClient({ autoAck: false });
  t.after(() => remote.close());
  await remote.request('initialize', { clientInfo: { name: 'remote-phone', title: null, version: '1.0.0' } });
  assert.equal((await remote.next()).method, 'remoteControl/status/changed');
  const sent = backend.remoteControl.serverEnvelopes.filter((e) => e.clientId === remote.clientId);
  assert.ok(sent.length === 2 && sent.every((e) => !e.acked), JSON.stringify(sent));
  backend.remoteControl.dropSockets();
  await statusReached(client, 'connected');
  const deadline = Date.now() + 5_000;
  let replayed: typeof sent = [];
  while (Date.now() < deadline) {
    replayed = backend.remoteControl.serverEnvelopes.filter(
      (e) => e.clientId === remote.clientId && e.outcome === 'replayed',
    );
    if (replayed.length >= sent.length) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(
    replayed.map((e) => e.seqId),
    sent.map((e) => e.seqId),
  );
  // The stream goes on after the reconnect.
  remote.autoAck = true;
  assert.ok((await remote.request('account/read', {})).result);
});

test('hostile chunks and a socket dropped mid-message: dropped, and the stream keeps working', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await enabledAndConnected(client);
  const remote = backend.remoteControl.openClient({ chunkBytes: 64 });
  t.after(() => remote.close());
  const init = await remote.request('initialize', {
    clientInfo: { name: 'remote-phone', title: null, version: '1.0.0' },
  });
  assert.ok(init.result, 'a chunked initialize is reassembled');
  const ids = { client_id: remote.clientId, stream_id: remote.streamId };
  const chunk = (seq: number, segment: number, count: number, text: string, size: number) => ({
    type: 'client_message_chunk',
    ...ids,
    seq_id: seq,
    segment_id: segment,
    segment_count: count,
    message_size_bytes: size,
    message_chunk_base64: Buffer.from(text).toString('base64'),
  });
  const request = '{"id":"x1","method":"account/read","params":{}}';
  // Out of order: segment 1 first.
  let seq = remote.nextSeqId();
  remote.sendEnvelope(chunk(seq, 1, 2, request.slice(20), request.length));
  // Oversized: a chunk frame above 150 KiB.
  seq = remote.nextSeqId();
  remote.sendEnvelope(chunk(seq, 0, 2, 'x'.repeat(160 * 1024), 170 * 1024));
  // Size mismatch and bad base64.
  seq = remote.nextSeqId();
  remote.sendEnvelope({ ...chunk(seq, 0, 1, request, request.length + 5) });
  seq = remote.nextSeqId();
  remote.sendEnvelope({
    ...chunk(seq, 0, 1, request, request.length),
    message_chunk_base64: '@@not base64@@',
  });
  // Half a message, then the socket drops.
  seq = remote.nextSeqId();
  remote.sendEnvelope(chunk(seq, 0, 2, request.slice(0, 20), request.length));
  backend.remoteControl.dropSockets();
  await statusReached(client, 'connected');
  const read = await remote.request('account/read', {});
  assert.ok(read.result, 'the stream works after the drops');
  assert.ok(!remote.received.some((m) => m.id === 'x1'), 'no dropped request was answered');
  assert.ok((await client.request('account/read', {})).result, 'the local client is unaffected');
});

test('a flood of remote clients: past the limit initialize gets -32001, the others and the local client work', async (t) => {
  const client = await startRemoteControlServer(t, backend, {
    extra: ['-c', 'gatehouse.remote_control_max_clients=3'],
  });
  await enabledAndConnected(client);
  const remotes = Array.from({ length: 6 }, () => backend.remoteControl.openClient());
  t.after(() => remotes.forEach((r) => r.close()));
  const answers = await Promise.all(
    remotes.map((r) => r.request('initialize', { clientInfo: { name: 'flood', title: null, version: '1' } })),
  );
  assert.equal(answers.filter((a) => a.result).length, 3);
  const refused = answers.filter((a) => a.error);
  assert.equal(refused.length, 3);
  for (const a of refused) assert.equal(a.error!.code, -32001);
  assert.ok((await client.request('account/read', {})).result);
});

test('SQLite locked by another process: enable fails with the reason, local requests go on', async (t) => {
  const home = tempHome(t);
  const client = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(client);
  const db = new Database(join(home, 'state_5.sqlite'));
  t.after(() => db.open && db.close());
  db.exec('CREATE TABLE IF NOT EXISTS hold (x)');
  db.exec('BEGIN EXCLUSIVE');
  const reply = await client.request('remoteControl/enable');
  assert.equal(reply.error?.code, -32603);
  assert.match(reply.error?.message ?? '', /remote control enrollment.*state_5\.sqlite.*(locked|busy)/i);
  assert.ok((await client.request('account/read', {})).result, 'the broker serves others meanwhile');
  db.exec('COMMIT');
  db.close();
  const again = await client.request('remoteControl/enable');
  assert.ok(again.result, JSON.stringify(again.error));
  await statusReached(client, 'connected');
});

test('SQLite unusable (the state file is a folder): enable fails with a clear reason', async (t) => {
  const home = tempHome(t);
  mkdirSync(join(home, 'state_5.sqlite'));
  const client = await startRemoteControlServer(t, backend, { home });
  await loginWithTokens(client);
  const reply = await client.request('remoteControl/enable');
  assert.equal(reply.error?.code, -32603);
  assert.match(
    reply.error?.message ?? '',
    /^cannot open the remote control enrollments in .*state_5\.sqlite: /,
  );
  assert.ok((await client.request('account/read', {})).result);
});
