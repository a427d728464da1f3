/**
 * The JSON envelopes of the remote-control WebSocket (spec B.5). The backend relays remote
 * clients over one socket; every frame names the virtual connection it belongs to by
 * `(client_id, stream_id)`. Inbound frames are validated strictly here, so the tracker only ever
 * sees well-typed envelopes; outbound frames are built as strings in the key order of the spec,
 * with the JSON-RPC message text the broker produced embedded as is (it is already JSON).
 */
import { topLevelToken } from '../protocol/jsonrpc.js';

/** Identifies one virtual connection. */
export interface StreamKey {
  clientId: string;
  streamId: string;
}

/** One map key per virtual connection; unambiguous whatever characters the ids hold. */
export function streamMapKey(clientId: string, streamId: string): string {
  return JSON.stringify([clientId, streamId]);
}

interface ClientEnvelopeBase {
  client_id: string;
  stream_id: string;
  /** Resume point of the backend's subscription; the socket owner sends the latest one back. */
  cursor?: string;
}

export interface ClientMessageEnvelope extends ClientEnvelopeBase {
  type: 'client_message';
  seq_id: number;
  message: Record<string, unknown>;
  /**
   * Not on the wire: the message's JSON text exactly as it appeared in the frame, so integer ids
   * beyond 2^53 survive (`JSON.stringify(message)` when the key was spelled with escapes).
   * Decisions about the message are taken on this text, which is what the broker receives.
   */
  messageText: string;
}

export interface ClientMessageChunkEnvelope extends ClientEnvelopeBase {
  type: 'client_message_chunk';
  seq_id: number;
  segment_id: number;
  segment_count: number;
  message_size_bytes: number;
  message_chunk_base64: string;
}

export interface AckEnvelope extends ClientEnvelopeBase {
  type: 'ack';
  seq_id: number;
  segment_id?: number;
}

export interface PingEnvelope extends ClientEnvelopeBase {
  type: 'ping';
}

export interface ClientClosedEnvelope extends ClientEnvelopeBase {
  type: 'client_closed';
}

/** Backend → app-server. */
export type ClientEnvelope =
  ClientMessageEnvelope | ClientMessageChunkEnvelope | AckEnvelope | PingEnvelope | ClientClosedEnvelope;

export type PongStatus = 'active' | 'unknown';

interface ServerEnvelopeBase {
  client_id: string;
  stream_id: string;
  seq_id: number;
}

/** App-server → backend, as a reader of the frames sees them. */
export type ServerEnvelope =
  | (ServerEnvelopeBase & { type: 'server_message'; message: unknown })
  | (ServerEnvelopeBase & {
      type: 'server_message_chunk';
      segment_id: number;
      segment_count: number;
      message_size_bytes: number;
      message_chunk_base64: string;
    })
  | (ServerEnvelopeBase & { type: 'pong'; status: PongStatus });

export type ParsedClientEnvelope = { ok: true; envelope: ClientEnvelope } | { ok: false; reason: string };

const CLIENT_TYPES = ['client_message', 'client_message_chunk', 'ack', 'ping', 'client_closed'] as const;

/**
 * Validates one text frame from the backend. Members this module does not know are ignored
 * (the backend may add some); the ones it knows must have the right type wherever they appear.
 * Reasons name fields and types only, never values: frames carry client messages and tokens.
 */
