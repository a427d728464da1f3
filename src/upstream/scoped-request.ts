/**
 * The hook every *scoped* outbound request goes through (spec D.1): each Responses WebSocket
 * handshake, reconnects and the prewarm included, each Responses POST (compaction requests
 * included: a compaction sent as a `response.create` frame on an open socket is not a new scoped
 * request), and each realtime WebRTC call creation (`POST .../codex/realtime/calls`). It returns extra
 * headers for that one request; `x-oai-attestation` is the header it exists for. The
 * implementation lives in src/relay/scoped-headers.ts; the upstream actor only calls it, so the
 * retry code never changes when the headers do.
 */
import type { UpstreamAuthMode } from './auth-source.js';

export interface ScopedRequest {
  kind: 'responses.ws' | 'responses.http' | 'realtime.calls';
  threadId: string;
  /** The connections subscribed to the thread, in subscription order. */
  connectionIds: string[];
  /** Attestation is only for ChatGPT auth (spec D.1 rule 2). */
  authMode: UpstreamAuthMode;
}

export type ScopedHeaders = (request: ScopedRequest) => Promise<Record<string, string>>;

/** No extra headers: the default until attestation is wired in. */
export const noScopedHeaders: ScopedHeaders = () => Promise.resolve({});
