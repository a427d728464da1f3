/**
 * Remote control's HTTP side (spec B.2, B.3): endpoint derivation and URL validation, the
 * redacted body preview, and enroll / refresh against a real loopback backend (node:http) —
 * headers and bodies exactly, every failure text, serde_json-style decode errors with their
 * positions, Retry-After, and the token never showing in an error; and the RFC 3339 reading of
 * `expires_at`. The decoder itself is tested in remote-control-serde-json.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { arch } from 'node:process';
import { UpstreamAgents } from '../../src/upstream/http-request.js';
import { CODEX_COMPAT_VERSION } from '../../src/broker/server-info.js';
import { RemoteControlUrlError, remoteControlEndpoints } from '../../src/remote-control/endpoints.js';
import {
  BODY_PREVIEW_MAX_BYTES,
  previewBody,
  requestIdSuffix,
} from '../../src/remote-control/body-preview.js';
import { parseRfc3339 } from '../../src/remote-control/rfc3339.js';
import {
  RemoteControlCallError,
  enrollServer,
  refreshServerToken,
} from '../../src/remote-control/server-api.js';

type T = { after(fn: () => unknown): void };

const TOKEN = 'rct_mock_1_aaaaaaaaaaaaaaaaaaaa';
const BEARER = 'chatgpt-access-token-xyz';
const INSTALLATION = 'f5890a50-ad9a-4189-8766-5be4c4a36d73';
const GOOD = JSON.stringify({
  server_id: 'srv_e_mock',
  environment_id: 'env_mock',
  remote_control_token: TOKEN,
  expires_at: '2026-11-20T22:45:03Z',
});

interface Answer {
  status: number;
  body?: string;
  headers?: OutgoingHttpHeaders;
}

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: string;
}

/** A backend answering each request with the next scripted answer (the last one repeats). */
async function backend(t: T, ...answers: (Answer | 'stall')[]) {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const answer = answers[Math.min(seen.length, answers.length) - 1]!;
      if (answer === 'stall') return;
      res.writeHead(answer.status, answer.headers ?? {}).end(answer.body ?? '');
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const agents = new UpstreamAgents(undefined);
  t.after(async () => {
    agents.destroy();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const endpoints = remoteControlEndpoints(`http://127.0.0.1:${port}/backend-api`);
  return { seen, agents, endpoints };
}

function common(agents: UpstreamAgents) {
  return {
    credentials: { bearer: BEARER, accountId: 'acct_mock' },
    originator: 'codex_vscode',
    userAgent: 'codex_vscode/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_vscode; 1.2.3)',
    agents,
  };
}

async function enrollFails(t: T, ...answers: (Answer | 'stall')[]): Promise<RemoteControlCallError> {
  const { agents, endpoints } = await backend(t, ...answers);
  const error = await enrollServer({
    url: endpoints.enrollUrl,
    identity: { name: 'vm', installationId: INSTALLATION },
    ...common(agents),
  }).then(
    () => assert.fail('enroll should fail'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteControlCallError);
  assert.ok(!error.message.includes(TOKEN), error.message);
  assert.ok(!error.message.includes(BEARER), error.message);
  return error;
}

/** The URL an error text quotes, checked to be the enroll URL of a loopback backend. */
function quotedUrl(error: Error): string {
  const url = /`([^`]+)`/.exec(error.message)![1]!;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/backend-api\/wham\/remote\/control\/server\/enroll$/);
  return url;
}

// --- endpoints --------------------------------------------------------------------------------

test('endpoints: derived from chatgpt_base_url, with wss for https and ws for http', () => {
  const e = remoteControlEndpoints('https://chatgpt.com/backend-api');
  assert.equal(e.enrollUrl.href, 'https://chatgpt.com/backend-api/wham/remote/control/server/enroll');
  assert.equal(e.refreshUrl.href, 'https://chatgpt.com/backend-api/wham/remote/control/server/refresh');
  assert.equal(e.pairUrl.href, 'https://chatgpt.com/backend-api/wham/remote/control/server/pair');
  assert.equal(
    e.pairStatusUrl.href,
    'https://chatgpt.com/backend-api/wham/remote/control/server/pair/status',
  );
  assert.equal(e.websocketUrl.href, 'wss://chatgpt.com/backend-api/wham/remote/control/server');
  assert.equal(
    e.clientsUrl('env 1', 'cli/2').href,
    'https://chatgpt.com/backend-api/wham/remote/control/environments/env%201/clients/cli%2F2',
  );
  const local = remoteControlEndpoints('http://127.0.0.1:18800/backend-api/');
  assert.equal(local.websocketUrl.href, 'ws://127.0.0.1:18800/backend-api/wham/remote/control/server');
  assert.equal(local.enrollUrl.href, 'http://127.0.0.1:18800/backend-api/wham/remote/control/server/enroll');
});

test('endpoints: only ChatGPT hosts over HTTPS and loopback are allowed', () => {
  const ok = [
    'https://chatgpt.com/backend-api',
    'https://sub.chatgpt-staging.com/backend-api',
    'https://chatgpt-staging.com',
    'https://api.chatgpt.com/x',
    'http://127.0.0.1:8080/backend-api',
    'http://127.9.8.7/backend-api',
    'http://[::1]:8080/backend-api',
    'https://[::1]/backend-api',
    'http://localhost:8080/backend-api',
    'https://localhost:8443/backend-api',
  ];
  for (const url of ok) assert.doesNotThrow(() => remoteControlEndpoints(url), url);
  const rejected = [
    'https://evil.com/backend-api',
    'http://chatgpt.com/backend-api',
    'http://example.com/backend-api',
    'https://chat.openai.com/backend-api',
    'https://chatgpt.com.evil.com/backend-api',
    'https://evilchatgpt.com/backend-api',
    'https://foo.localhost/backend-api',
    'http://128.0.0.1/backend-api',
    'ftp://chatgpt.com/backend-api',
  ];
  for (const url of rejected) {
    assert.throws(
      () => remoteControlEndpoints(url),
      (e: unknown) =>
        e instanceof RemoteControlUrlError &&
        e.message ===
          `invalid remote control URL \`${url}\`; expected HTTPS URL for chatgpt.com or chatgpt-staging.com, ` +
            'or HTTP/HTTPS URL for localhost',
      url,
    );
  }
  assert.throws(() => remoteControlEndpoints('chatgpt.com/backend-api'), {
    message: 'invalid remote control URL `chatgpt.com/backend-api`: relative URL without a base',
  });
  assert.throws(() => remoteControlEndpoints('https://'), {
    message: 'invalid remote control URL `https://`: empty host',
  });
});

