/**
 * The HTTP routes of the local backend, one handler per route name. Faults and the bearer check
 * have run before a handler is called (local-backend.ts); `x.bearer` holds the accepted bearer.
 */
import { randomBytes } from 'node:crypto';
import type { Exchange } from './exchange.js';
import { HttpError, readBody, readJson } from './http-io.js';
import { AuthorizeError, TokenError } from './oauth-issuer.js';
import {
  parseResponsesRequest,
  playEvents,
  responseEvents,
  ResponsesRequestError,
  type EventSink,
} from './responses.js';
import { remoteEnroll, remoteRefresh } from './remote-control.js';
import type { HttpRouteName } from './routes.js';
import { planTypeOf } from './tokens.js';

const MAX_RESPONSES_BODY_BYTES = 32 * 1024 * 1024;
const MAX_SMALL_BODY_BYTES = 1024 * 1024;
/** accounts/check reports this plan when the bearer carries none (an API key, a bare JWT). */
const FALLBACK_PLAN_TYPE = 'pro';

export type RouteHandler = (x: Exchange) => Promise<void> | void;

export const HTTP_HANDLERS: Record<HttpRouteName, RouteHandler> = {
  'accounts.check': accountsCheck,
  'config.bundle': (x) => x.json(200, {}),
  'responses.http': responsesOverHttp,
  'realtime.calls': realtimeCalls,
  'remote.enroll': remoteEnroll,
  'remote.refresh': remoteRefresh,
  'oauth.authorize': oauthAuthorize,
  'oauth.token': oauthToken,
};

/** Only the routes that stream can be cut after some events; the others are cut before answering. */
export const STREAMING_ROUTES: ReadonlySet<HttpRouteName> = new Set(['responses.http']);

/** Workspace routing discovery: the selected account, once, with no routing constraint. */
function accountsCheck(x: Exchange): void {
  const accountId = x.req.headers['chatgpt-account-id'];
  if (typeof accountId !== 'string' || accountId.trim() === '') {
    x.json(400, { detail: 'missing chatgpt-account-id header' });
    return;
  }
  const planType = (x.bearer?.kind === 'jwt' ? planTypeOf(x.bearer.claims) : undefined) ?? FALLBACK_PLAN_TYPE;
  x.json(200, {
    accounts: [
      {
        id: accountId,
        plan_type: planType,
        workspace_backend_origin: 'NO_CONSTRAINT',
        account_routing_override: 'NO_CONSTRAINT',
        structure: 'personal',
      },
    ],
    account_ordering: [accountId],
    default_account_id: accountId,
  });
}

async function responsesOverHttp(x: Exchange): Promise<void> {
  let events;
  try {
    x.body = await readJson(x.req, MAX_RESPONSES_BODY_BYTES);
    events = responseEvents(parseResponsesRequest(x.body));
  } catch (e) {
    if (!(e instanceof HttpError || e instanceof ResponsesRequestError)) throw e;
    x.json(e instanceof HttpError ? e.status : 400, {
      error: { message: e.message, type: 'invalid_request_error' },
    });
    return;
  }
  x.record(200);
  x.res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-request-id': `req_${randomBytes(12).toString('hex')}`,
  });
  const res = x.res;
  const sink: EventSink = {
    send: (event) =>
      new Promise((resolve) => {
        res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`, () => resolve());
      }),
    // End the socket under the unfinished chunked body, once what was written has left: the
    // client gets exactly the events before the cut, then a stream that ends too early.
    cut: () => res.socket?.destroySoon(),
    get closed() {
      return res.destroyed;
    },
  };
  const { outcome } = await playEvents(events, sink, {
    delayMs: x.state.responseDelayMs,
    cutAfter: x.cutAfterEvents,
    signal: x.state.signal,
  });
  if (outcome === 'completed') res.end();
  else if (outcome === 'gone') res.destroy();
}

/**
 * Placeholder of WebRTC call creation (attestation checks its headers): any body, answered with
 * a call id and a fixed answer SDP. The real backend answers the SDP as the body and names the
 * call in `Location`; the JSON here keeps the id easy to read for tests.
 */
async function realtimeCalls(x: Exchange): Promise<void> {
  const text = (await readBody(x.req, MAX_SMALL_BODY_BYTES)).toString('utf8');
  try {
    x.body = JSON.parse(text) as unknown;
  } catch {
    x.body = text;
  }
  const id = `call_${randomBytes(12).toString('hex')}`;
  x.json(201, { id, sdp: LOCAL_ANSWER_SDP }, { location: `/backend-api/codex/realtime/calls/${id}` });
}

/** The answer SDP of every local call: a minimal session description, never negotiated further. */
export const LOCAL_ANSWER_SDP = 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=gatehouse-local\r\nt=0 0\r\n';

function oauthAuthorize(x: Exchange): void {
  let location: string;
  try {
    location = x.state.oauth.authorize(x.url.searchParams);
  } catch (e) {
    if (!(e instanceof AuthorizeError)) throw e;
    x.text(400, `invalid authorize request: ${e.message}\n`);
    return;
  }
  x.record(302);
  x.res.writeHead(302, { location, 'content-length': 0 }).end();
}

async function oauthToken(x: Exchange): Promise<void> {
  try {
    const params = await tokenParams(x);
    x.json(200, x.state.oauth.token(params), { 'cache-control': 'no-store' });
  } catch (e) {
    if (e instanceof TokenError) {
      x.json(400, { error: e.error, error_description: e.description }, { 'cache-control': 'no-store' });
    } else if (e instanceof HttpError) {
      x.json(e.status, { error: 'invalid_request', error_description: e.message });
    } else {
      throw e;
    }
  }
}

/** Token requests come as a form (the code exchange) or as JSON (codex's refresh). */
async function tokenParams(x: Exchange): Promise<Record<string, string>> {
  const type = (x.req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    const body = (await readBody(x.req, MAX_SMALL_BODY_BYTES)).toString('utf8');
    return Object.fromEntries(new URLSearchParams(body));
  }
  if (type === 'application/json') {
    const body = await readJson(x.req, MAX_SMALL_BODY_BYTES);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new TokenError('invalid_request', 'the JSON body must be an object');
    }
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(body)) if (typeof v === 'string') params[k] = v;
    return params;
  }
  throw new TokenError(
    'invalid_request',
    'content-type must be application/x-www-form-urlencoded or application/json',
  );
}
