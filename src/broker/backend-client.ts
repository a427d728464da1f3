/**
 * The issuer's token endpoint is the one plain HTTP call outside the upstream actor: a form POST
 * without credentials (code exchange, managed refresh). Backend calls that carry credentials go
 * through the upstream actor instead, which owns the 401 loop.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BrokerError } from '../protocol/errors.js';
import type { SecureContext } from 'node:tls';

const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** POSTs a form to an absolute URL; the body is parsed as JSON when it is JSON. */
export function postForm(
  url: string,
  form: Record<string, string>,
  options: { timeoutMs: number; secureContext: SecureContext | undefined },
): Promise<{ status: number; body: unknown }> {
  return jsonRequest(
    url,
    {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
      timeoutMs: options.timeoutMs,
    },
    options.secureContext,
  );
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
  secureContext: SecureContext | undefined,
): Promise<{ status: number; body: unknown }> {
  const target = new URL(url);
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  // Only the origin and path go into errors: query strings and headers may carry secrets.
  const where = `${target.origin}${target.pathname}`;
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      { method: init.method, headers: init.headers, ...(secureContext ? { secureContext } : {}) },
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
