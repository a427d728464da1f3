/**
 * Wiring of the upstream actor from the broker's services: one per broker, at UPSTREAM_ACTOR.
 * Idempotent, so the account side and the relay can both ask for it. Reading the extra CA
 * (`CODEX_CA_CERTIFICATE`) happens here, once; an unusable file fails broker construction.
 */
import type { BrokerServices } from '../broker/services.js';
import type { JsonAnswer } from '../upstream/json-get.js';
import type { ScopedHeaders } from '../upstream/scoped-request.js';
import {
  UPSTREAM_ACTOR,
  UpstreamMessage,
  upstreamBehaviour,
  type GetJsonBody,
} from '../../actors/upstream/upstream.actor.js';
import { createScopedHeaders } from './scoped-headers.js';

export function ensureUpstreamActor(services: BrokerServices, scopedHeaders?: ScopedHeaders): string {
  if (services.system.has(UPSTREAM_ACTOR)) return UPSTREAM_ACTOR;
  const headers = scopedHeaders ?? createScopedHeaders(services);
  services.system.spawn(UPSTREAM_ACTOR, () =>
    upstreamBehaviour({
      log: services.log,
      auth: services.auth,
      chatgptBaseUrl: services.codex.chatgptBaseUrl,
      openaiBaseUrl: services.codex.openaiBaseUrl,
      secureContext: services.secureContext,
      requestTimeoutMs: services.settings.upstreamRequestTimeoutMs,
      streamIdleTimeoutMs: services.settings.streamIdleTimeoutMs,
      scopedHeaders: headers,
    }),
  );
  return UPSTREAM_ACTOR;
}

/**
 * `GET {chatgpt_base_url}{path}` through the upstream actor (credentials, 401 loop), shaped like
 * `BackendClient.getJson`. Rejects with BrokerError AUTH_REFRESH_FAILED (spec C.8 text) or
 * UPSTREAM_FAILED (timeout, network, not logged in, a 2xx body that is not JSON).
 */
export function upstreamGetJson(
  services: BrokerServices,
  path: string,
  options: { timeoutMs: number; headers?: Record<string, string> },
): Promise<JsonAnswer> {
  const body: GetJsonBody = {
    path,
    timeoutMs: options.timeoutMs,
    ...(options.headers ? { headers: options.headers } : {}),
  };
  return services.system.ask<JsonAnswer>(ensureUpstreamActor(services), UpstreamMessage.getJson, body);
}
