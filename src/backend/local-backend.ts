/**
 * `gatehouse local-backend`: the endpoints Gatehouse calls, served on loopback over HTTPS and
 * WebSocket with a throwaway CA, so the whole system runs offline — demos, tests and load tests.
 * Bearers are checked the way a real backend would (shape, expiry, revocation), and faults can be
 * scripted per route. Tokens are never logged; recorded requests stay in memory.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { silentLogger, type Logger } from '../util/logger.js';
import { createLocalCertificates } from './tls-ca.js';
import { FaultError, Faults, parseFaultRule, type FaultAction, type Route } from './faults.js';
import { responseEvents, type ResponsesEvent } from './responses.js';
import { chatgptClaims, mintJwt, readClaims } from './tokens.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const MAX_RECORDED = 10_000;

export interface LocalBackendUser {
  email: string;
  accountId: string;
  userId: string;
  planType: string;
}

export interface LocalBackendOptions {
  port?: number;
  host?: string;
  /** Where `ca.pem` is written; a fresh temporary folder by default. */
  stateDir?: string;
  log?: Logger;
  /** Pause between streamed events, to make turns observable. */
  responseDelayMs?: number;
  /** Who the issuer signs in. */
  user?: Partial<LocalBackendUser>;
}

export interface RecordedRequest {
  at: number;
  route: Route | 'other';
  method: string;
  path: string;
  status: number;
  /** Lower-cased, as received (tests check authorization and attestation headers). */
  headers: Record<string, string>;
}

export interface LocalBackend {
  url: string;
  chatgptBaseUrl: string;
  issuer: string;
  caCertPath: string;
  caCertPem: string;
  faults: Faults;
  requests: RecordedRequest[];
  revokeBearer(token: string): void;
  close(): Promise<void>;
}

