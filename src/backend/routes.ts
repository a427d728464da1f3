/**
 * The routes the local backend serves, by name. Fault rules, recorded requests and logs refer to
 * routes by these names, so they are part of the backend's documented interface: a new endpoint
 * adds an entry here, and the server's handler table, typed by `HttpRouteName`, then fails to
 * compile until it has a handler.
 */
export interface RouteInfo {
  /** `WS` for a message on an open WebSocket rather than an HTTP request. */
  method: 'GET' | 'POST' | 'WS';
  path: string;
  /** `upgrade`: served by the WebSocket handshake; `message`: per WebSocket message. */
  kind: 'http' | 'upgrade' | 'message';
  /**
   * Whether the ChatGPT bearer is checked (the `/backend-api` routes but the remote-control
   * WebSocket, whose bearer is a remote-control token).
   */
  bearer: boolean;
  description: string;
}

export const BACKEND_ROUTES = {
  'accounts.check': {
    method: 'GET',
    path: '/backend-api/wham/accounts/check',
    kind: 'http',
    bearer: true,
    description: 'workspace routing discovery (spec C.3)',
  },
  'config.bundle': {
    method: 'GET',
    path: '/backend-api/wham/config/bundle',
    kind: 'http',
    bearer: true,
    description: 'cloud requirements of workspace plans',
  },
  'responses.http': {
    method: 'POST',
    path: '/backend-api/codex/responses',
    kind: 'http',
    bearer: true,
    description: 'Responses over HTTP, answered as server-sent events',
  },
  'responses.ws': {
    method: 'GET',
    path: '/backend-api/codex/responses',
    kind: 'upgrade',
    bearer: true,
    description: 'the Responses WebSocket handshake',
  },
  'responses.ws.create': {
    method: 'WS',
    path: '/backend-api/codex/responses',
    kind: 'message',
    bearer: false, // checked once, at the handshake
    description: 'one response.create message on an open Responses WebSocket',
  },
  'realtime.calls': {
    method: 'POST',
    path: '/backend-api/codex/realtime/calls',
    kind: 'http',
    bearer: true,
    description: 'realtime call creation (placeholder)',
  },
  'remote.enroll': {
    method: 'POST',
    path: '/backend-api/wham/remote/control/server/enroll',
    kind: 'http',
    bearer: true,
    description: 'remote-control enrollment: a new server and its first remote-control token (spec B.2)',
  },
  'remote.refresh': {
    method: 'POST',
    path: '/backend-api/wham/remote/control/server/refresh',
    kind: 'http',
    bearer: true,
    description: 'a new remote-control token for an enrolled server (spec B.2)',
  },
  'remote.ws': {
    method: 'GET',
    path: '/backend-api/wham/remote/control/server',
    kind: 'upgrade',
    bearer: false, // a remote-control token, not a ChatGPT bearer: checked by remote-control.ts
    description: 'the remote-control server WebSocket handshake',
  },
  'remote.ws.envelope': {
    method: 'WS',
    path: '/backend-api/wham/remote/control/server',
    kind: 'message',
    bearer: false,
    description: 'one envelope the app-server sends on the remote-control WebSocket (spec B.5)',
  },
  'oauth.authorize': {
    method: 'GET',
    path: '/oauth/authorize',
    kind: 'http',
    bearer: false,
    description: 'OAuth authorize page: auto-approves the configured user',
  },
  'oauth.token': {
    method: 'POST',
    path: '/oauth/token',
    kind: 'http',
    bearer: false,
    description: 'OAuth token endpoint: authorization code with PKCE, refresh token',
  },
} as const satisfies Record<string, RouteInfo>;

export type RouteName = keyof typeof BACKEND_ROUTES;
export type HttpRouteName = {
  [K in RouteName]: (typeof BACKEND_ROUTES)[K]['kind'] extends 'http' ? K : never;
}[RouteName];

export const ROUTE_NAMES = Object.keys(BACKEND_ROUTES) as RouteName[];

/** Requests that match no route are recorded under this name (with status 404, 405 or 426). */
export const UNMATCHED_ROUTE = 'unmatched';

export type RouteMatch =
  | { route: RouteName }
  | { route: null; status: 404 }
  | { route: null; status: 405; allow: string }
  | { route: null; status: 426 };

/** The route of an HTTP request or upgrade; a trailing slash is ignored. */
export function matchRoute(method: string, pathname: string, upgrade: boolean): RouteMatch {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  const wanted = upgrade ? 'upgrade' : 'http';
  const onPath = ROUTE_NAMES.filter((name) => {
    const info: RouteInfo = BACKEND_ROUTES[name];
    return info.path === path && info.kind !== 'message';
  });
  for (const name of onPath) {
    const info: RouteInfo = BACKEND_ROUTES[name];
    if (info.kind === wanted && info.method === method) return { route: name };
  }
  if (onPath.length === 0) return { route: null, status: 404 };
  // A plain GET of the WebSocket endpoint: say it needs an upgrade.
  if (!upgrade && method === 'GET' && onPath.some((n) => BACKEND_ROUTES[n].kind === 'upgrade')) {
    return { route: null, status: 426 };
  }
  const allow = onPath.filter((n) => BACKEND_ROUTES[n].kind === 'http').map((n) => BACKEND_ROUTES[n].method);
  return { route: null, status: 405, allow: allow.join(', ') };
}
