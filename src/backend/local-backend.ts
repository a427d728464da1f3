/**
 * `startLocalBackend()`: the ChatGPT backend endpoints Gatehouse calls, served on loopback over
 * HTTPS and WebSocket with a throwaway CA, so the whole system runs offline (demos, integration
 * and load tests). It is the server behind `gatehouse local-backend`.
 *
 * - `/backend-api/...` checks the bearer as a real backend would (shape, expiry, revocation) and
 *   answers accounts/check, the config bundle, Responses over SSE and over the WebSocket, and
 *   realtime call creation (routes.ts names them all).
 * - `/backend-api/wham/remote/control/server/...` enrolls app-servers for remote control, issues
 *   their tokens and holds their WebSockets; `backend.remoteControl` acts as remote clients
 *   through them (remote-control.ts, remote-control-socket.ts, remote-relay.ts, remote-client.ts).
 * - `/oauth/authorize` and `/oauth/token` are an OAuth issuer that signs in one configured user.
 * - Faults can be scripted per route (faults.ts), every request is recorded in memory
 *   (request-log.ts), and `/__gatehouse/...` exposes both to other processes (control-api.ts).
 *
 * Logs carry the route, method and status of each request (at debug level), never a header,
 * body or token.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { isIPv4, isIPv6, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { silentLogger, type Logger } from '../util/logger.js';
import { checkBearer, UNAUTHORIZED_BODY } from './bearer.js';
import { handleControl, handleControlUpgrade, isControlPath } from './control-api.js';
import { Exchange, type BackendState } from './exchange.js';
import { Faults } from './faults.js';
import { HTTP_HANDLERS, STREAMING_ROUTES } from './handlers.js';
import { HttpError, looksLikeJson, reasonBody, sleep } from './http-io.js';
import { OAuthIssuer } from './oauth-issuer.js';
import {
  DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC,
  isTokenTtl,
  RemoteEnrollments,
  TOKEN_TTL_RULE,
} from './remote-control.js';
import { handleRemoteControlUpgrade } from './remote-control-socket.js';
import { RemoteRelay, type RemoteControl } from './remote-relay.js';
import type { RecordedRequest } from './request-log.js';
import { handleResponsesUpgrade } from './responses-socket.js';
import { BACKEND_ROUTES, matchRoute, UNMATCHED_ROUTE, type HttpRouteName } from './routes.js';
import { createLocalCertificates, ipAddressBytes } from './tls-ca.js';
import { DEFAULT_LOCAL_USER, type ChatgptUser } from './tokens.js';

export type { RecordedRequest } from './request-log.js';
export type { ChatgptUser } from './tokens.js';
export type { RemoteClient } from './remote-client.js';
export type { RemoteMessage } from './remote-envelopes.js';
export { RemoteClientError } from './remote-relay.js';
export type {
  RemoteClientOptions,
  RemoteControl,
  RemoteServerInfo,
  ServerEnvelopeRecord,
} from './remote-relay.js';

const MAX_WS_MESSAGE_BYTES = 32 * 1024 * 1024;
export const CA_CERT_FILE = 'ca.pem';
const IPV6_LOOPBACK = ipAddressBytes('::1');

export interface LocalBackendOptions {
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** A loopback address: 127.0.0.1 (default), another 127.x.y.z, ::1 or localhost. */
  host?: string;
  /** Where `ca.pem` is written (created if missing). Default: a fresh temporary folder, removed by close(). */
  stateDir?: string;
  /** Default: silent. */
  log?: Logger;
  /** Pause between two streamed Responses events, to make turns observable (default 0). */
  responseDelayMs?: number;
  /** Who the OAuth issuer signs in (default dev@example.com, acct-1, user-1, plan plus). */
  user?: Partial<ChatgptUser>;
  /**
   * Keep the bodies of Responses requests and realtime call creations in `requests` (default
   * false: conversations grow, and load tests keep 10,000 records).
   */
  recordBodies?: boolean;
  /** Lifetime of the remote-control tokens issued by enroll and refresh (default 3600 s). */
  remoteControlTokenTtlSec?: number;
}

