/**
 * The upstream client actor: the one place that talks to the backend. It attaches the
 * credentials (`Authorization: Bearer`, `chatgpt-account-id`), runs the 401 loop of spec C.8 on
 * every request, applies the connect and idle deadlines, keeps one Responses WebSocket per thread
 * open across turns, and passes every scoped request through the scoped-headers hook. It also
 * creates realtime WebRTC calls (an ask: one POST, its 401 loop, no retries).
 *
 * A Responses attempt is started with a tell; its events and its end come back as tells to the
 * requester's address, in order (an ask's reply would overtake the events still in the
 * requester's mailbox). Which attempt to make next, and when, is the requester's business: the
 * retry policy lives in the turn machine.
 */
import type { WebSocket } from 'ws';
import { later, type Behaviour, type Message } from '../../src/runtime/actor.js';
import type { ActorSystem } from '../../src/runtime/actor-system.js';
import type { Logger } from '../../src/util/logger.js';
import type { AuthSource, UpstreamAuth } from '../../src/upstream/auth-source.js';
import { abortedFailure, failureData, type FailureData } from '../../src/upstream/failure.js';
import { UpstreamAgents } from '../../src/upstream/http-request.js';
import { getJson } from '../../src/upstream/json-get.js';
import { createRealtimeCall, type RealtimeCallRequest } from '../../src/upstream/realtime-call.js';
import { openResponsesSocket, socketUrl } from '../../src/upstream/responses-socket.js';
import {
  postResponses,
  streamSocket,
  streamSse,
  type ResponsesEvent,
  type StreamIO,
} from '../../src/upstream/responses-stream.js';
import type { ScopedHeaders, ScopedRequest } from '../../src/upstream/scoped-request.js';
import { authHeaders, currentAuth, withUnauthorizedRetry } from '../../src/upstream/unauthorized-retry.js';
import type { SecureContext } from 'node:tls';

export const UPSTREAM_ACTOR = 'upstream';

export const UpstreamMessage = {
  /** ask: GetJsonBody -> JsonAnswer (`{ status, body }`). */
  getJson: 'upstream.getJson',
  /** tell: ResponsesStartBody; answered by `responsesEvent`* then one `responsesEnd`. */
  responsesStart: 'upstream.responses.start',
  /** tell: ResponsesAbortBody. The attempt ends (with an `aborted` failure) and its socket closes. */
  responsesAbort: 'upstream.responses.abort',
  /** tell: ResponsesReleaseBody. Closes the thread's WebSocket. */
  responsesRelease: 'upstream.responses.release',
  /** Sent to the requester: ResponsesEventBody. */
  responsesEvent: 'upstream.responses.event',
  /** Sent to the requester: ResponsesEndBody. */
  responsesEnd: 'upstream.responses.end',
  /** ask: RealtimeCallBody -> RealtimeCallAnswer (`{ ok, callId, sdp }` or `{ ok: false, message }`). */
  realtimeCall: 'upstream.realtime.call',
} as const;

export interface RealtimeCallBody {
  /** The thread the call is for, and its subscribers: the scoped request's. */
  threadId: string;
  connectionIds: string[];
  request: RealtimeCallRequest;
}

export interface GetJsonBody {
  /** Appended to `chatgpt_base_url`, e.g. `/wham/accounts/check`. */
  path: string;
  /** Defaults to the upstream request timeout. */
  timeoutMs?: number;
  /** Extra headers (user-agent, originator); the credentials are added here. */
  headers?: Record<string, string>;
}

export interface ResponsesStartBody {
  /** Unique per attempt; names the attempt in events, end and abort. */
  streamId: string;
  /** Address that receives the events and the end. */
  replyTo: string;
  /** The thread: key of its WebSocket, and part of the scoped request. */
  threadId: string;
  /** The thread's subscribers, for the scoped-headers hook. */
  connectionIds: string[];
  /** `ws` is used only under ChatGPT auth; API-key auth always POSTs. */
  transport: 'ws' | 'http';
  /** Turn headers (user-agent, originator, version, session ids...); credentials are added here. */
  headers: Record<string, string>;
  /** The Responses request body; null only makes sure the WebSocket is open (the prewarm). */
  request: Record<string, unknown> | null;
}

