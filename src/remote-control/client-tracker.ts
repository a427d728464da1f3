/**
 * The remote clients relayed over the remote-control socket (spec B.5), each `(client_id,
 * stream_id)` turned into an ordinary broker connection. A stream opens with an `initialize`
 * request and lives until the client closes it, the broker closes its transport, it restarts with
 * a new `initialize`, or it stays idle too long. Outbound envelopes are numbered per stream and
 * kept until the backend acknowledges them, so that a socket lost and reopened loses nothing:
 * the socket owner calls `detach()` and `attach()` and everything unacknowledged is sent again
 * under its original `seq_id`. This module holds no socket; it is pure bookkeeping around the
 * `write` function it is handed.
 */
import { ErrorCode, OVERLOADED_MESSAGE } from '../protocol/errors.js';
import { classifyMessage, encodeError } from '../protocol/jsonrpc.js';
import type { RequestId } from '../protocol/request-id.js';
import type { Transport, TransportSink } from '../transport/transport.js';
import type { Logger } from '../util/logger.js';
import {
  type AckEnvelope,
  type ClientEnvelope,
  type PongStatus,
  type StreamKey,
  encodePong,
  encodeServerMessage,
  parseClientEnvelope,
  streamMapKey,
} from './envelopes.js';
import { ClientChunkReassembler, type OutboundFrame, serverMessageFrames } from './segments.js';

/** Spec B.3: a remote client silent this long is disconnected, checked this often. */
export const REMOTE_CLIENT_IDLE_TIMEOUT_MS = 10 * 60_000;
export const REMOTE_CLIENT_SWEEP_INTERVAL_MS = 30_000;

