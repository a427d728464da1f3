/**
 * Opening the Responses WebSocket (`GET {base}/codex/responses` with Upgrade). The handshake's
 * outcome is told apart the way the retry policy needs it: a refused upgrade becomes an
 * `unexpected status` failure carrying the status (so a 401 enters the refresh loop), a
 * handshake that takes too long is a timeout, and anything else is a network failure.
 */
import type { WebSocket } from 'ws';
import { retryAfterMs } from './backoff.js';
import {
  TIMEOUT_TEXT,
  UpstreamFailure,
  abortedFailure,
  disconnected,
  unexpectedStatusText,
} from './failure.js';
import { readText } from './http-request.js';
import type { SecureContext } from 'node:tls';

const MAX_ERROR_BODY = 64 * 1024;
/** Frames larger than this from the backend close the socket (ws's default is 100 MiB). */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export interface SocketOptions {
  headers: Record<string, string>;
  secureContext?: SecureContext;
  /** Deadline of the whole handshake. */
  timeoutMs: number;
  signal: AbortSignal;
}

/** `https://host/backend-api/codex/responses` -> `wss://host/backend-api/codex/responses`. */
export function socketUrl(httpUrl: URL): URL {
  const url = new URL(httpUrl.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url;
}

export async function openResponsesSocket(url: URL, options: SocketOptions): Promise<WebSocket> {
  // Loaded on first use: an app-server that never opens a Responses socket does not load ws at
  // start-up, where it was a tenth of the time to the first `initialize` answer.
  const { WebSocket } = await import('ws');
  return new Promise<WebSocket>((resolve, reject) => {
    if (options.signal.aborted) {
      reject(abortedFailure());
      return;
    }
    const ws = new WebSocket(url, {
      headers: options.headers,
      handshakeTimeout: options.timeoutMs,
      maxPayload: MAX_FRAME_BYTES,
      ...(options.secureContext ? { secureContext: options.secureContext } : {}),
    });
    let settled = false;
    const settle = (outcome: { ws: WebSocket } | { failure: UpstreamFailure }) => {
      if (settled) return;
      settled = true;
      options.signal.removeEventListener('abort', onAbort);
      if ('ws' in outcome) {
        resolve(outcome.ws);
      } else {
        ws.terminate();
        reject(outcome.failure);
      }
    };
    const onAbort = () => settle({ failure: abortedFailure() });
    options.signal.addEventListener('abort', onAbort, { once: true });
    // A socket without an error listener would crash the process; errors after the handshake are
    // seen by the stream reader as a close.
    ws.on('error', (e) => {
      const timedOut = /handshake has timed out/i.test(e.message);
      settle({
        failure: timedOut
          ? new UpstreamFailure(TIMEOUT_TEXT, 'timeout')
          : new UpstreamFailure(disconnected(e.message), 'network'),
      });
    });
    ws.once('open', () => settle({ ws }));
    ws.once('unexpected-response', (req, res) => {
      const status = res.statusCode ?? 0;
      void readText(res, MAX_ERROR_BODY, options.timeoutMs)
        .catch(() => '')
        .then((body) => {
          req.destroy();
          settle({
            failure: new UpstreamFailure(
              unexpectedStatusText(status, body, url.href, options.headers),
              'status',
              {
                status,
                retryAfterMs: retryAfterMs(res.headers) ?? null,
              },
            ),
          });
        });
    });
  });
}