export interface ResponsesEventBody {
  streamId: string;
  event: ResponsesEvent;
}

export type ResponsesEndBody =
  { streamId: string; ok: true } | { streamId: string; ok: false; failure: FailureData };

export interface ResponsesAbortBody {
  streamId: string;
}

export interface ResponsesReleaseBody {
  threadId: string;
}

export interface UpstreamDeps {
  log: Logger;
  auth: AuthSource;
  /** e.g. `https://chatgpt.com/backend-api`, no trailing slash. */
  chatgptBaseUrl: string;
  /** Used instead under API-key auth, e.g. `https://api.openai.com/v1`. */
  openaiBaseUrl: string;
  /** Trusted CAs (see trustedContext); undefined keeps Node's. */
  secureContext: SecureContext | undefined;
  /** Connect + response-headers (or handshake) deadline. */
  requestTimeoutMs: number;
  /** Longest silence inside a Responses stream. */
  streamIdleTimeoutMs: number;
  scopedHeaders: ScopedHeaders;
}

const RESPONSES_WEBSOCKETS_BETA = 'responses_websockets=2026-02-06';

export function upstreamBehaviour(deps: UpstreamDeps): Behaviour {
  const agents = new UpstreamAgents(deps.secureContext);
  const attempts = new Map<string, AbortController>();
  /**
   * Open Responses sockets by thread, reused across turns while healthy and while the credentials
   * they were opened with are current: the backend checks the bearer only at the handshake, so a
   * socket must not outlive a logout, a new login or a refresh.
   */
  const sockets = new Map<string, { ws: WebSocket; generation: number }>();
  let stopped = false;

  function closeSocket(threadId: string, only?: WebSocket): void {
    const open = sockets.get(threadId);
    if (!open || (only && open.ws !== only)) return;
    sockets.delete(threadId);
    open.ws.terminate();
  }

  async function scoped(
    kind: ScopedRequest['kind'],
    body: Pick<ResponsesStartBody, 'threadId' | 'connectionIds'>,
    auth: UpstreamAuth,
  ) {
    return deps.scopedHeaders({
      kind,
      threadId: body.threadId,
      connectionIds: body.connectionIds,
      authMode: auth.mode,
    });
  }

  /** Headers of a scoped request, in the order codex sends them (spec D.4). */
  function requestHeaders(
    auth: UpstreamAuth,
    body: ResponsesStartBody,
    transport: 'ws' | 'http',
    extra: Record<string, string>,
  ): Record<string, string> {
    const { 'user-agent': userAgent, originator, ...rest } = body.headers;
    const headers: Record<string, string> = authHeaders(auth);
    if (userAgent !== undefined) headers['user-agent'] = userAgent;
    if (originator !== undefined) headers.originator = originator;
    if (transport === 'ws') headers['openai-beta'] = RESPONSES_WEBSOCKETS_BETA;
    Object.assign(headers, rest, extra);
    if (transport === 'http') {
      headers.accept = 'text/event-stream';
      // Node 20 has no zstd, so the body goes uncompressed (codex sends content-encoding: zstd).
      headers['content-type'] = 'application/json';
      if (auth.mode !== 'apikey') headers['x-openai-internal-codex-responses-lite'] = 'true';
    }
    return headers;
  }

  async function openSocket(body: ResponsesStartBody, first: UpstreamAuth, url: URL, signal: AbortSignal) {
    const open = sockets.get(body.threadId);
    if (open && open.ws.readyState === open.ws.OPEN && open.generation === first.generation) return open.ws;
    closeSocket(body.threadId);
    let generation = first.generation;
    const ws = await withUnauthorizedRetry(deps.auth, first, async (auth) => {
      generation = auth.generation;
      return openResponsesSocket(socketUrl(url), {
        headers: requestHeaders(auth, body, 'ws', await scoped('responses.ws', body, auth)),
        timeoutMs: deps.requestTimeoutMs,
        signal,
        ...(deps.secureContext ? { secureContext: deps.secureContext } : {}),
      });
    });
    if (stopped) {
      ws.terminate();
      throw abortedFailure();
    }
    sockets.set(body.threadId, { ws, generation });
    ws.on('close', () => {
      if (sockets.get(body.threadId)?.ws === ws) sockets.delete(body.threadId);
    });
    return ws;
  }

  async function run(body: ResponsesStartBody, signal: AbortSignal, onEvent: (e: ResponsesEvent) => void) {
    const first = await currentAuth(deps.auth);
    const apiKey = first.mode === 'apikey';
    const url = new URL(
      apiKey ? `${deps.openaiBaseUrl}/responses` : `${deps.chatgptBaseUrl}/codex/responses`,
    );
    const io: StreamIO = { onEvent, signal, idleTimeoutMs: deps.streamIdleTimeoutMs };
    if (body.transport === 'ws' && !apiKey) {
      const ws = await openSocket(body, first, url, signal);
      if (!body.request) return;
      try {
        await streamSocket(ws, body.request, io);
      } catch (e) {
        // Frames of the abandoned response may still come: the next attempt gets a fresh socket.
        closeSocket(body.threadId, ws);
        throw e;
      }
      return;
    }
    if (!body.request) return;
    const payload = JSON.stringify(body.request);
    const res = await withUnauthorizedRetry(deps.auth, first, async (auth) =>
      postResponses(
        url,
        requestHeaders(auth, body, 'http', await scoped('responses.http', body, auth)),
        payload,
        agents,
        { timeoutMs: deps.requestTimeoutMs, signal },
      ),
    );
    await streamSse(res, io);
  }

  function start(body: ResponsesStartBody, system: ActorSystem): void {
    const controller = new AbortController();
    attempts.set(body.streamId, controller);
    const tell = (type: string, payload: ResponsesEventBody | ResponsesEndBody) => {
      try {
        // Output of accepted work: never refused for a full mailbox.
        system.tell(body.replyTo, type, payload, undefined, true);
      } catch {
        controller.abort(); // the requester is gone
      }
    };
    if (stopped) controller.abort();
    void run(body, controller.signal, (event) =>
      tell(UpstreamMessage.responsesEvent, { streamId: body.streamId, event }),
    )
      .then(
        () => tell(UpstreamMessage.responsesEnd, { streamId: body.streamId, ok: true }),
        (e: unknown) => {
          const failure = failureData(e);
          if (failure.kind !== 'aborted') {
            deps.log.debug(
              { thread: body.threadId, kind: failure.kind, status: failure.status },
              'upstream attempt failed',
            );
          }
          tell(UpstreamMessage.responsesEnd, { streamId: body.streamId, ok: false, failure });
        },
      )
      .finally(() => attempts.delete(body.streamId));
  }

  return {
    receive(message: Message, ctx) {
      switch (message.type) {
        case UpstreamMessage.getJson: {
          const { path, timeoutMs, headers } = message.body as GetJsonBody;
          return later(
            getJson({ auth: deps.auth, agents }, new URL(deps.chatgptBaseUrl + path), {
              timeoutMs: timeoutMs ?? deps.requestTimeoutMs,
              ...(headers ? { headers } : {}),
            }),
          );
        }
        case UpstreamMessage.responsesStart:
          start(message.body as ResponsesStartBody, ctx.system);
          return;
        case UpstreamMessage.realtimeCall: {
          const body = message.body as RealtimeCallBody;
          return later(
            createRealtimeCall(
              {
                auth: deps.auth,
                agents,
                chatgptBaseUrl: deps.chatgptBaseUrl,
                timeoutMs: deps.requestTimeoutMs,
                scoped: (auth) => scoped('realtime.calls', body, auth),
              },
              body.request,
            ),
          );
        }
        case UpstreamMessage.responsesAbort:
          attempts.get((message.body as ResponsesAbortBody).streamId)?.abort();
          return;
        case UpstreamMessage.responsesRelease:
          closeSocket((message.body as ResponsesReleaseBody).threadId);
          return;
        default:
          throw new TypeError(`upstream actor cannot handle ${message.type}`);
      }
    },
    stopped() {
      stopped = true;
      for (const controller of attempts.values()) controller.abort();
      for (const threadId of [...sockets.keys()]) closeSocket(threadId);
      agents.destroy();
    },
  };
}
