/**
 * A client of a local backend running in another process (`gatehouse local-backend`): its
 * control API (faults, recorded requests, revocation) and plain HTTPS requests that trust its CA.
 * For tests, demos and load tests; a backend in the same process is driven directly instead.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { FaultRule, FaultRuleJson } from './faults.js';
import type { RecordedRequest } from './request-log.js';
import type { RouteName } from './routes.js';

export interface BackendResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as text (UTF-8), as far as it arrived. */
  body: string;
  /** True when the connection ended before the body was complete (a scripted disconnect). */
  truncated: boolean;
}

export interface BackendRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The local backend's CA certificate (PEM); the only CA trusted. */
  ca: string;
  /** Default 10 s. */
  timeoutMs?: number;
}

/**
 * One HTTPS request. Resolves with whatever arrived, `truncated` set when the stream was cut;
 * rejects only when no response came at all (refused, reset before the status line, timeout).
 */
export function requestLocalBackend(url: string, init: BackendRequestInit): Promise<BackendResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: init.method ?? 'GET', headers: init.headers ?? {}, ca: [init.ca], agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        let settled = false;
        const finish = (truncated: boolean) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            truncated,
          });
        };
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => finish(!res.complete));
        res.on('aborted', () => finish(true));
        res.on('error', () => finish(true));
        res.on('close', () => finish(!res.complete));
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`no answer from ${url} within ${init.timeoutMs ?? 10_000} ms`)),
      init.timeoutMs ?? 10_000,
    );
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(init.body);
  });
}

export class LocalBackendControl {
  /** `url` is the backend's base URL (`https://127.0.0.1:PORT`); `caCertPem` its CA. */
  constructor(
    readonly url: string,
    private readonly caCertPem: string,
  ) {}

  /** Adds a fault rule; resolves with the rule as stored, rejects with the backend's reason. */
  async addFault(rule: FaultRule): Promise<FaultRuleJson> {
    // JSON has no Infinity: "always" travels as -1.
    const times = rule.times === Infinity ? -1 : rule.times;
    return (await this.call(
      'POST',
      '/faults',
      { ...rule, ...(times !== undefined ? { times } : {}) },
      201,
    )) as FaultRuleJson;
  }

  async listFaults(): Promise<FaultRuleJson[]> {
    return (await this.call('GET', '/faults', undefined, 200)) as FaultRuleJson[];
  }

  async clearFaults(): Promise<void> {
    await this.call('DELETE', '/faults', undefined, 204);
  }

  async requests(route?: RouteName): Promise<RecordedRequest[]> {
    const query = route ? `?route=${encodeURIComponent(route)}` : '';
    return (await this.call('GET', `/requests${query}`, undefined, 200)) as RecordedRequest[];
  }

  async clearRequests(): Promise<void> {
    await this.call('DELETE', '/requests', undefined, 204);
  }

  async revoke(token: string): Promise<void> {
    await this.call('POST', '/revoke', { token }, 204);
  }

  private async call(method: string, path: string, body: unknown, expected: number): Promise<unknown> {
    const response = await requestLocalBackend(`${this.url}/__gatehouse${path}`, {
      method,
      ca: this.caCertPem,
      ...(body !== undefined
        ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
        : {}),
    });
    if (response.status !== expected) {
      let reason = response.body;
      try {
        reason = (JSON.parse(response.body) as { error?: string }).error ?? reason;
      } catch {
        // not JSON: keep the text
      }
      throw new Error(`local backend control ${method} ${path}: HTTP ${response.status}: ${reason}`);
    }
    return response.body === '' ? undefined : JSON.parse(response.body);
  }
}
