/**
 * The server WebSocket to the remote-control backend (spec B.2 handshake, B.3 status handling):
 * `GET …/wham/remote/control/server` with Upgrade, authenticated by the remote-control token
 * alone. A refused handshake is told apart the way the enrollment lifecycle (spec B.4) needs it:
 * 401/403 drop the token, a 404 whose JSON `detail` says the server is gone drops the
 * enrollment, any other 404 or status keeps both. Once open, the socket pings every 10 s and
 * gives up after 60 s without a Pong, as codex does; it is closed by dropping the connection
 * (codex sends no Close frame either).
 */
import type { SecureContext } from 'node:tls';
import { WebSocket, type RawData } from 'ws';
import { retryAfterMs } from '../upstream/backoff.js';
import { readText } from '../upstream/http-request.js';
import { previewBody, requestIdSuffix, statusText } from './body-preview.js';

export const REMOTE_CONTROL_PROTOCOL_VERSION = '3';
export const RELAY_HANDSHAKE_TIMEOUT_MS = 30_000;
export const RELAY_PING_INTERVAL_MS = 10_000;
export const RELAY_PONG_TIMEOUT_MS = 60_000;

/** The one 404 body that means the enrollment is gone (any other 404 may come from a proxy). */
const SERVER_GONE_DETAIL = 'Remote app server not found';
const MAX_ERROR_BODY = 64 * 1024;
/** Larger frames from the backend close the socket (ws's default is 100 MiB). */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export interface RelaySocketOptions {
  /** ws: or wss: (see endpoints.ts). */
  url: URL;
  /** The remote-control token: the handshake's only credential. */
  token: string;
  installationId: string;
  /** Sent base64-encoded (`x-codex-name`). */
  serverName: string;
  serverId: string;
  /** The latest `cursor` a client envelope carried, so the backend resumes from there. */
  cursor?: string;
  /** Whole-handshake deadline; default RELAY_HANDSHAKE_TIMEOUT_MS. */
  timeoutMs?: number;
  secureContext?: SecureContext;
  signal?: AbortSignal;
  /** Default RELAY_PING_INTERVAL_MS. */
  pingIntervalMs?: number;
  /** Default RELAY_PONG_TIMEOUT_MS: counted from the open, then from the last Pong. */
  pongTimeoutMs?: number;
}

export type RelayHandshakeErrorKind =
  /** 401/403: the token is refused; refresh it before trying again. */
  | 'unauthorized'
  /** 404 with `{"detail":"Remote app server not found"}`: enroll again. */
  | 'serverGone'
  /** Any other 404: keep the enrollment and the token, back off. */
  | 'notFound'
  /** Any other refusal. */
  | 'status'
  /** A header value Node refuses to send (a control character in the cursor, say). */
  | 'invalidRequest'
  | 'network'
  | 'timeout'
  | 'aborted';

export class RelayHandshakeError extends Error {
  override name = 'RelayHandshakeError';
  constructor(
    message: string,
    readonly kind: RelayHandshakeErrorKind,
    /** The refusal's HTTP status; 0 when there was none. */
    readonly status: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export interface Disposable {
  dispose(): void;
}

export interface RelaySocket {
  /** Sends a text frame; false when the socket is already closed (the frame is dropped). */
  send(frame: string): boolean;
  /** Text frames, in order; binary frames are ignored. Frames that came before any listener are handed to the first. */
  onFrame(listener: (text: string) => void): Disposable;
  /** Called once when the socket ends, with why; a listener added after that is called at once. */
  onClose(listener: (reason: string) => void): Disposable;
  /** Drops the connection (no Close frame); onClose reports `closed locally`. */
  close(): void;
  /** Bytes queued but not yet written: the backpressure signal. */
  readonly bufferedAmount: number;
}

export function openRelaySocket(options: RelaySocketOptions): Promise<RelaySocket> {
  const { url, signal } = options;
  const context = `failed to connect app-server remote control websocket \`${url.href}\``;
  const timeoutMs = options.timeoutMs ?? RELAY_HANDSHAKE_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  return new Promise<RelaySocket>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new RelayHandshakeError(`${context}: connection attempt aborted`, 'aborted', 0));
      return;
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, {
        headers: handshakeHeaders(options),
        // codex's client offers no extensions; ws would offer permessage-deflate.
        perMessageDeflate: false,
        maxPayload: MAX_FRAME_BYTES,
        ...(options.secureContext ? { secureContext: options.secureContext } : {}),
      });
    } catch (e) {
      // Node validates header values before connecting; its message names the header, not the value.
      reject(new RelayHandshakeError(`${context}: ${(e as Error).message}`, 'invalidRequest', 0));
      return;
    }
    let settled = false;
    const settle = (outcome: RelaySocket | RelayHandshakeError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.removeListener('open', onOpen);
      ws.removeListener('unexpected-response', onRefused);
      if (outcome instanceof RelayHandshakeError) {
        ws.terminate();
        reject(outcome);
      } else {
        ws.removeListener('error', onHandshakeError);
        resolve(outcome);
      }
    };
    const timer = setTimeout(() => {
      const after = rustDuration(timeoutMs);
      settle(
        new RelayHandshakeError(
          `timed out connecting to remote control websocket at \`${url.href}\` after ${after}`,
          'timeout',
          0,
        ),
      );
    }, timeoutMs);
    const onAbort = () =>
      settle(new RelayHandshakeError(`${context}: connection attempt aborted`, 'aborted', 0));
    signal?.addEventListener('abort', onAbort, { once: true });
    // Stays after a failure: terminating a refused handshake still emits an error.
    const onHandshakeError = (e: Error) => {
      const why = 'code' in e ? `IO error: ${e.message}` : `WebSocket protocol error: ${e.message}`;
      settle(new RelayHandshakeError(`${context}: ${why}`, 'network', 0));
    };
    const onOpen = () => settle(new Relay(ws, options));
    const onRefused = (_req: unknown, res: Parameters<typeof readText>[0]) => {
      const status = res.statusCode ?? 0;
      void readText(res, MAX_ERROR_BODY, Math.max(1, deadline - Date.now()))
        .catch(() => '')
        .then((body) => {
          let message = `${context}: HTTP error: ${statusText(status)}, ${requestIdSuffix(res.headers)}`;
          if (body.length > 0) message += `, body: ${previewBody(body, [options.token])}`;
          settle(
            new RelayHandshakeError(message, refusalKind(status, body), status, retryAfterMs(res.headers)),
          );
        });
    };
    ws.on('error', onHandshakeError);
    ws.once('open', onOpen);
    ws.once('unexpected-response', onRefused);
  });
}