export interface TrackerTimers {
  now(): number;
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface ClientTrackerOptions {
  /** Attaches a new virtual connection to the broker (`broker.connect`). May throw (shutting down). */
  connect(transport: Transport): void;
  log: Logger;
  /** Streams open at once; an `initialize` beyond it is answered with -32001 and opens nothing. */
  maxClients: number;
  /** Per stream, bytes of unacknowledged outbound frames kept for replay; past it the stream is closed. */
  maxUnackedBytes: number;
  idleTimeoutMs: number;
  sweepIntervalMs: number;
  /** Default: `Date.now` and unref'd real intervals. */
  timers?: TrackerTimers;
}

const REAL_TIMERS: TrackerTimers = {
  now: () => Date.now(),
  setInterval: (callback, ms) => setInterval(callback, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/**
 * Outbound numbering of keys without an open stream is remembered for a while (codex answers a
 * ping before `initialize` with pong 1 and the initialize result with 2, and a stream that
 * restarts keeps counting up, so the backend never sees a `seq_id` go back); at most this many.
 */
const MAX_REMEMBERED_COUNTERS = 4096;

/** One remote client's virtual JSON-RPC connection, as the broker sees it. */
export class RemoteControlTransport implements Transport {
  readonly kind = 'remote-control';
  private sink?: TransportSink;
  /** Inbound messages that arrived before `start`. */
  private early: string[] = [];
  private reading = true;
  private ended = false;

  constructor(
    readonly clientId: string,
    readonly streamId: string,
    private readonly link: { send(text: string): void; close(): void },
  ) {}

  start(sink: TransportSink): void {
    this.sink = sink;
    for (const text of this.early.splice(0)) this.deliver(text);
  }

  send(text: string): void {
    if (!this.ended) this.link.send(text);
  }

  stopReading(): void {
    this.reading = false;
  }

  /** Frames are written (or kept for replay) as they are sent, so there is nothing to flush. */
  close(): Promise<void> {
    if (!this.ended) this.link.close();
    return Promise.resolve();
  }

  /** Tracker side: one inbound JSON-RPC message text. */
  deliver(text: string): void {
    if (this.ended || !this.reading) return;
    if (this.sink) this.sink.message(text);
    else this.early.push(text);
  }

  /** Tracker side: the stream is gone; the connection hears it once. */
  peerClosed(): void {
    if (this.ended) return;
    this.ended = true;
    this.early = [];
    this.sink?.closed();
  }
}

interface Unacked extends OutboundFrame {
  seqId: number;
}

interface Stream {
  readonly id: string;
  readonly key: StreamKey;
  readonly transport: RemoteControlTransport;
  lastInboundSeq: number;
  lastActivityAt: number;
  nextSeq: number;
  /** In (seq_id, segment_id) order, so an ack always releases a prefix. */
  unacked: Unacked[];
  unackedBytes: number;
}

export class ClientTracker {
  private readonly streams = new Map<string, Stream>();
  private readonly counters = new Map<string, { next: number; at: number }>();
  private readonly chunks: ClientChunkReassembler;
  private readonly timers: TrackerTimers;
  private readonly log: Logger;
  private write?: (frame: string) => void;
  private latestCursor?: string;
  private sweepHandle?: unknown;

  constructor(private readonly options: ClientTrackerOptions) {
    this.timers = options.timers ?? REAL_TIMERS;
    this.log = options.log;
    // Room for a chunked message on every open stream and as many chunked openings in flight.
    this.chunks = new ClientChunkReassembler(Math.max(1, 2 * options.maxClients));
  }

  /** The backend socket is open. Re-sends every unacknowledged frame, stream by stream in seq order. */
  attach(write: (frame: string) => void): void {
    this.write = write;
    let replayed = 0;
    for (const stream of this.streams.values()) {
      for (const entry of stream.unacked) {
        this.emit(entry.frame);
        replayed++;
      }
    }
    if (replayed > 0) this.log.info({ frames: replayed }, 'remote control: re-sent unacknowledged frames');
  }

  /** The socket is gone: streams and unacknowledged frames stay for the next `attach`. */
  detach(): void {
    this.write = undefined;
  }

  /** One text frame from the backend. Never throws; bad frames are logged (never their content) and dropped. */
  receive(text: string): void {
    try {
      const parsed = parseClientEnvelope(text);
      if (!parsed.ok) {
        this.log.warn(
          { reason: parsed.reason, bytes: Buffer.byteLength(text) },
          'remote control: dropped an invalid frame',
        );
        return;
      }
      this.handle(parsed.envelope, text);
    } catch (e) {
      this.log.error(
        { err: e instanceof Error ? e.name : typeof e },
        'remote control: frame handling failed',
      );
    } finally {
      this.ensureSweep();
    }
  }

  /** The latest `cursor` carried by a client envelope (the next handshake's `x-codex-subscribe-cursor`). */
  get cursor(): string | undefined {
    return this.latestCursor;
  }

  /** Open streams. */
  get size(): number {
    return this.streams.size;
  }

  /** Closes every stream (remote control disabled, broker shutting down); their connections see `closed()`. */
  closeAll(): void {
    for (const stream of [...this.streams.values()]) this.forget(stream, 'remote control closed');
    this.counters.clear();
    this.chunks.forgetIdle(Number.POSITIVE_INFINITY);
    this.stopSweep();
  }

  private handle(envelope: ClientEnvelope, text: string): void {
    if (envelope.cursor !== undefined) this.latestCursor = envelope.cursor;
    const key: StreamKey = { clientId: envelope.client_id, streamId: envelope.stream_id };
    const id = streamMapKey(key.clientId, key.streamId);
    const stream = this.streams.get(id);
    const now = this.timers.now();
    switch (envelope.type) {
      case 'client_message':
        this.inbound(
          id,
          key,
          envelope.seq_id,
          envelope.messageText,
          envelope.message.method === 'initialize',
        );
        return;
      case 'client_message_chunk': {
        if (stream) stream.lastActivityAt = now;
        const outcome = this.chunks.accept(envelope, Buffer.byteLength(text), now);
        const ids = { ...key, seq: envelope.seq_id, segment: envelope.segment_id };
        if (outcome.kind === 'dropped') {
          this.log.warn({ ...ids, reason: outcome.reason }, 'remote control: dropped a chunked message');
        } else if (outcome.kind === 'ignored') {
          this.log.debug({ ...ids, reason: outcome.reason }, 'remote control: ignored a chunk');
        } else if (outcome.abandoned !== undefined) {
          this.log.warn({ ...ids, reason: outcome.abandoned }, 'remote control: dropped a chunked message');
        }
        if (outcome.kind === 'complete') this.inbound(id, key, envelope.seq_id, outcome.text, true);
        return;
      }
      case 'ack':
        if (stream) this.release(stream, envelope);
        return;
      case 'ping':
        if (stream) stream.lastActivityAt = now;
        this.pong(id, key, stream ? 'active' : 'unknown');
        return;
      case 'client_closed':
        if (stream) this.forget(stream, 'client closed');
        this.chunks.forget(key.clientId, key.streamId);
        return;
    }
  }

  /**
   * One complete inbound message. `mayInitialize` is false when the parsed envelope already
   * shows another method, which spares parsing the text a second time.
   */
  private inbound(id: string, key: StreamKey, seqId: number, text: string, mayInitialize: boolean): void {
    const existing = this.streams.get(id);
    const initializeId = mayInitialize ? initializeRequestId(text) : undefined;
    if (initializeId === undefined) {
      if (!existing) {
        // Nowhere to go; a chunked one leaves no memory behind for a stream that does not exist.
        this.chunks.forget(key.clientId, key.streamId);
        this.log.debug({ ...key, seq: seqId }, 'remote control: dropped a message for an unknown stream');
        return;
      }
      if (seqId <= existing.lastInboundSeq) {
        this.log.debug(
          { ...key, seq: seqId, last: existing.lastInboundSeq },
          'remote control: ignored a repeated seq',
        );
        return;
      }
      existing.lastInboundSeq = seqId;
      existing.lastActivityAt = this.timers.now();
      existing.transport.deliver(text);
      return;
    }
    if (existing) {
      this.forget(existing, 'restarted by a new initialize');
    } else if (this.streams.size >= this.options.maxClients) {
      this.log.warn({ ...key, open: this.streams.size }, 'remote control: refused a stream, too many open');
      const answer = encodeError(initializeId, { code: ErrorCode.Overloaded, message: OVERLOADED_MESSAGE });
      this.emit(encodeServerMessage(key, this.takeSeq(id), answer));
      return;
    }
    this.open(id, key, seqId, text);
  }

  private open(id: string, key: StreamKey, seqId: number, initializeText: string): void {
    const remembered = this.counters.get(id);
    this.counters.delete(id);
    const stream: Stream = {
      id,
      key,
      transport: new RemoteControlTransport(key.clientId, key.streamId, {
        send: (text) => this.outbound(stream, text),
        close: () => this.forget(stream, 'closed by the broker'),
      }),
      lastInboundSeq: seqId,
      lastActivityAt: this.timers.now(),
      nextSeq: remembered?.next ?? 1,
      unacked: [],
      unackedBytes: 0,
    };
    this.streams.set(id, stream);
    try {
      this.options.connect(stream.transport);
    } catch (e) {
      this.streams.delete(id);
      this.remember(id, stream.nextSeq);
      this.log.warn(
        { ...key, err: e instanceof Error ? e.message : typeof e },
        'remote control: the broker refused a stream',
      );
      return;
    }
    this.log.info({ ...key }, 'remote control: stream opened');
    stream.transport.deliver(initializeText);
  }

  /** One JSON-RPC message text from the broker to a remote client. */
  private outbound(stream: Stream, text: string): void {
    if (this.streams.get(stream.id) !== stream) return;
    const seqId = stream.nextSeq++;
    const segmented = serverMessageFrames(stream.key, seqId, text);
    if (!segmented.ok) {
      this.log.warn(
        { ...stream.key, seq: seqId, reason: segmented.reason },
        'remote control: message cannot be sent',
      );
      this.forget(stream, 'outbound message too large');
      return;
    }
    for (const frame of segmented.frames) {
      stream.unacked.push({ ...frame, seqId });
      stream.unackedBytes += frame.bytes;
    }
    if (stream.unackedBytes > this.options.maxUnackedBytes) {
      this.log.warn(
        { ...stream.key, unackedBytes: stream.unackedBytes, limit: this.options.maxUnackedBytes },
        'remote control: too much unacknowledged output',
      );
      this.forget(stream, 'unacknowledged output above the limit');
      return;
    }
    for (const frame of segmented.frames) this.emit(frame.frame);
  }

  /** Releases what an ack covers: everything up to `(seq_id, segment_id)`, all of `seq_id` without a segment. */
  private release(stream: Stream, ack: AckEnvelope): void {
    const covered = (e: Unacked) =>
      e.seqId < ack.seq_id ||
      (e.seqId === ack.seq_id && (ack.segment_id === undefined || (e.segmentId ?? 0) <= ack.segment_id));
    let n = 0;
    while (n < stream.unacked.length && covered(stream.unacked[n]!)) {
      stream.unackedBytes -= stream.unacked[n]!.bytes;
      n++;
    }
    stream.unacked.splice(0, n);
  }

  /** Pongs are not kept: a lost one is answered by the client's next ping. */
  private pong(id: string, key: StreamKey, status: PongStatus): void {
    this.emit(encodePong(key, this.takeSeq(id), status));
  }

  private takeSeq(id: string): number {
    const stream = this.streams.get(id);
    if (stream) return stream.nextSeq++;
    const next = this.counters.get(id)?.next ?? 1;
    this.remember(id, next + 1);
    return next;
  }

  private remember(id: string, next: number): void {
    this.counters.delete(id); // re-inserted last: the map's order is least recently used first
    this.counters.set(id, { next, at: this.timers.now() });
    if (this.counters.size > MAX_REMEMBERED_COUNTERS) {
      const oldest = this.counters.keys().next();
      if (!oldest.done) this.counters.delete(oldest.value);
    }
  }

  /** Closes a stream: forgotten here first, so that whatever the sink does next finds it gone. */
  private forget(stream: Stream, reason: string): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.remember(stream.id, stream.nextSeq);
    this.chunks.forget(stream.key.clientId, stream.key.streamId);
    this.log.info(
      { ...stream.key, reason, unackedFrames: stream.unacked.length },
      'remote control: stream closed',
    );
    stream.transport.peerClosed();
  }

  private emit(frame: string): void {
    if (!this.write) return;
    try {
      this.write(frame);
    } catch (e) {
      // Kept frames go again on the next attach; the socket owner sees its own failure.
      this.log.warn({ err: e instanceof Error ? e.message : typeof e }, 'remote control: write failed');
    }
  }

  private sweep(): void {
    const cutoff = this.timers.now() - this.options.idleTimeoutMs;
    for (const stream of [...this.streams.values()]) {
      if (stream.lastActivityAt <= cutoff) this.forget(stream, 'idle');
    }
    this.chunks.forgetIdle(cutoff);
    for (const [id, counter] of this.counters) if (counter.at <= cutoff) this.counters.delete(id);
    if (this.streams.size === 0 && this.chunks.size === 0 && this.counters.size === 0) this.stopSweep();
  }

  /** The sweep runs only while there is something to sweep. */
  private ensureSweep(): void {
    if (this.sweepHandle !== undefined) return;
    if (this.streams.size === 0 && this.chunks.size === 0 && this.counters.size === 0) return;
    this.sweepHandle = this.timers.setInterval(() => {
      try {
        this.sweep();
      } catch (e) {
        this.log.error({ err: e instanceof Error ? e.name : typeof e }, 'remote control: idle sweep failed');
      }
    }, this.options.sweepIntervalMs);
  }

  private stopSweep(): void {
    if (this.sweepHandle === undefined) return;
    this.timers.clearInterval(this.sweepHandle);
    this.sweepHandle = undefined;
  }
}

/** The id of an `initialize` request, when that is what `text` is. */
function initializeRequestId(text: string): RequestId | undefined {
  const message = classifyMessage(text);
  return message.kind === 'request' && message.method === 'initialize' ? message.id : undefined;
}
