/**
 * Segmentation of large messages on the remote-control socket (spec B.5). The backend limits
 * frame sizes, so a server message whose envelope would exceed 150 KiB travels as numbered
 * `server_message_chunk`s carrying base64 slices of the raw UTF-8 message bytes, and remote
 * clients do the same towards us with `client_message_chunk`s, which are put back together here.
 * Slices are cut on bytes, not characters: a multi-byte character may straddle two chunks, which
 * is why only the complete byte sequence is ever decoded.
 */
import {
  type ClientMessageChunkEnvelope,
  type StreamKey,
  encodeServerMessage,
  encodeServerMessageChunk,
  streamMapKey,
} from './envelopes.js';

/** A frame (server or client) larger than this is segmented, and an inbound chunk frame this large is refused. */
export const MAX_FRAME_BYTES = 150 * 1024;
/** Raw message bytes per outbound chunk. */
export const SEGMENT_BYTES = 100 * 1024;
export const MAX_SEGMENTS = 1024;
export const MAX_MESSAGE_BYTES = 100 * 1024 * 1024;

export interface OutboundFrame {
  frame: string;
  /** UTF-8 size of `frame`, what the replay buffer is charged. */
  bytes: number;
  /** Set on chunks: acks may release a message chunk by chunk. */
  segmentId?: number;
}

export type SegmentedMessage = { ok: true; frames: OutboundFrame[] } | { ok: false; reason: string };

/** The frames that carry one outbound JSON-RPC message text under `seqId`. */
export function serverMessageFrames(key: StreamKey, seqId: number, messageText: string): SegmentedMessage {
  const whole = encodeServerMessage(key, seqId, messageText);
  const wholeBytes = Buffer.byteLength(whole);
  if (wholeBytes <= MAX_FRAME_BYTES) return { ok: true, frames: [{ frame: whole, bytes: wholeBytes }] };
  const raw = Buffer.from(messageText, 'utf8');
  if (raw.length > MAX_MESSAGE_BYTES) {
    return {
      ok: false,
      reason: `message of ${raw.length} bytes is above the ${MAX_MESSAGE_BYTES}-byte limit`,
    };
  }
  // Very long ids could push a small message over the frame limit; it still goes as two chunks.
  const sliceBytes = Math.min(SEGMENT_BYTES, Math.ceil(raw.length / 2));
  const segmentCount = Math.ceil(raw.length / sliceBytes);
  const frames: OutboundFrame[] = [];
  for (let segmentId = 0; segmentId < segmentCount; segmentId++) {
    const slice = raw.subarray(segmentId * sliceBytes, (segmentId + 1) * sliceBytes);
    const frame = encodeServerMessageChunk(key, seqId, {
      segmentId,
      segmentCount,
      messageSizeBytes: raw.length,
      base64: slice.toString('base64'),
    });
    frames.push({ frame, bytes: Buffer.byteLength(frame), segmentId });
  }
  return { ok: true, frames };
}

export type ChunkOutcome =
  /** Accepted; more segments are expected. `abandoned` says why an earlier assembly was given up. */
  | { kind: 'pending'; abandoned?: string }
  /** This chunk completed the message. */
  | { kind: 'complete'; text: string; abandoned?: string }
  /** The assembly (or this chunk alone) was dropped, for the reason given. */
  | { kind: 'dropped'; reason: string }
  /** A chunk of a message already delivered or already dropped: nothing changed. */
  | { kind: 'ignored'; reason: string };

interface Assembly {
  seqId: number;
  segmentCount: number;
  messageSizeBytes: number;
  nextSegment: number;
  parts: Buffer[];
  received: number;
}

interface StreamChunks {
  assembly?: Assembly;
  /** Replayed chunks of a message already delivered are ignored. */
  lastCompletedSeq?: number;
  /** The rest of a dropped message is ignored quietly instead of failing segment by segment. */
  droppedSeq?: number;
  touchedAt: number;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reassembles `client_message_chunk`s per `(client_id, stream_id)`. Segments must come in order
 * (0, 1, 2, …) under one header; a new segment 0 starts the message over (the backend resends
 * from the beginning after a reconnect), anything else out of place drops the assembly.
 */
export class ClientChunkReassembler {
  private readonly streams = new Map<string, StreamChunks>();
  private assembling = 0;

  /** `maxAssemblies`: messages being reassembled at once, over all streams. */
  constructor(private readonly maxAssemblies: number) {}