export async function startLocalBackend(options: LocalBackendOptions = {}): Promise<LocalBackend> {
  const host = options.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) throw new Error(`the local backend listens on loopback only, not ${host}`);
  const log = options.log ?? silentLogger();
  const user: LocalBackendUser = {
    email: 'dev@example.com',
    accountId: 'acct-1',
    userId: 'user-1',
    planType: 'plus',
    ...options.user,
  };
  const certs = createLocalCertificates();
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'gatehouse-backend-'));
  const caCertPath = join(stateDir, 'ca.pem');
  writeFileSync(caCertPath, certs.caPem, { mode: 0o600 });

  const faults = new Faults();
  const requests: RecordedRequest[] = [];
  const revoked = new Set<string>();
  const codes = new Map<string, { challenge: string; redirectUri: string }>();
  const delay = options.responseDelayMs ?? 0;
  const sockets = new Set<Duplex>();

  const record = (req: IncomingMessage, route: Route | 'other', status: number) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    requests.push({
      at: Date.now(),
      route,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status,
      headers,
    });
    if (requests.length > MAX_RECORDED) requests.splice(0, requests.length - MAX_RECORDED);
    log.debug({ route, status }, 'local backend request');
  };

  /** 401 unless the bearer is an API key or an unexpired, unrevoked JWT. */
  const bearerOk = (req: IncomingMessage): boolean => {
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!match) return false;
    const bearer = match[1]!;
    if (revoked.has(bearer)) return false;
    if (bearer.startsWith('sk-')) return true;
    const claims = readClaims(bearer);
    if (!claims) return false;
    return typeof claims.exp !== 'number' || claims.exp > Date.now() / 1000;
  };

  const server: Server = createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => {
    void handle(req, res).catch((e: unknown) => {
      log.error({ err: (e as Error).message }, 'local backend handler failed');
      if (!res.headersSent) json(res, 500, { detail: 'internal error' });
      else res.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const path = url.pathname.replace(/\/+$/, '');
    if (path.startsWith('/__gatehouse/')) return control(req, res, path);
    if (path === '/oauth/authorize' && req.method === 'GET') return authorize(req, res, url);
    if (path === '/oauth/token' && req.method === 'POST') return token(req, res);
    const route = backendRoute(req.method ?? 'GET', path);
    if (!route) {
      record(req, 'other', 404);
      return json(res, 404, { detail: 'Not Found' });
    }
    const fault = faults.take(route);
    if (fault && (await applyFault(fault, req, res, route))) return;
    if (!bearerOk(req)) {
      record(req, route, 401);
      return json(res, 401, { detail: 'Unauthorized' });
    }
    switch (route) {
      case 'accounts.check': {
        const accountId = req.headers['chatgpt-account-id'];
        if (typeof accountId !== 'string' || accountId === '') {
          record(req, route, 400);
          return json(res, 400, { detail: 'chatgpt-account-id header required' });
        }
        const claims = readClaims(bearerOf(req)) ?? {};
        const auth = (claims['https://api.openai.com/auth'] ?? {}) as { chatgpt_plan_type?: unknown };
        record(req, route, 200);
        return json(res, 200, {
          accounts: [
            {
              id: accountId,
              plan_type: typeof auth.chatgpt_plan_type === 'string' ? auth.chatgpt_plan_type : 'pro',
              workspace_backend_origin: 'NO_CONSTRAINT',
              account_routing_override: 'NO_CONSTRAINT',
              structure: 'personal',
            },
          ],
          account_ordering: [accountId],
          default_account_id: accountId,
        });
      }
      case 'config.bundle':
        record(req, route, 200);
        return json(res, 200, {});
      case 'realtime.calls':
        await readBody(req);
        record(req, route, 200);
        return json(res, 200, { id: `call_${randomBytes(8).toString('hex')}` });
      case 'responses.http': {
        let body: unknown;
        try {
          body = JSON.parse((await readBody(req)).toString('utf8'));
        } catch {
          record(req, route, 400);
          return json(res, 400, { error: { message: 'request body is not JSON' } });
        }
        record(req, route, 200);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const cut = fault?.kind === 'disconnect' ? (fault.afterEvents ?? 0) : Infinity;
        await stream(responseEvents(body), cut, (e) =>
          res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`),
        );
        if (cut !== Infinity) res.destroy();
        else res.end();
        return;
      }
      default:
        record(req, route, 405);
        return json(res, 405, { detail: 'Method Not Allowed' });
    }
  }

  /** Applies a fault; true when it answered the request itself. */
  async function applyFault(action: FaultAction, req: IncomingMessage, res: ServerResponse, route: Route) {
    if (action.kind === 'slow') {
      await sleep(action.delayMs);
      return false;
    }
    if (action.kind === 'status') {
      record(req, route, action.status);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (action.retryAfterSec !== undefined) headers['retry-after'] = String(action.retryAfterSec);
      res
        .writeHead(action.status, headers)
        .end(action.body ?? JSON.stringify({ detail: `scripted ${action.status}` }));
      return true;
    }
    if ((action.afterEvents ?? 0) === 0) {
      record(req, route, 0);
      req.socket.destroy();
      return true;
    }
    return false; // cut later, mid-stream
  }

  async function stream(events: ResponsesEvent[], cut: number, write: (e: ResponsesEvent) => void) {
    for (let i = 0; i < events.length; i++) {
      if (i >= cut) return;
      if (delay > 0 && i > 0) await sleep(delay);
      write(events[i]!);
    }
  }

  function authorize(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const q = url.searchParams;
    const missing = ['response_type', 'client_id', 'redirect_uri', 'code_challenge', 'state'].filter(
      (k) => !q.get(k),
    );
    const redirect = q.get('redirect_uri') ?? '';
    let problem = missing.length > 0 ? `missing ${missing.join(', ')}` : undefined;
    if (!problem && q.get('code_challenge_method') !== 'S256') problem = 'code_challenge_method must be S256';
    if (!problem && !/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d+\//.test(redirect)) {
      problem = 'redirect_uri must be a loopback http URL';
    }
    if (problem) {
      record(req, 'other', 400);
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`invalid authorize request: ${problem}\n`);
      return;
    }
    const code = randomBytes(16).toString('base64url');
    codes.set(code, { challenge: q.get('code_challenge')!, redirectUri: redirect });
    const target = new URL(redirect);
    target.searchParams.set('code', code);
    target.searchParams.set('state', q.get('state')!);
    record(req, 'other', 302);
    res.writeHead(302, { location: target.toString() }).end();
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fault = faults.take('oauth.token');
    if (fault && (await applyFault(fault, req, res, 'oauth.token'))) return;
    const form = new URLSearchParams((await readBody(req)).toString('utf8'));
    const refuse = (description: string) => {
      record(req, 'oauth.token', 400);
      json(res, 400, { error: 'invalid_grant', error_description: description });
    };
    if (form.get('grant_type') === 'authorization_code') {
      const code = form.get('code') ?? '';
      const grant = codes.get(code);
      codes.delete(code); // single use, even when the verifier is wrong
      if (!grant) return refuse('unknown or used authorization code');
      if (form.get('redirect_uri') !== grant.redirectUri) return refuse('redirect_uri does not match');
      const verifier = form.get('code_verifier') ?? '';
      if (createHash('sha256').update(verifier).digest('base64url') !== grant.challenge) {
        return refuse('PKCE verification failed');
      }
    } else if (form.get('grant_type') === 'refresh_token') {
      if (!form.get('refresh_token')) return refuse('refresh_token required');
    } else {
      return refuse('grant_type must be authorization_code or refresh_token');
    }
    const claims = chatgptClaims({ ...user, expiresInSec: 3600 });
    record(req, 'oauth.token', 200);
    json(res, 200, {
      id_token: mintJwt(claims),
      access_token: mintJwt({ ...claims, jti: randomUUID() }),
      refresh_token: `rt_${randomBytes(16).toString('base64url')}`,
      expires_in: 3600,
    });
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path === '/__gatehouse/faults' && req.method === 'POST') {
      try {
        faults.add(parseFaultRule(JSON.parse((await readBody(req)).toString('utf8'))));
      } catch (e) {
        return json(res, 400, {
          error: e instanceof FaultError ? e.message : 'body must be a JSON fault rule',
        });
      }
      return json(res, 201, { ok: true });
    }
    if (path === '/__gatehouse/faults' && req.method === 'DELETE') {
      faults.clear();
      res.writeHead(204).end();
      return;
    }
    if (path === '/__gatehouse/requests' && req.method === 'GET') return json(res, 200, requests);
    if (path === '/__gatehouse/requests' && req.method === 'DELETE') {
      requests.length = 0;
      res.writeHead(204).end();
      return;
    }
    if (path === '/__gatehouse/revoke' && req.method === 'POST') {
      let body: { token?: unknown };
      try {
        body = JSON.parse((await readBody(req)).toString('utf8')) as { token?: unknown };
      } catch {
        body = {};
      }
      if (typeof body.token !== 'string') return json(res, 400, { error: 'body must be {"token": "..."}' });
      revoked.add(body.token);
      return json(res, 200, { ok: true });
    }
    json(res, 404, { error: 'unknown control endpoint' });
  }

  // The Responses WebSocket: bearer checked at the handshake, one response per response.create.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_BODY_BYTES });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname.replace(/\/+$/, '');
    const refuse = (status: number, text: string) => {
      record(req, 'responses.ws', status);
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ detail: text })}`,
      );
    };
    if (path !== '/backend-api/codex/responses') return refuse(404, 'Not Found');
    void (async () => {
      const fault = faults.take('responses.ws');
      if (fault?.kind === 'slow') await sleep(fault.delayMs);
      if (fault?.kind === 'status') return refuse(fault.status, `Scripted ${fault.status}`);
      if (fault?.kind === 'disconnect' && (fault.afterEvents ?? 0) === 0) {
        record(req, 'responses.ws', 0);
        socket.destroy();
        return;
      }
      if (!bearerOk(req)) return refuse(401, 'Unauthorized');
      record(req, 'responses.ws', 101);
      const cut = fault?.kind === 'disconnect' ? fault.afterEvents! : Infinity;
      wss.handleUpgrade(req, socket, head, (ws) => serveResponsesSocket(ws, cut));
    })();
  });

  function serveResponsesSocket(ws: WebSocket, cutAfter: number): void {
    let sent = 0;
    let queue = Promise.resolve();
    ws.on('message', (data) => {
      queue = queue.then(async () => {
        let frame: { type?: unknown };
        try {
          frame = JSON.parse(String(data)) as { type?: unknown };
        } catch {
          ws.send(JSON.stringify({ type: 'error', error: { message: 'frame is not JSON' } }));
          return;
        }
        if (frame.type !== 'response.create') {
          ws.send(JSON.stringify({ type: 'error', error: { message: 'expected a response.create frame' } }));
          return;
        }
        for (const event of responseEvents(frame)) {
          if (sent >= cutAfter) {
            ws.terminate();
            return;
          }
          if (delay > 0 && sent > 0) await sleep(delay);
          if (ws.readyState !== ws.OPEN) return;
          ws.send(JSON.stringify(event));
          sent++;
        }
      });
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `https://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  return {
    url,
    chatgptBaseUrl: `${url}/backend-api`,
    issuer: url,
    caCertPath,
    caCertPem: certs.caPem,
    faults,
    requests,
    revokeBearer: (t) => revoked.add(t),
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function backendRoute(method: string, path: string): Route | undefined {
  if (path === '/backend-api/wham/accounts/check' && method === 'GET') return 'accounts.check';
  if (path === '/backend-api/wham/config/bundle' && method === 'GET') return 'config.bundle';
  if (path === '/backend-api/codex/responses' && method === 'POST') return 'responses.http';
  if (path === '/backend-api/codex/realtime/calls' && method === 'POST') return 'realtime.calls';
  return undefined;
}

function bearerOf(req: IncomingMessage): string {
  return /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
