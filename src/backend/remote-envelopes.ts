/**
 * The envelopes of the remote-control server socket as the backend reads them (spec B.5): the
 * app-server's `server_message`, `server_message_chunk` and `pong`, each checked field by field,
 * and the acks the backend answers them with. This is the backend's own reading, written apart
 * from the app-server's (src/remote-control/envelopes.ts) so that the two check each other.
 */

/** Limits of a reassembled server message (spec B.5). */
const MAX_SEGMENTS = 1024;
const MAX_MESSAGE_BYTES = 100 * 1024 * 1024;

/** A JSON-RPC message as it travels inside envelopes (no `jsonrpc` member). */
export interface RemoteMessage {
  id?: number | string;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
  [key: string]: unknown;
}

/** `ServerEnvelope` of spec B.5, checked field by field. */
export type ServerEnvelope = { client_id: string; stream_id: string; seq_id: number } & (
  | { type: 'server_message'; message: RemoteMessage }
  | {
      type: 'server_message_chunk';
      segment_id: number;
      segment_count: number;
      message_size_bytes: number;
      message_chunk_base64: string;
    }
  | { type: 'pong'; status: string }
);

export function parseServerEnvelope(value: unknown): ServerEnvelope | undefined {
  if (!isObject(value)) return undefined;
  const e = value;
  if (typeof e.client_id !== 'string' || typeof e.stream_id !== 'string' || !isCount(e.seq_id)) {
    return undefined;
  }
  switch (e.type) {
    case 'server_message':
      return isObject(e.message) ? (e as ServerEnvelope) : undefined;
    case 'server_message_chunk':
      return isCount(e.segment_id) &&
        isCount(e.segment_count) &&
        e.segment_count >= 1 &&
        e.segment_count <= MAX_SEGMENTS &&
        isCount(e.message_size_bytes) &&
        e.message_size_bytes <= MAX_MESSAGE_BYTES &&
        typeof e.message_chunk_base64 === 'string'
        ? (e as ServerEnvelope)
        : undefined;
    case 'pong':
      return typeof e.status === 'string' ? (e as ServerEnvelope) : undefined;
    default:
      return undefined;
  }
}

/** Acks name the segment of a chunk, so that only the unacked segments are re-sent (spec B.5). */
export function ackFor(envelope: ServerEnvelope): Record<string, unknown> {
  return {
    type: 'ack',
    client_id: envelope.client_id,
    stream_id: envelope.stream_id,
    seq_id: envelope.seq_id,
    ...(envelope.type === 'server_message_chunk' ? { segment_id: envelope.segment_id } : {}),
  };
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