export interface LocalBackend {
  /** `https://127.0.0.1:PORT` (the host as bound). */
  readonly url: string;
  /** `${url}/backend-api`: the value of codex's `chatgpt_base_url`. */
  readonly chatgptBaseUrl: string;
  /** `${url}`: the OAuth issuer (authorize and token endpoints under /oauth). */
  readonly issuer: string;
  /** The CA certificate as a PEM file (mode 0600): the value of `CODEX_CA_CERTIFICATE`. */
  readonly caCertPath: string;
  readonly caCertPem: string;
  /** The user the issuer signs in. */
  readonly user: Readonly<ChatgptUser>;
  /** Scripted faults: `faults.add(rule)`, `faults.clear()`, `faults.list()`. */
  readonly faults: Faults;
  /** Recorded requests, oldest first, the newest 10,000; empty it with `requests.length = 0`. */
  readonly requests: RecordedRequest[];
  /** From now on this bearer (JWT or API key) gets 401. */
  revokeBearer(token: string): void;
  /** Enrolled app-servers, their tokens and sockets, and remote clients through them. */
  readonly remoteControl: RemoteControl;
  /** Stops listening, closes every connection and socket, ends pending delays. */
  close(): Promise<void>;
}

export class LocalBackendError extends Error {
  override name = 'LocalBackendError';
}

/** The backend hands out credentials to whoever asks: it must never be reachable off this host. */
export function assertLoopbackHost(host: string): void {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  const loopback =
    bare === 'localhost' ||
    (isIPv4(bare) && bare.startsWith('127.')) ||
    (isIPv6(bare) && ipAddressBytes(bare).equals(IPV6_LOOPBACK));
  if (!loopback) {
    throw new LocalBackendError(
      `the local backend listens on loopback only (127.0.0.1, ::1 or localhost), not "${host}": ` +
        'it accepts any well-formed token and must not be reachable from other machines',
    );
  }
}

