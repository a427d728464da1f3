/**
 * The control API, for tests and demos that run the backend as a child process and so cannot
 * reach `backend.faults` or `backend.requests` directly. It needs no bearer: the backend listens
 * on loopback only, and what it controls is test data. Its requests are not recorded.
 *
 *   POST   /__gatehouse/faults     body: a fault rule (see faults.ts) → 201 the rule as stored
 *   GET    /__gatehouse/faults     → 200 the rules in force
 *   DELETE /__gatehouse/faults     → 204
 *   GET    /__gatehouse/requests   [?route=NAME] → 200 the recorded requests, oldest first
 *   DELETE /__gatehouse/requests   → 204
 *   POST   /__gatehouse/revoke     body: {"token": "..."} → 204; that bearer now gets 401
 *
 * Remote control (the in-process `backend.remoteControl`, remote-relay.ts):
 *
 *   GET    /__gatehouse/remote-control/servers        → 200 the enrolled app-servers
 *   POST   /__gatehouse/remote-control/forget         body: {"server_id": "..."} → 204 (404 if unknown);
 *                                                       refresh and handshake now answer 404
 *   POST   /__gatehouse/remote-control/expire-tokens  → 204; every token issued so far is expired
 *   POST   /__gatehouse/remote-control/drop-sockets   → 204; server sockets cut, no close frame
 *   GET    /__gatehouse/remote-control/token-ttl      → 200 {"seconds": N}
 *   PUT    /__gatehouse/remote-control/token-ttl      body: {"seconds": N} → 200 {"seconds": N}
 *   GET    /__gatehouse/remote-control/envelopes      → 200 the envelopes app-servers sent, with outcomes
 *   DELETE /__gatehouse/remote-control/envelopes      → 204
 *   GET    /__gatehouse/remote-control/client?environment_id=E&client_id=C&stream_id=S&chunk_bytes=N
 *          with an upgrade (every parameter optional): a remote client of server E (default: the
 *          one connected). Each text frame is one JSON-RPC message, both ways; the backend wraps
 *          and unwraps the envelopes, and closing the socket sends `client_closed`. Refused with
 *          400 (bad parameter), 404 (no such server, none connected) or 409 (several connected,
 *          or that client and stream already open).
 *
 * Errors are `{"error": "<what is wrong>"}` with status 400, 404, 405 or 426.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocketServer } from 'ws';
import type { BackendState } from './exchange.js';
import { FaultRuleError, type FaultRule } from './faults.js';
import { HttpError, readJson, refuseUpgrade, sendJson } from './http-io.js';
import { bridgeRemoteClient } from './remote-client.js';
import { isTokenTtl, TOKEN_TTL_RULE } from './remote-control.js';
import { RemoteClientError, type RemoteClientOptions } from './remote-relay.js';

export const CONTROL_PREFIX = '/__gatehouse';
const REMOTE = `${CONTROL_PREFIX}/remote-control`;
const REMOTE_CLIENT_PATH = `${REMOTE}/client`;
const MAX_CONTROL_BODY_BYTES = 1024 * 1024;

type ControlHandler = (
  state: BackendState,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
) => Promise<void> | void;

const ENDPOINTS: Record<string, Partial<Record<string, ControlHandler>>> = {
  [`${CONTROL_PREFIX}/faults`]: {
    POST: async (state, req, res) => {
      const rule = await readJson(req, MAX_CONTROL_BODY_BYTES);
      sendJson(res, 201, state.faults.add(rule as FaultRule));
    },
    GET: (state, _req, res) => sendJson(res, 200, state.faults.list()),
    DELETE: (state, _req, res) => {
      state.faults.clear();
      res.writeHead(204).end();
    },
  },
  [`${CONTROL_PREFIX}/requests`]: {
    GET: (state, _req, res, url) => {
      const route = url.searchParams.get('route');
      sendJson(res, 200, route ? state.requests.filter((r) => r.route === route) : state.requests);
    },
    DELETE: (state, _req, res) => {
      state.requests.length = 0;
      res.writeHead(204).end();
    },
  },
  [`${CONTROL_PREFIX}/revoke`]: {
    POST: async (state, req, res) => {
      const body = await readJson(req, MAX_CONTROL_BODY_BYTES);
      const token = (body as { token?: unknown } | null)?.token;
      if (typeof token !== 'string' || token === '') {
        throw new HttpError(400, 'body must be {"token": "<bearer to revoke>"}');
      }
      state.revoked.add(token);
      res.writeHead(204).end();
    },
  },
  [`${REMOTE}/servers`]: {
    GET: (state, _req, res) => sendJson(res, 200, state.remoteRelay.servers()),
  },
  [`${REMOTE}/forget`]: {
    POST: async (state, req, res) => {
      const body = await readJson(req, MAX_CONTROL_BODY_BYTES);
      const serverId = (body as { server_id?: unknown } | null)?.server_id;
      if (typeof serverId !== 'string' || serverId === '') {
        throw new HttpError(400, 'body must be {"server_id": "<server to forget>"}');
      }
      if (!state.remoteRelay.forget(serverId)) {
        throw new HttpError(404, `no enrolled app-server has server id ${JSON.stringify(serverId)}`);
      }
      res.writeHead(204).end();
    },
  },
  [`${REMOTE}/expire-tokens`]: {
    POST: (state, _req, res) => {
      state.remoteRelay.expireTokens();
      res.writeHead(204).end();
    },
  },
  [`${REMOTE}/drop-sockets`]: {
    POST: (state, _req, res) => {
      state.remoteRelay.dropSockets();
      res.writeHead(204).end();
    },
  },
  [`${REMOTE}/token-ttl`]: {
    GET: (state, _req, res) => sendJson(res, 200, { seconds: state.remoteRelay.tokenTtlSec }),
    PUT: async (state, req, res) => {
      const body = await readJson(req, MAX_CONTROL_BODY_BYTES);
      const seconds = (body as { seconds?: unknown } | null)?.seconds;
      if (typeof seconds !== 'number' || !isTokenTtl(seconds))
        throw new HttpError(400, `body must be {"seconds": N}, N ${TOKEN_TTL_RULE}`);
      state.remoteRelay.tokenTtlSec = seconds;
      sendJson(res, 200, { seconds });
    },
  },
  [`${REMOTE}/envelopes`]: {
    GET: (state, _req, res) => sendJson(res, 200, state.remoteRelay.serverEnvelopes),
    DELETE: (state, _req, res) => {
      state.remoteRelay.serverEnvelopes.length = 0;
      res.writeHead(204).end();
    },
  },
  [REMOTE_CLIENT_PATH]: {
    GET: () => {
      throw new HttpError(426, `${REMOTE_CLIENT_PATH} is a WebSocket endpoint: send an upgrade`);
    },
  },
};

export function isControlPath(pathname: string): boolean {
  return pathname === CONTROL_PREFIX || pathname.startsWith(`${CONTROL_PREFIX}/`);
}

export async function handleControl(
  state: BackendState,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const path = url.pathname.replace(/\/+$/, '');
  const methods = ENDPOINTS[path];
  const method = req.method ?? 'GET';
  try {
    if (!methods) throw new HttpError(404, `unknown control endpoint: ${path}`);
    const handler = methods[method];
    if (!handler) {
      res.setHeader('allow', Object.keys(methods).join(', '));
      throw new HttpError(405, `${path} accepts ${Object.keys(methods).join(', ')}, not ${method}`);
    }
    await handler(state, req, res, url);
  } catch (e) {
    if (e instanceof FaultRuleError) sendJson(res, 400, { error: e.message });
    else if (e instanceof HttpError) sendJson(res, e.status, { error: e.message });
    else throw e;
  }
}

/** An upgrade under the control prefix: only the remote-client endpoint is a WebSocket. */
export function handleControlUpgrade(
  state: BackendState,
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  socket.on('error', () => socket.destroy()); // a peer that resets mid-handshake is not our error
  const url = new URL(req.url ?? '/', 'https://local-backend');
  const path = url.pathname.replace(/\/+$/, '');
  if (path !== REMOTE_CLIENT_PATH) {
    refuseUpgrade(socket, 404, JSON.stringify({ error: `no WebSocket control endpoint at ${path}` }));
    return;
  }
  let target;
  try {
    target = state.remoteRelay.resolveTarget(remoteClientOptions(url.searchParams));
  } catch (e) {
    if (!(e instanceof RemoteClientError)) throw e;
    refuseUpgrade(socket, e.status, JSON.stringify({ error: e.message }));
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => bridgeRemoteClient(state.remoteRelay, ws, target));
}

function remoteClientOptions(query: URLSearchParams): RemoteClientOptions {
  const options: RemoteClientOptions = {};
  const environmentId = query.get('environment_id');
  const clientId = query.get('client_id');
  const streamId = query.get('stream_id');
  const chunkBytes = query.get('chunk_bytes');
  if (environmentId !== null) options.environmentId = environmentId;
  if (clientId !== null) options.clientId = clientId;
  if (streamId !== null) options.streamId = streamId;
  if (chunkBytes !== null) {
    if (!/^[1-9]\d{0,9}$/.test(chunkBytes)) {
      throw new RemoteClientError(
        400,
        `chunk_bytes must be a positive integer, not ${JSON.stringify(chunkBytes)}`,
      );
    }
    options.chunkBytes = Number(chunkBytes);
  }
  return options;
}
