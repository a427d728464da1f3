/**
 * One remote client's virtual connection `(client_id, stream_id)` to an app-server, through the
 * relay (spec B.5). Its messages travel as `client_message` envelopes (or `client_message_chunk`s
 * past a size), numbered from seq_id 0; the app-server's `server_message`s come back reassembled
 * from `server_message_chunk`s, and one replayed after a reconnect (a seq_id already handled) is
 * acked but not delivered twice.
 */
import type { RemoteEnrollment } from './remote-control.js';
import { isObject, type RemoteMessage, type ServerEnvelope } from './remote-envelopes.js';
import type { EnvelopeOutcome, RemoteRelay } from './remote-relay.js';

/** Where a stream hands what arrives for it. */
export interface StreamSink {
  message(message: RemoteMessage): void;
  pong(status: string): void;
  /** The stream ended: closed by its client, or the backend closed. */
  closed(reason: Error): void;
}

/** A remote client's server and ids, checked (`RemoteRelay.resolveTarget`). */
export interface StreamTarget {
  enrollment: RemoteEnrollment;
  clientId: string;
  streamId: string;
  chunkBytes: number | undefined;
  autoAck: boolean;
}

/** One virtual connection `(client_id, stream_id)`: numbering, chunking, reassembly, dedup. */
export class RemoteStream {
  autoAck: boolean;
  ended = false;
  readonly serverId: string;
  readonly environmentId: string;
  readonly clientId: string;
  readonly streamId: string;
  private readonly chunkBytes: number | undefined;
  private nextSeq = 0;
  /** The highest server seq_id handled (delivered, or a pong). */
  private handledSeq = -1;
  private assembly:
    { seqId: number; count: number; size: number; parts: Buffer[]; bytes: number } | undefined;

  constructor(
    private readonly relay: RemoteRelay,
    target: StreamTarget,
    private readonly sink: StreamSink,
  ) {
    this.serverId = target.enrollment.serverId;
    this.environmentId = target.enrollment.environmentId;
    this.clientId = target.clientId;
    this.streamId = target.streamId;
    this.chunkBytes = target.chunkBytes;
    this.autoAck = target.autoAck;
  }

  takeSeqId(): number {
    return this.nextSeq++;
  }

  send(message: object): void {
    // A repeated initialize restarts the stream on the app-server, whose numbering starts over.
    if ((message as RemoteMessage).method === 'initialize') {
      this.handledSeq = -1;
      this.assembly = undefined;
    }
    const ids = { client_id: this.clientId, stream_id: this.streamId, seq_id: this.takeSeqId() };
    const bytes = Buffer.from(JSON.stringify(message), 'utf8');
    const size = this.chunkBytes;
    if (size === undefined || bytes.length <= size) {
      this.toServer({ type: 'client_message', ...ids, cursor: this.relay.nextCursor(), message });
      return;
    }
    const count = Math.ceil(bytes.length / size);
    for (let i = 0; i < count; i++) {
      this.toServer({
        type: 'client_message_chunk',
        ...ids,
        cursor: this.relay.nextCursor(),
        segment_id: i,
        segment_count: count,
        message_size_bytes: bytes.length,
        message_chunk_base64: bytes.subarray(i * size, (i + 1) * size).toString('base64'),
      });
    }
  }

  sendRaw(envelope: object | string): void {
    this.toServer(envelope);
  }

  ping(): void {
    this.toServer({ type: 'ping', client_id: this.clientId, stream_id: this.streamId });
  }

  /** Not queued: after a reconnect the app-server re-sends what is unacked, and is acked then. */
  ack(seqId: number, segmentId?: number): void {
    this.relay.sendToServer(
      this.serverId,
      {
        type: 'ack',
        client_id: this.clientId,
        stream_id: this.streamId,
        seq_id: seqId,
        ...(segmentId !== undefined ? { segment_id: segmentId } : {}),
      },
      false,
    );
  }

  /** Tells the app-server the client left (`client_closed`), then ends. */
  close(): void {
    if (this.ended) return;
    this.toServer({ type: 'client_closed', client_id: this.clientId, stream_id: this.streamId });
    this.end(new Error('the remote client is closed'));
  }

  end(reason: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.relay.removeStream(this);
    this.sink.closed(reason);
  }

  receive(envelope: ServerEnvelope): EnvelopeOutcome {
    if (envelope.seq_id <= this.handledSeq) return 'replayed';
    if (envelope.type === 'server_message_chunk') return this.receiveChunk(envelope);
    this.assembly = undefined; // an unfinished chunked message before this one is abandoned
    this.handledSeq = envelope.seq_id;
    if (envelope.type === 'pong') {
      this.sink.pong(envelope.status);
      return 'pong';
    }
    this.sink.message(envelope.message);
    return 'delivered';
  }

  private receiveChunk(chunk: Extract<ServerEnvelope, { type: 'server_message_chunk' }>): EnvelopeOutcome {
    let a = this.assembly;
    if (a && a.seqId === chunk.seq_id && chunk.segment_id < a.parts.length) return 'replayed';
    if (chunk.segment_id === 0) {
      a = {
        seqId: chunk.seq_id,
        count: chunk.segment_count,
        size: chunk.message_size_bytes,
        parts: [],
        bytes: 0,
      };
      this.assembly = a;
    }
    const part = decodeBase64(chunk.message_chunk_base64);
    if (
      !a ||
      a.seqId !== chunk.seq_id ||
      a.count !== chunk.segment_count ||
      a.size !== chunk.message_size_bytes ||
      chunk.segment_id !== a.parts.length ||
      !part ||
      a.bytes + part.length > a.size
    ) {
      this.assembly = undefined;
      return 'dropped';
    }
    a.parts.push(part);
    a.bytes += part.length;
    if (a.parts.length < a.count) return 'chunk';
    this.assembly = undefined;
    let message: unknown;
    try {
      message = JSON.parse(Buffer.concat(a.parts).toString('utf8'));
    } catch {
      return 'dropped';
    }
    if (a.bytes !== a.size || !isObject(message)) return 'dropped';
    this.handledSeq = chunk.seq_id;
    this.sink.message(message);
    return 'delivered';
  }

  private toServer(envelope: object | string): void {
    if (this.ended) throw new Error('the remote client is closed');
    this.relay.sendToServer(this.serverId, envelope, true);
  }
}

/** Strict standard base64 (padding included); undefined for anything else. */
function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}