export async function startLocalBackend(options: LocalBackendOptions = {}): Promise<LocalBackend> {
  const host = (options.host ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  assertLoopbackHost(host);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new LocalBackendError(`port must be an integer from 0 to 65535, not ${port}`);
  }
  const responseDelayMs = options.responseDelayMs ?? 0;
  if (!Number.isInteger(responseDelayMs) || responseDelayMs < 0 || responseDelayMs > 60_000) {
    throw new LocalBackendError(`responseDelayMs must be an integer from 0 to 60000, not ${responseDelayMs}`);
  }
  const tokenTtlSec = options.remoteControlTokenTtlSec ?? DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC;
  if (!isTokenTtl(tokenTtlSec)) {
    throw new LocalBackendError(`remoteControlTokenTtlSec must be ${TOKEN_TTL_RULE}, not ${tokenTtlSec}`);
  }
  const log = options.log ?? silentLogger();
  const user: ChatgptUser = { ...DEFAULT_LOCAL_USER, ...options.user };

  const certs = createLocalCertificates(isIPv4(host) || isIPv6(host) ? { extraIpAddresses: [host] } : {});
  const ownsStateDir = options.stateDir === undefined;
  const stateDir = ownsStateDir
    ? mkdtempSync(join(tmpdir(), 'gatehouse-backend-'))
    : resolve(options.stateDir!);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const caCertPath = join(stateDir, CA_CERT_FILE);
  writeFileSync(caCertPath, certs.caPem, { mode: 0o600 });
  chmodSync(caCertPath, 0o600); // the mode above applies only when the file is created

  const lifetime = new AbortController();
  const server = createServer({ cert: certs.certPem, key: certs.keyPem });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_WS_MESSAGE_BYTES,
    perMessageDeflate: false,
  });
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  // TLS handshakes that fail (a client that does not trust the CA) are the client's business.
  server.on('tlsClientError', (_e, socket) => socket.destroy());

  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
  } catch (e) {
    if (ownsStateDir) rmSync(stateDir, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    throw new LocalBackendError(`cannot listen on ${host}:${port}: ${code ?? (e as Error).message}`);
  }

  // The issuer's URL needs the bound port. No request can arrive before the handlers below are
  // attached: they are attached in the same tick as the listen callback's continuation.
  const address = server.address() as AddressInfo;
  const shownHost =
    host === 'localhost' ? host : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `https://${shownHost}:${address.port}`;
  const revoked = new Set<string>();
  const faults = new Faults();
  const requests: RecordedRequest[] = [];
  const remoteEnrollments = new RemoteEnrollments(tokenTtlSec);
  const remoteRelay = new RemoteRelay(remoteEnrollments);
  const state: BackendState = {
    log,
    faults,
    requests,
    revoked,
    oauth: new OAuthIssuer(url, user),
    user,
    responseDelayMs,
    signal: lifetime.signal,
    recordBodies: options.recordBodies ?? false,
    remoteEnrollments,
    remoteRelay,
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handleRequest(state, req, res).catch((e: unknown) => {
      log.error({ err: (e as Error).message }, 'local backend: handler failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(reasonBody(500));
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(state, wss, req, socket, head).catch((e: unknown) => {
      log.error({ err: (e as Error).message }, 'local backend: upgrade failed');
      socket.destroy();
    });
  });
  log.info({ url, caCertPath }, 'local backend listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    chatgptBaseUrl: `${url}/backend-api`,
    issuer: url,
    caCertPath,
    caCertPem: certs.caPem,
    user,
    faults,
    requests,
    revokeBearer: (token) => void revoked.add(token),
    remoteControl: remoteRelay,
    close: () =>
      (closing ??= (async () => {
        lifetime.abort();
        remoteRelay.close();
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        const closed = new Promise<void>((done) => server.close(() => done()));
        for (const socket of connections) socket.destroy();
        await closed;
        if (ownsStateDir) rmSync(stateDir, { recursive: true, force: true });
        log.info({ url }, 'local backend stopped');
      })()),
  };
}

async function handleUpgrade(
  state: BackendState,
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const pathname = new URL(req.url ?? '/', 'https://local-backend').pathname;
  if (isControlPath(pathname)) return handleControlUpgrade(state, wss, req, socket, head);
  if (matchRoute(req.method ?? 'GET', pathname, true).route === 'remote.ws') {
    return handleRemoteControlUpgrade(state, wss, req, socket, head);
  }
  return handleResponsesUpgrade(state, wss, req, socket, head); // responses.ws, and what matches nothing
}

async function handleRequest(state: BackendState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://local-backend');
  if (isControlPath(url.pathname)) return handleControl(state, req, res, url);

  const match = matchRoute(req.method ?? 'GET', url.pathname, false);
  if (match.route === null) {
    const x = new Exchange(req, res, url, UNMATCHED_ROUTE, state);
    const headers: Record<string, string> = match.status === 405 ? { allow: match.allow } : {};
    x.json(match.status, JSON.parse(reasonBody(match.status)), headers);
    return;
  }
  // matchRoute answers upgrade routes only for upgrades; a plain request is always an HTTP route.
  const route = match.route as HttpRouteName;
  const x = new Exchange(req, res, url, route, state);

  const fault = state.faults.take(route);
  if (fault?.kind === 'slow' && !(await sleep(fault.delayMs, state.signal))) return x.cut();
  if (fault?.kind === 'status') {
    const body = fault.body ?? reasonBody(fault.status);
    const headers: Record<string, string> = {
      'content-type': looksLikeJson(body) ? 'application/json' : 'text/plain; charset=utf-8',
    };
    if (fault.retryAfterSec !== undefined) headers['retry-after'] = String(fault.retryAfterSec);
    req.resume(); // the request body is not read
    return x.raw(fault.status, body, headers);
  }
  if (fault?.kind === 'disconnect') {
    if (!fault.afterEvents || !STREAMING_ROUTES.has(route)) return x.cut();
    x.cutAfterEvents = fault.afterEvents;
  }

  if (BACKEND_ROUTES[route].bearer) {
    const verdict = checkBearer(req.headers.authorization, state.revoked);
    if (!verdict.ok) {
      req.resume(); // the body is not needed; let the connection be reused
      return x.raw(401, UNAUTHORIZED_BODY, { 'content-type': 'application/json' });
    }
    x.bearer = verdict;
  }
  try {
    await HTTP_HANDLERS[route](x);
  } catch (e) {
    if (!(e instanceof HttpError) || res.headersSent) throw e;
    x.json(e.status, { detail: e.message });
  }
}