// --- body preview -----------------------------------------------------------------------------

test('preview: secrets of a JSON object body are redacted, member order and compact form kept', () => {
  const body = `{ "server_id": "srv_e_mock", "environment_id": "env_mock", "remote_control_token": "${TOKEN}" }`;
  assert.equal(
    previewBody(body),
    '{"server_id":"srv_e_mock","environment_id":"env_mock","remote_control_token":"<redacted>"}',
  );
  assert.equal(
    previewBody('{"pairing_code":"123456","manual_pairing_code":"ABCD-EFGH","nested":{"pairing_code":"x"}}'),
    '{"pairing_code":"<redacted>","manual_pairing_code":"<redacted>","nested":{"pairing_code":"x"}}',
  );
  assert.equal(previewBody(''), '<empty>');
  assert.equal(previewBody(' \n\t '), '<empty>');
  assert.equal(previewBody('  upstream unavailable \n'), 'upstream unavailable');
  assert.equal(previewBody(Buffer.from('[1, 2]')), '[1, 2]', 'only objects are re-serialized');
});

test('preview: known secrets are scrubbed from any body, JSON-escaped or not', () => {
  assert.equal(previewBody(`<html>bad token ${TOKEN}</html>`, [TOKEN]), '<html>bad token <redacted></html>');
  assert.equal(previewBody('{"echo":"a\\"b"', ['a"b']), '{"echo":"<redacted>"', 'invalid JSON, escaped form');
  assert.equal(previewBody('{"echo":"a\\"b"}', ['a"b']), '{"echo":"<redacted>"}', 'valid JSON, re-escaped');
  assert.equal(previewBody('plain', ['']), 'plain', 'an empty secret scrubs nothing');
});

