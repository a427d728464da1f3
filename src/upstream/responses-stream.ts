/**
 * One Responses attempt's stream, over either transport: SSE on an HTTP POST, or JSON text frames
 * on the Responses WebSocket. Both deliver the same event objects (`response.created`,
 * `response.output_text.delta`, ...) and end the same way: `response.completed` resolves,
 * `response.failed` / `error` / `response.incomplete` reject with the backend's message, and a
 * stream that stops early or stays silent past the idle deadline rejects as disconnected.
 */
import type { WebSocket } from 'ws';
import { retryAfterMs } from './backoff.js';
import { UpstreamFailure, abortedFailure, disconnected, unexpectedStatusText } from './failure.js';
import { openRequest, readText, type HttpResponse, type UpstreamAgents } from './http-request.js';
import { SseParser } from './sse.js';

/** A Responses stream event, as the backend sends it. */
export type ResponsesEvent = Record<string, unknown> & { type: string };

export interface StreamIO {
  onEvent(event: ResponsesEvent): void;
  signal: AbortSignal;
  /** Longest silence tolerated between two events. */
  idleTimeoutMs: number;
}

/** Error bodies quoted in failures are read up to this size. */
const MAX_ERROR_BODY = 64 * 1024;

/** Response error codes that another attempt cannot fix (codex treats these as fatal). */
const FATAL_ERROR_CODES = new Set([
  'context_length_exceeded',
  'insufficient_quota',
  'usage_not_included',
  'invalid_prompt',
]);

/** What an event means for the attempt: carry on, done, or failed. */
function terminal(event: ResponsesEvent): 'completed' | UpstreamFailure | undefined {
  switch (event.type) {
    case 'response.completed':
      return 'completed';
    case 'response.failed': {
      const error = ((event.response as Record<string, unknown> | undefined)?.error ?? {}) as {
        code?: unknown;
        message?: unknown;
      };
      const message = typeof error.message === 'string' ? error.message : 'response.failed event received';
      const fatal = typeof error.code === 'string' && FATAL_ERROR_CODES.has(error.code);
      return new UpstreamFailure(message, 'response', { retryable: !fatal });
    }
    case 'response.incomplete': {
      const details = (event.response as { incomplete_details?: { reason?: unknown } } | undefined)
        ?.incomplete_details;
      const reason = typeof details?.reason === 'string' ? details.reason : 'unknown';
      return new UpstreamFailure(`Incomplete response returned, reason: ${reason}`, 'response', {
        retryable: false,
      });
    }
    case 'error': {
      const error = (event.error ?? {}) as { message?: unknown };
      const message = typeof error.message === 'string' ? error.message : 'error event received';
      return new UpstreamFailure(message, 'response');
    }
    default:
      return undefined;
  }
}

/** Parses one event payload; malformed payloads are skipped (`undefined`). */
function parseEvent(text: string, fallbackType?: string): ResponsesEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const event = value as Record<string, unknown>;
  if (typeof event.type !== 'string') {
    if (!fallbackType) return undefined;
    event.type = fallbackType;
  }
  return event as ResponsesEvent;
}

/**
 * POSTs a Responses request and returns the open SSE response. A non-success status becomes an
 * UpstreamFailure with codex's `unexpected status` text (a 401 included: the caller's 401 loop
 * looks for it), carrying the backend's `Retry-After`.
 */
export async function postResponses(
  url: URL,
  headers: Record<string, string>,
  body: string,
  agents: UpstreamAgents,
  options: { timeoutMs: number; signal: AbortSignal },
): Promise<HttpResponse> {
  const res = await openRequest(url, { method: 'POST', headers, body, ...options }, agents);
  if (res.status >= 200 && res.status < 300) return res;
  const text = await readText(res.body, MAX_ERROR_BODY, options.timeoutMs).catch(() => '');
  throw new UpstreamFailure(unexpectedStatusText(res.status, text, url.href, headers), 'status', {
    status: res.status,
    retryAfterMs: retryAfterMs(res.headers) ?? null,
  });
}

/** Reads an SSE response until `response.completed`; the body is destroyed when done. */
export function streamSse(res: HttpResponse, io: StreamIO): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const parser = new SseParser();
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const finish = (failure?: UpstreamFailure) => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      io.signal.removeEventListener('abort', onAbort);
      res.body.destroy();
      if (failure) reject(failure);
      else resolve();
    };
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(
        () => finish(new UpstreamFailure(disconnected('idle timeout waiting for SSE'), 'disconnected')),
        io.idleTimeoutMs,
      );
    };
    const onAbort = () => finish(abortedFailure());
    if (io.signal.aborted) return finish(abortedFailure());
    io.signal.addEventListener('abort', onAbort, { once: true });
    const deliver = (events: { event: string; data: string }[]) => {
      for (const sse of events) {
        if (done) return;
        if (sse.data === '[DONE]') continue;
        const event = parseEvent(sse.data, sse.event === 'message' ? undefined : sse.event);
        if (!event) continue;
        io.onEvent(event);
        const end = terminal(event);
        if (end === 'completed') return finish();
        if (end) return finish(end);
      }
    };
    armIdle();
    res.body.on('data', (chunk: Buffer) => {
      armIdle();
      deliver(parser.push(chunk));
    });
    res.body.on('end', () => {
      deliver(parser.end());
      finish(new UpstreamFailure(disconnected('stream closed before response.completed'), 'disconnected'));
    });
    res.body.on('error', (e) => finish(new UpstreamFailure(disconnected(e.message), 'disconnected')));
    res.body.on('close', () =>
      finish(new UpstreamFailure(disconnected('stream closed before response.completed'), 'disconnected')),
    );
  });
}

/**
 * Sends one `response.create` frame on an open Responses socket and reads frames until the
 * response completes. The socket stays open afterwards for the next turn; on any failure the
 * caller closes it, since frames of an abandoned response may still be on their way.
 */
export function streamSocket(ws: WebSocket, request: Record<string, unknown>, io: StreamIO): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const finish = (failure?: UpstreamFailure) => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      io.signal.removeEventListener('abort', onAbort);
      ws.off('message', onMessage);
      ws.off('close', onClose);
      if (failure) reject(failure);
      else resolve();
    };
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(
        () => finish(new UpstreamFailure(disconnected('idle timeout waiting for websocket'), 'disconnected')),
        io.idleTimeoutMs,
      );
    };
    const onAbort = () => finish(abortedFailure());
    const onClose = () =>
      finish(
        new UpstreamFailure(
          disconnected('websocket closed by server before response.completed'),
          'disconnected',
        ),
      );
    const onMessage = (data: unknown, isBinary: boolean) => {
      if (isBinary) return;
      armIdle();
      const event = parseEvent(String(data));
      if (!event) return;
      io.onEvent(event);
      const end = terminal(event);
      if (end === 'completed') finish();
      else if (end) finish(end);
    };
    if (io.signal.aborted) return finish(abortedFailure());
    if (ws.readyState !== ws.OPEN) return onClose();
    io.signal.addEventListener('abort', onAbort, { once: true });
    ws.on('message', onMessage);
    ws.on('close', onClose);
    armIdle();
    ws.send(JSON.stringify({ type: 'response.create', ...request }), (e) => {
      if (e) finish(new UpstreamFailure(disconnected(e.message), 'disconnected'));
    });
  });
}
