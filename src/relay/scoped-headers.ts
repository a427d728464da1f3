/**
 * Extra headers of the scoped outbound requests (spec D.1): every Responses WebSocket handshake
 * (the prewarm and each reconnect included) and every Responses POST calls this, just before the
 * request leaves. Attestation plugs in here: for ChatGPT auth and a thread with an
 * attestation-capable subscriber, ask that connection `attestation/generate` (100 ms deadline,
 * never blocking longer) and return `{ 'x-oai-attestation': '{"v":1,"s":N,"t":...}' }`.
 * Until then it adds nothing.
 */
import type { BrokerServices } from '../broker/services.js';
import { noScopedHeaders, type ScopedHeaders } from '../upstream/scoped-request.js';

export function createScopedHeaders(services: BrokerServices): ScopedHeaders {
  void services;
  return noScopedHeaders;
}
