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
 * Errors are `{"error": "<what is wrong>"}` with status 400, 404 or 405.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BackendState } from './exchange.js';
import { FaultRuleError, type FaultRule } from './faults.js';
import { HttpError, readJson, sendJson } from './http-io.js';

export const CONTROL_PREFIX = '/__gatehouse';
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
