/** Small HTTP helpers of the local backend: bounded bodies, JSON answers, raw upgrade refusals. */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The request body, decoded per `content-encoding` (codex compresses Responses bodies with zstd,
 * which Node has from 22.15 on; on older Node a zstd body is refused with 415 and says so).
 * Throws HttpError(413) past `limit` bytes as received.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  const raw = Buffer.concat(chunks);
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const options = { maxOutputLength: limit };
  try {
    switch (encoding) {
      case 'identity':
      case '':
        return raw;
      case 'gzip':
      case 'x-gzip':
        return zlib.gunzipSync(raw, options);
      case 'deflate':
        return zlib.inflateSync(raw, options);
      case 'br':
        return zlib.brotliDecompressSync(raw, options);
      case 'zstd': {
        const zstd = (zlib as unknown as { zstdDecompressSync?: typeof zlib.gunzipSync }).zstdDecompressSync;
        if (!zstd) {
          throw new HttpError(
            415,
            `content-encoding zstd needs Node 22.15 or newer (this is ${process.version})`,
          );
        }
        return zstd(raw, options);
      }
      default:
        throw new HttpError(415, `unsupported content-encoding: ${encoding}`);
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw new HttpError(400, `request body is not valid ${encoding} data`);
  }
}

/** The body parsed as JSON; HttpError(400) with a clear text when it is not. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const text = (await readBody(req, limit)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(
      400,
      text.trim() === '' ? 'request body is empty; expected JSON' : 'request body is not JSON',
    );
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    })
    .end(text);
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  res
    .writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    })
    .end(text);
}

/** An HTTP answer written straight on a socket: how a WebSocket handshake is refused. */
export function refuseUpgrade(
  socket: Duplex,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`,
    `content-type: ${looksLikeJson(body) ? 'application/json' : 'text/plain; charset=utf-8'}`,
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

/** The default body of a scripted or refused answer: `{"detail":"<reason phrase>"}`. */
export function reasonBody(status: number): string {
  return JSON.stringify({ detail: STATUS_CODES[status] ?? `HTTP ${status}` });
}

export function looksLikeJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Resolves after `ms`, or false at once when `signal` aborts (the backend is closing). */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