  /** `frameBytes` is the UTF-8 size of the whole frame the chunk came in. */
  accept(chunk: ClientMessageChunkEnvelope, frameBytes: number, now: number): ChunkOutcome {
    const id = streamMapKey(chunk.client_id, chunk.stream_id);
    let state = this.streams.get(id);
    if (!state) {
      state = { touchedAt: now };
      this.streams.set(id, state);
    }
    state.touchedAt = now;
    const seq = chunk.seq_id;
    if (state.lastCompletedSeq !== undefined && seq <= state.lastCompletedSeq) {
      return { kind: 'ignored', reason: `seq ${seq} was already delivered` };
    }
    if (frameBytes > MAX_FRAME_BYTES) {
      return this.drop(state, seq, `chunk frame of ${frameBytes} bytes is above ${MAX_FRAME_BYTES}`);
    }
    let abandoned: string | undefined;
    const current = state.assembly;
    if (current && chunk.segment_id === 0) {
      abandoned = `seq ${current.seqId} was incomplete (${current.nextSegment}/${current.segmentCount}) when a new first segment arrived`;
      this.clear(state);
    } else if (current) {
      const mismatch = headerMismatch(current, chunk);
      if (mismatch) return this.drop(state, seq, mismatch);
    } else if (chunk.segment_id !== 0) {
      if (state.droppedSeq === seq) return { kind: 'ignored', reason: `seq ${seq} was dropped earlier` };
      return this.drop(state, seq, `out-of-order segment ${chunk.segment_id} of seq ${seq} (expected 0)`);
    }
    let assembly = state.assembly;
    if (!assembly) {
      const begun = this.begin(state, chunk);
      if (typeof begun === 'string') return this.drop(state, seq, joined(abandoned, begun));
      assembly = begun;
    }
    const outcome = this.append(state, assembly, chunk);
    if (abandoned === undefined) return outcome;
    if (outcome.kind === 'dropped') return { kind: 'dropped', reason: joined(abandoned, outcome.reason) };
    return { ...outcome, abandoned };
  }

  /** Forgets a stream's chunks (it closed, or restarted). */
  forget(clientId: string, streamId: string): void {
    const id = streamMapKey(clientId, streamId);
    const state = this.streams.get(id);
    if (!state) return;
    this.clear(state);
    this.streams.delete(id);
  }

  /** Forgets streams that sent no chunk since `cutoff`; returns how many. */
  forgetIdle(cutoff: number): number {
    let n = 0;
    for (const [id, state] of this.streams) {
      if (state.touchedAt > cutoff) continue;
      this.clear(state);
      this.streams.delete(id);
      n++;
    }
    return n;
  }

  /** Streams with chunk state (an assembly or the memory of a delivered message). */
  get size(): number {
    return this.streams.size;
  }

  /** The new assembly, or why the chunk cannot start one. */
  private begin(state: StreamChunks, chunk: ClientMessageChunkEnvelope): Assembly | string {
    if (chunk.segment_count < 1 || chunk.segment_count > MAX_SEGMENTS) {
      return `segment_count ${chunk.segment_count} is outside 1..${MAX_SEGMENTS}`;
    }
    if (chunk.message_size_bytes > MAX_MESSAGE_BYTES) {
      return `message_size_bytes ${chunk.message_size_bytes} is above ${MAX_MESSAGE_BYTES}`;
    }
    if (this.assembling >= this.maxAssemblies) {
      return `${this.assembling} messages are already being reassembled`;
    }
    this.assembling++;
    state.assembly = {
      seqId: chunk.seq_id,
      segmentCount: chunk.segment_count,
      messageSizeBytes: chunk.message_size_bytes,
      nextSegment: 0,
      parts: [],
      received: 0,
    };
    return state.assembly;
  }

  private append(
    state: StreamChunks,
    a: Assembly,
    chunk: ClientMessageChunkEnvelope,
  ): Exclude<ChunkOutcome, { kind: 'ignored' }> {
    const b64 = chunk.message_chunk_base64;
    if (b64.length % 4 !== 0 || !BASE64.test(b64)) {
      return this.drop(state, a.seqId, `segment ${chunk.segment_id} of seq ${a.seqId} is not valid base64`);
    }
    const bytes = Buffer.from(b64, 'base64');
    a.received += bytes.length;
    if (a.received > a.messageSizeBytes) {
      return this.drop(
        state,
        a.seqId,
        `seq ${a.seqId} carries more than message_size_bytes ${a.messageSizeBytes}`,
      );
    }
    a.parts.push(bytes);
    a.nextSegment++;
    if (a.nextSegment < a.segmentCount) return { kind: 'pending' };
    if (a.received !== a.messageSizeBytes) {
      return this.drop(state, a.seqId, `seq ${a.seqId} carried ${a.received} of ${a.messageSizeBytes} bytes`);
    }
    let text: string;
    try {
      text = utf8.decode(Buffer.concat(a.parts, a.received));
    } catch {
      return this.drop(state, a.seqId, `seq ${a.seqId} is not valid UTF-8`);
    }
    state.lastCompletedSeq = a.seqId;
    this.clear(state);
    return { kind: 'complete', text };
  }

  private drop(state: StreamChunks, seq: number, reason: string): { kind: 'dropped'; reason: string } {
    this.clear(state);
    state.droppedSeq = seq;
    return { kind: 'dropped', reason };
  }

  private clear(state: StreamChunks): void {
    if (!state.assembly) return;
    state.assembly = undefined;
    this.assembling--;
  }
}

function headerMismatch(a: Assembly, chunk: ClientMessageChunkEnvelope): string | undefined {
  if (chunk.seq_id !== a.seqId) {
    return `segment ${chunk.segment_id} of seq ${chunk.seq_id} arrived while seq ${a.seqId} was incomplete`;
  }
  if (chunk.segment_count !== a.segmentCount || chunk.message_size_bytes !== a.messageSizeBytes) {
    return `segment ${chunk.segment_id} of seq ${a.seqId} changes segment_count or message_size_bytes`;
  }
  if (chunk.segment_id !== a.nextSegment) {
    return `out-of-order segment ${chunk.segment_id} of seq ${a.seqId} (expected ${a.nextSegment})`;
  }
  return undefined;
}

function joined(first: string | undefined, second: string): string {
  return first === undefined ? second : `${first}; ${second}`;
}