test('preview: cut at 4096 bytes on a UTF-8 boundary, then "..."', () => {
  const ascii = 'a'.repeat(BODY_PREVIEW_MAX_BYTES + 10);
  assert.equal(previewBody(ascii), `${'a'.repeat(BODY_PREVIEW_MAX_BYTES)}...`);
  assert.equal(previewBody('a'.repeat(BODY_PREVIEW_MAX_BYTES)), 'a'.repeat(BODY_PREVIEW_MAX_BYTES));
  // 4095 ASCII bytes, then a 3-byte character straddling the limit: it is left out whole.
  const straddling = `${'a'.repeat(BODY_PREVIEW_MAX_BYTES - 1)}€tail`;
  assert.equal(previewBody(straddling), `${'a'.repeat(BODY_PREVIEW_MAX_BYTES - 1)}...`);
});

test('preview: the request-id / cf-ray suffix', () => {
  assert.equal(requestIdSuffix({}), 'request-id: <none>, cf-ray: <none>');
  assert.equal(
    requestIdSuffix({ 'x-request-id': 'req-1', 'x-oai-request-id': 'oai-1', 'cf-ray': 'ray-1' }),
    'request-id: req-1, cf-ray: ray-1',
  );
  assert.equal(requestIdSuffix({ 'x-oai-request-id': 'oai-1' }), 'request-id: oai-1, cf-ray: <none>');
  assert.equal(requestIdSuffix({ 'cf-ray': 'é' }), 'request-id: <none>, cf-ray: <invalid utf-8>');
});

// --- enroll / refresh ------------------------------------------------------------------------

test('enroll: exact headers and body, and the token it answers', async (t) => {
  const { seen, agents, endpoints } = await backend(t, { status: 200, body: GOOD });
  const token = await enrollServer({
    url: endpoints.enrollUrl,
    identity: { name: 'vm', installationId: INSTALLATION },
    ...common(agents),
  });
  assert.deepEqual(token, {
    serverId: 'srv_e_mock',
    environmentId: 'env_mock',
    token: TOKEN,
    expiresAtMs: Date.UTC(2026, 10, 20, 22, 45, 3),
  });
  assert.equal(seen.length, 1);
  const request = seen[0]!;
  assert.equal(request.method, 'POST');
  assert.equal(request.path, '/backend-api/wham/remote/control/server/enroll');
  const expectedArch = arch === 'x64' ? 'x86_64' : arch === 'arm64' ? 'aarch64' : arch;
  assert.equal(
    request.body,
    `{"name":"vm","os":"linux","arch":"${expectedArch}","app_server_version":"${CODEX_COMPAT_VERSION}",` +
      `"installation_id":"${INSTALLATION}"}`,
  );
  const names = request.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  assert.deepEqual(names.slice(0, 6), [
    'originator',
    'user-agent',
    'authorization',
    'chatgpt-account-id',
    'x-codex-installation-id',
    'content-type',
  ]);
  assert.deepEqual(new Set(names.slice(6)), new Set(['content-length', 'host', 'connection']));
  assert.equal(request.headers.originator, 'codex_vscode');
  assert.equal(request.headers['user-agent'], common(agents).userAgent);
  assert.equal(request.headers.authorization, `Bearer ${BEARER}`);
  assert.equal(request.headers['chatgpt-account-id'], 'acct_mock');
  assert.equal(request.headers['x-codex-installation-id'], INSTALLATION);
  assert.equal(request.headers['content-type'], 'application/json');
});