/** The handshake headers, exactly these (spec B.2): no account id, user agent or originator. */
function handshakeHeaders(options: RelaySocketOptions): Record<string, string> {
  return {
    'x-codex-installation-id': options.installationId,
    authorization: `Bearer ${options.token}`,
    'x-codex-protocol-version': REMOTE_CONTROL_PROTOCOL_VERSION,
    'x-codex-name': Buffer.from(options.serverName, 'utf8').toString('base64'),
    'x-codex-server-id': options.serverId,
    ...(options.cursor !== undefined ? { 'x-codex-subscribe-cursor': options.cursor } : {}),
  };
}

function refusalKind(status: number, body: string): RelayHandshakeErrorKind {
  if (status === 401 || status === 403) return 'unauthorized';
  if (status !== 404) return 'status';
  try {
    const parsed: unknown = JSON.parse(body);
    const detail =
      typeof parsed === 'object' && parsed !== null ? (parsed as { detail?: unknown }).detail : undefined;
    return detail === SERVER_GONE_DETAIL ? 'serverGone' : 'notFound';
  } catch {
    return 'notFound';
  }
}

/** Rust's `Debug` for a Duration, as codex's timeout text prints it: `30s`, `1.5s`, `250ms`. */
function rustDuration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}

class Relay implements RelaySocket {
  private readonly frameListeners = new Set<(text: string) => void>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  /** Frames that arrived before anyone listened (ws may deliver them before `await` resumes). */
  private early: string[] = [];
  private closedWith: string | undefined;
  private readonly ping: NodeJS.Timeout;
  private readonly pongDeadline: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    options: RelaySocketOptions,
  ) {
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) this.deliver(rawText(data));
    });
    ws.on('pong', () => this.pongDeadline.refresh());
    ws.on('error', (e: Error) => this.finish(`socket error: ${e.message}`));
    ws.on('close', (code: number, reason: Buffer) => {
      const why = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
      this.finish(`closed by the backend (code ${code}${why})`);
    });
    this.ping = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.ping();
    }, options.pingIntervalMs ?? RELAY_PING_INTERVAL_MS);
    this.pongDeadline = setTimeout(
      () => this.finish('pong timeout'),
      options.pongTimeoutMs ?? RELAY_PONG_TIMEOUT_MS,
    );
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(frame: string): boolean {
    if (this.closedWith !== undefined || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(frame);
    return true;
  }

  onFrame(listener: (text: string) => void): Disposable {
    this.frameListeners.add(listener);
    const early = this.early;
    this.early = [];
    for (const text of early) listener(text);
    return { dispose: () => this.frameListeners.delete(listener) };
  }

  onClose(listener: (reason: string) => void): Disposable {
    if (this.closedWith !== undefined) {
      listener(this.closedWith);
      return { dispose: () => undefined };
    }
    this.closeListeners.add(listener);
    return { dispose: () => this.closeListeners.delete(listener) };
  }

  close(): void {
    this.finish('closed locally');
  }

  private deliver(text: string): void {
    if (this.frameListeners.size === 0) {
      this.early.push(text);
      return;
    }
    for (const listener of this.frameListeners) listener(text);
  }

  private finish(reason: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = reason;
    clearInterval(this.ping);
    clearTimeout(this.pongDeadline);
    this.ws.terminate();
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    this.frameListeners.clear();
    for (const listener of listeners) listener(reason);
  }
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