export function parseClientEnvelope(text: string): ParsedClientEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input, so it is not passed on.
    return { ok: false, reason: 'frame is not valid JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'frame is not a JSON object' };
  }
  const obj = value as Record<string, unknown>;
  const type = obj.type;
  if (typeof type !== 'string') return { ok: false, reason: 'type is missing or not a string' };
  if (!(CLIENT_TYPES as readonly string[]).includes(type)) {
    return { ok: false, reason: `unknown envelope type ${JSON.stringify(type.slice(0, 64))}` };
  }
  const problem = (what: string): ParsedClientEnvelope => ({ ok: false, reason: `${type}: ${what}` });

  const clientId = obj.client_id;
  const streamId = obj.stream_id;
  if (!isNonEmptyString(clientId)) return problem('client_id must be a non-empty string');
  if (!isNonEmptyString(streamId)) return problem('stream_id must be a non-empty string');
  if ('cursor' in obj && typeof obj.cursor !== 'string') return problem('cursor must be a string');
  if ('seq_id' in obj && !isIndex(obj.seq_id)) return problem('seq_id must be a non-negative integer');
  for (const field of ['segment_id', 'segment_count', 'message_size_bytes'] as const) {
    if (field in obj && !isIndex(obj[field])) return problem(`${field} must be a non-negative integer`);
  }
  const base: ClientEnvelopeBase = { client_id: clientId, stream_id: streamId };
  if (typeof obj.cursor === 'string') base.cursor = obj.cursor;
  const seqId = obj.seq_id as number | undefined;

  switch (type as ClientEnvelope['type']) {
    case 'client_message': {
      if (seqId === undefined) return problem('seq_id is missing');
      const message = obj.message;
      if (typeof message !== 'object' || message === null || Array.isArray(message)) {
        return problem('message must be a JSON object');
      }
      const raw = topLevelToken(text, 'message');
      const messageText = raw?.startsWith('{') ? raw : JSON.stringify(message);
      const envelope: ClientMessageEnvelope = {
        type: 'client_message',
        ...base,
        seq_id: seqId,
        message: message as Record<string, unknown>,
        messageText,
      };
      return { ok: true, envelope };
    }
    case 'client_message_chunk': {
      if (seqId === undefined) return problem('seq_id is missing');
      const { segment_id, segment_count, message_size_bytes, message_chunk_base64 } = obj;
      if (segment_id === undefined) return problem('segment_id is missing');
      if (segment_count === undefined) return problem('segment_count is missing');
      if (message_size_bytes === undefined) return problem('message_size_bytes is missing');
      if (typeof message_chunk_base64 !== 'string') return problem('message_chunk_base64 must be a string');
      const envelope: ClientMessageChunkEnvelope = {
        type: 'client_message_chunk',
        ...base,
        seq_id: seqId,
        segment_id: segment_id as number,
        segment_count: segment_count as number,
        message_size_bytes: message_size_bytes as number,
        message_chunk_base64,
      };
      return { ok: true, envelope };
    }
    case 'ack': {
      if (seqId === undefined) return problem('seq_id is missing');
      const envelope: AckEnvelope = { type: 'ack', ...base, seq_id: seqId };
      if (obj.segment_id !== undefined) envelope.segment_id = obj.segment_id as number;
      return { ok: true, envelope };
    }
    case 'ping':
      return { ok: true, envelope: { type: 'ping', ...base } };
    case 'client_closed':
      return { ok: true, envelope: { type: 'client_closed', ...base } };
  }
}

/** `{"type":"server_message","message":…,"client_id":…,"stream_id":…,"seq_id":…}` */
export function encodeServerMessage(key: StreamKey, seqId: number, messageText: string): string {
  return `{"type":"server_message","message":${messageText},${idsTail(key, seqId)}}`;
}

/** `{"type":"pong","status":…,"client_id":…,"stream_id":…,"seq_id":…}` */
export function encodePong(key: StreamKey, seqId: number, status: PongStatus): string {
  return `{"type":"pong","status":"${status}",${idsTail(key, seqId)}}`;
}

export interface ChunkFields {
  segmentId: number;
  segmentCount: number;
  messageSizeBytes: number;
  base64: string;
}

/** `{"type":"server_message_chunk","segment_id",…,"message_chunk_base64",…,"client_id",…}` */
export function encodeServerMessageChunk(key: StreamKey, seqId: number, chunk: ChunkFields): string {
  return (
    `{"type":"server_message_chunk","segment_id":${chunk.segmentId},"segment_count":${chunk.segmentCount},` +
    `"message_size_bytes":${chunk.messageSizeBytes},"message_chunk_base64":"${chunk.base64}",` +
    `${idsTail(key, seqId)}}`
  );
}

function idsTail(key: StreamKey, seqId: number): string {
  return `"client_id":${JSON.stringify(key.clientId)},"stream_id":${JSON.stringify(key.streamId)},"seq_id":${seqId}`;
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

function isIndex(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}