test('refresh: exact body, same headers, and the refreshed token', async (t) => {
  const answer = JSON.stringify({
    server_id: 'srv_e_mock',
    environment_id: 'env_mock',
    remote_control_token: 'rct_mock_2',
    expires_at: '2026-11-20T23:45:03.123456+01:00',
  });
  const { seen, agents, endpoints } = await backend(t, { status: 200, body: answer });
  const token = await refreshServerToken({
    url: endpoints.refreshUrl,
    serverId: 'srv_e_mock',
    environmentId: 'env_mock',
    installationId: INSTALLATION,
    ...common(agents),
  });
  assert.equal(token.token, 'rct_mock_2');
  assert.equal(token.expiresAtMs, Date.UTC(2026, 10, 20, 22, 45, 3, 123));
  const request = seen[0]!;
  assert.equal(request.path, '/backend-api/wham/remote/control/server/refresh');
  assert.equal(request.body, `{"server_id":"srv_e_mock","installation_id":"${INSTALLATION}"}`);
  assert.equal(request.headers.authorization, `Bearer ${BEARER}`);
  assert.equal(request.headers['x-codex-installation-id'], INSTALLATION);
  assert.equal(request.headers['chatgpt-account-id'], 'acct_mock');
});

test('enroll: a refusal is quoted as codex quotes it', async (t) => {
  const error = await enrollFails(t, { status: 401, body: '{"detail":"token expired"}' });
  const url = quotedUrl(error);
  assert.equal(
    error.message,
    `remote control server enrollment failed at \`${url}\`: HTTP 401 Unauthorized, request-id: <none>, ` +
      'cf-ray: <none>, body: {"detail":"token expired"}',
  );
  assert.equal(error.kind, 'status');
  assert.equal(error.status, 401);
  assert.equal(error.unauthorized, true);
  assert.equal(error.transient, false);
  assert.equal(error.notFound, false);
});

test('enroll: request ids, an empty body, and secrets in a failing body', async (t) => {
  const ids = await enrollFails(t, {
    status: 403,
    headers: { 'x-oai-request-id': 'req-9', 'cf-ray': '985c-ORD' },
  });
  assert.match(ids.message, /: HTTP 403 Forbidden, request-id: req-9, cf-ray: 985c-ORD, body: <empty>$/);
  const json = await enrollFails(t, {
    status: 500,
    body: `{"server_id":"srv_e_mock","remote_control_token":"${TOKEN}","detail":"boom"}`,
  });
  assert.match(
    json.message,
    /: HTTP 500 Internal Server Error, request-id: <none>, cf-ray: <none>, body: \{"server_id":"srv_e_mock","remote_control_token":"<redacted>","detail":"boom"\}$/,
  );
  assert.equal(json.transient, true);
  // Not JSON: the bearer we sent, echoed back, is still scrubbed.
  const echoed = await enrollFails(t, { status: 502, body: `<html>Authorization: Bearer ${BEARER}</html>` });
  assert.match(echoed.message, /body: <html>Authorization: Bearer <redacted><\/html>$/);
});

test('enroll: Retry-After in seconds and as an HTTP date', async (t) => {
  const seconds = await enrollFails(t, { status: 503, headers: { 'retry-after': '7' } });
  assert.equal(seconds.retryAfterMs, 7_000);
  assert.equal(seconds.transient, true);
  const date = new Date(Date.now() + 20_000).toUTCString();
  const dated = await enrollFails(t, { status: 429, headers: { 'retry-after': date } });
  assert.ok(dated.retryAfterMs !== undefined && dated.retryAfterMs > 10_000 && dated.retryAfterMs <= 20_000);
  const none = await enrollFails(t, { status: 503 });
  assert.equal(none.retryAfterMs, undefined);
});

