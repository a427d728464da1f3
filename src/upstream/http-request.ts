/**
 * One HTTP(S) request to the backend, over node:http/https. The deadline covers connecting and
 * receiving the response headers; the body is handed back as a stream, so the caller decides how
 * long it may take (an SSE stream has its own idle deadline). Failures are UpstreamFailures
 * worded for clients, and never mention headers (they carry the bearer token).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { TIMEOUT_TEXT, UpstreamFailure, abortedFailure, disconnected } from './failure.js';
import type { SecureContext } from 'node:tls';

export interface HttpRequestOptions {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  /** Connect + response-headers deadline. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: IncomingMessage['headers'];
  /** The body, not yet read. Destroy it when done with it early. */
  body: IncomingMessage;
}

/**
 * Keep-alive agents for the backend, one per scheme, owned by whoever talks to the backend so
 * that shutting it down closes every pooled socket.
 */
export class UpstreamAgents {
  private readonly http = new HttpAgent({ keepAlive: true });
  private readonly https: HttpsAgent;

  constructor(secureContext: SecureContext | undefined) {
    this.https = new HttpsAgent({ keepAlive: true, ...(secureContext ? { secureContext } : {}) });
  }

  for(url: URL): HttpAgent {
    return url.protocol === 'https:' ? this.https : this.http;
  }

  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

export function openRequest(
  url: URL,
  options: HttpRequestOptions,
  agents: UpstreamAgents,
): Promise<HttpResponse> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<HttpResponse>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortedFailure());
      return;
    }
    let settled = false;
    const headers = { ...options.headers };
    if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = send(url, { method: options.method, headers, agent: agents.for(url) });
    const fail = (failure: UpstreamFailure) => {
      if (settled) return;
      settled = true;
      cleanup();
      req.destroy();
      reject(failure);
    };
    const onAbort = () => fail(abortedFailure());
    const timer = setTimeout(() => fail(new UpstreamFailure(TIMEOUT_TEXT, 'timeout')), options.timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('response', (res) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      cleanup();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    req.on('error', (e) => fail(new UpstreamFailure(disconnected(e.message), 'network')));
    req.end(options.body);
  });
}

/** Reads a (small) body as text, up to `maxBytes`; a longer body is cut there. */
export function readText(body: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      body.destroy();
      reject(new UpstreamFailure(TIMEOUT_TEXT, 'timeout'));
    }, timeoutMs);
    body.on('data', (chunk: Buffer) => {
      if (size >= maxBytes) return;
      chunks.push(chunk.subarray(0, maxBytes - size));
      size += chunk.length;
      if (size >= maxBytes) {
        body.destroy();
        finish();
      }
    });
    const finish = () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    body.on('end', finish);
    body.on('error', (e) => {
      clearTimeout(timer);
      // Keep what arrived: a body cut short still says something about the failure.
      if (chunks.length > 0) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(new UpstreamFailure(disconnected(e.message), 'network'));
    });
    body.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}
