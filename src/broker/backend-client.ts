/**
 * The account side's calls to the backend and the issuer: small JSON requests, no streaming.
 * Backend calls carry the current credentials and go through the 401 loop of spec C.8: one
 * refresh, one retry with the new credentials.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { BrokerError } from '../protocol/errors.js';
import type { AuthSource, UpstreamAuth } from '../upstream/auth-source.js';
import type { BackendClient } from './services.js';

const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface BackendClientOptions {
  chatgptBaseUrl: string;
  auth: AuthSource;
  /** Extra trusted CA (PEM) from `CODEX_CA_CERTIFICATE`. */
  caPem?: string;
  headers?: () => Record<string, string>;
}

/** Reads `CODEX_CA_CERTIFICATE` once; a path that cannot be read is a start-up error. */
export function trustedCas(env: NodeJS.ProcessEnv): string[] | undefined {
  const path = env.CODEX_CA_CERTIFICATE;
  if (!path) return undefined;
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(
      `CODEX_CA_CERTIFICATE=${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      { cause: e },
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error(`CODEX_CA_CERTIFICATE=${path} holds no PEM certificate`);
  }
  return [...rootCertificates, pem];
}

export function createBackendClient(options: {
  chatgptBaseUrl: string;
  auth: AuthSource;
  ca?: string[];
}): BackendClient {
  const send = (url: string, init: RequestInit) => jsonRequest(url, init, options.ca);
  return {
    async getJson(path, { timeoutMs }) {
      const url = options.chatgptBaseUrl + path;
      let auth = await options.auth.current();
      if (!auth) throw new BrokerError('UPSTREAM_FAILED', 'not logged in');
      let answer = await send(url, { method: 'GET', headers: authHeaders(auth), timeoutMs });
      if (answer.status === 401) {
        auth = await options.auth.unauthorized(auth);
        answer = await send(url, { method: 'GET', headers: authHeaders(auth), timeoutMs });
      }
      return answer;
    },
    postForm(url, form, { timeoutMs }) {
      return send(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
        timeoutMs,
      });
    },
  };
}

function authHeaders(auth: UpstreamAuth): Record<string, string> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${auth.bearer}`,
    accept: 'application/json',
  };
  if (auth.accountId) headers['chatgpt-account-id'] = auth.accountId;
  return headers;
}

interface RequestInit {
  method: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
}

/** One request; the body is parsed as JSON when it is JSON, else kept as text. */
function jsonRequest(
  url: string,
  init: RequestInit,
  ca: string[] | undefined,
): Promise<{ status: number; body: unknown }> {
  const target = new URL(url);
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  // Only the origin and path go into errors: query strings and headers may carry secrets.
  const where = `${target.origin}${target.pathname}`;
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      { method: init.method, headers: init.headers, ...(ca ? { ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy(new Error(`response from ${where} is larger than ${MAX_BODY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text === '' ? null : JSON.parse(text);
          } catch {
            // Not JSON: callers see the text.
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', (e) =>
          reject(new BrokerError('UPSTREAM_FAILED', `request to ${where} failed: ${e.message}`)),
        );
      },
    );
    const timer = setTimeout(() => req.destroy(new Error('timed out')), init.timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(new BrokerError('UPSTREAM_FAILED', `request to ${where} failed: ${e.message}`));
    });
    req.end(init.body);
  });
}