test('enroll: an undecodable 200 names the missing field at serde_json position', async (t) => {
  const body = `{"server_id":"srv_e_mock","environment_id":"env_mock","remote_control_token":"${TOKEN}"}`;
  const error = await enrollFails(t, { status: 200, body });
  const url = quotedUrl(error);
  // The position is the closing brace, 1-based: the body's length here.
  assert.equal(body.length, 111);
  assert.equal(
    error.message,
    `failed to parse remote control server enrollment response from \`${url}\`: HTTP 200 OK, request-id: <none>, ` +
      'cf-ray: <none>, body: {"server_id":"srv_e_mock","environment_id":"env_mock","remote_control_token":"<redacted>"}, ' +
      'decode error: missing field `expires_at` at line 1 column 111',
  );
  assert.equal(error.kind, 'decode');
  assert.equal(error.status, 200);
});

test('enroll: wrong types and non-JSON answers', async (t) => {
  const wrongType = await enrollFails(t, { status: 200, body: '{"server_id":5}' });
  assert.match(
    wrongType.message,
    /decode error: invalid type: integer `5`, expected a string at line 1 column 14$/,
  );
  const html = await enrollFails(t, { status: 200, body: '<html></html>' });
  assert.match(html.message, /body: <html><\/html>, decode error: expected value at line 1 column 1$/);
  const empty = await enrollFails(t, { status: 200 });
  assert.match(empty.message, /body: <empty>, decode error: EOF while parsing a value at line 1 column 0$/);
  const array = await enrollFails(t, { status: 200, body: '[]' });
  assert.match(
    array.message,
    /decode error: invalid type: sequence, expected struct EnrollRemoteServerResponse at line 1 column 0$/,
  );
});

test('enroll: an expires_at that is not RFC 3339 is a decode error naming it', async (t) => {
  const body = GOOD.replace('2026-11-20T22:45:03Z', '2026-13-20T22:45:03Z');
  const error = await enrollFails(t, { status: 200, body });
  assert.equal(error.kind, 'decode');
  assert.match(
    error.message,
    /^failed to parse remote control server token expiry from `http:\/\/127\.0\.0\.1:\d+\/backend-api\/wham\/remote\/control\/server\/enroll`: expires_at "2026-13-20T22:45:03Z": the 'month' component could not be parsed$/,
  );
});

test('refresh: other ids, a 404, and the refresh wording', async (t) => {
  const other = JSON.stringify({
    server_id: 'srv_e_other',
    environment_id: 'env_other',
    remote_control_token: TOKEN,
    expires_at: '2026-11-20T22:45:03Z',
  });
  const { agents, endpoints } = await backend(
    t,
    { status: 200, body: other },
    { status: 404, body: '{"detail":"Not Found"}' },
    { status: 200, body: '{"server_id":"srv_e_mock"}' },
  );
  const call = () =>
    refreshServerToken({
      url: endpoints.refreshUrl,
      serverId: 'srv_e_mock',
      environmentId: 'env_mock',
      installationId: INSTALLATION,
      ...common(agents),
    }).then(
      () => assert.fail('refresh should fail'),
      (e: unknown) => e as RemoteControlCallError,
    );
  const mismatch = await call();
  assert.equal(
    mismatch.message,
    'remote control server refresh returned mismatched enrollment: expected server_id=srv_e_mock, ' +
      'environment_id=env_mock; got server_id=srv_e_other, environment_id=env_other',
  );
  assert.equal(mismatch.kind, 'decode');
  const gone = await call();
  assert.equal(
    gone.message,
    `remote control server refresh failed at \`${endpoints.refreshUrl.href}\`: HTTP 404 Not Found, ` +
      'request-id: <none>, cf-ray: <none>, body: {"detail":"Not Found"}',
  );
  assert.equal(gone.notFound, true);
  const undecodable = await call();
  assert.equal(
    undecodable.message,
    `failed to parse remote control server refresh response from \`${endpoints.refreshUrl.href}\`: HTTP 200 OK, ` +
      'request-id: <none>, cf-ray: <none>, body: {"server_id":"srv_e_mock"}, ' +
      'decode error: missing field `environment_id` at line 1 column 26',
  );
});

test('enroll: no answer in time, and no server at all', async (t) => {
  const { agents, endpoints } = await backend(t, 'stall');
  const slow = await enrollServer({
    url: endpoints.enrollUrl,
    identity: { name: 'vm', installationId: INSTALLATION },
    ...common(agents),
    timeoutMs: 50,
  }).catch((e: unknown) => e as RemoteControlCallError);
  assert.ok(slow instanceof RemoteControlCallError);
  assert.equal(slow.kind, 'timeout');
  assert.equal(
    slow.message,
    `failed to enroll remote control server at \`${endpoints.enrollUrl.href}\`: request timed out`,
  );
  assert.equal(slow.transient, true);

  // A port nobody listens on: bind one, then close it.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  const closed = remoteControlEndpoints(`http://127.0.0.1:${port}/backend-api`);
  const refused = await refreshServerToken({
    url: closed.refreshUrl,
    serverId: 'srv_e_mock',
    environmentId: 'env_mock',
    installationId: INSTALLATION,
    ...common(agents),
  }).catch((e: unknown) => e as RemoteControlCallError);
  assert.ok(refused instanceof RemoteControlCallError);
  assert.equal(refused.kind, 'network');
  assert.equal(refused.status, undefined);
  assert.equal(
    refused.message,
    `failed to refresh remote control server at \`${closed.refreshUrl.href}\`: connect ECONNREFUSED 127.0.0.1:${port}`,
  );
  assert.ok(!refused.message.includes(BEARER));
});

test('enroll: an aborted call', async (t) => {
  const { agents, endpoints } = await backend(t, 'stall');
  const controller = new AbortController();
  const pending = enrollServer({
    url: endpoints.enrollUrl,
    identity: { name: 'vm', installationId: INSTALLATION },
    ...common(agents),
    signal: controller.signal,
  }).catch((e: unknown) => e as RemoteControlCallError);
  controller.abort();
  const error = await pending;
  assert.ok(error instanceof RemoteControlCallError);
  assert.equal(error.kind, 'aborted');
});

test('RFC 3339: offsets, fractions, and the time crate wording for the rest', () => {
  assert.equal(parseRfc3339('2026-11-20T22:45:03Z'), Date.UTC(2026, 10, 20, 22, 45, 3));
  assert.equal(parseRfc3339('2026-11-20t22:45:03.5z'), Date.UTC(2026, 10, 20, 22, 45, 3, 500));
  assert.equal(parseRfc3339('2026-11-20T20:15:03.999999999-02:30'), Date.UTC(2026, 10, 20, 22, 45, 3, 999));
  assert.equal(parseRfc3339('0050-01-01T00:00:00Z'), -60589296000000);
  assert.equal(parseRfc3339('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
  assert.equal(
    parseRfc3339('2025-02-29T00:00:00Z'),
    'day must be in the range 1..=28 given values of other parameters',
  );
  assert.equal(parseRfc3339('2026-11-20 22:45:03Z'), 'a character literal was not valid');
  assert.equal(parseRfc3339('2026-11-20T24:45:03Z'), "the 'hour' component could not be parsed");
  assert.equal(parseRfc3339('2026-11-20T22:45:03'), "the 'offset hour' component could not be parsed");
  assert.equal(parseRfc3339('2026-11-20T22:45:03.Z'), "the 'subsecond' component could not be parsed");
  assert.equal(
    parseRfc3339('2026-11-20T22:45:03Zjunk'),
    'unexpected trailing characters; the end of input was expected',
  );
  assert.equal(parseRfc3339('tomorrow'), "the 'year' component could not be parsed");
});
