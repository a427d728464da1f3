/**
 * `backend.remoteControl` and what is behind it: the relay between the remote clients
 * (remote-client.ts) and the enrolled app-servers' sockets (remote-control-socket.ts). It keeps
 * one socket per server, queues client envelopes for a server that has none and sends them in
 * order when one is accepted, hands each server envelope to its stream (remote-stream.ts), and
 * records in `serverEnvelopes` what became of it.
 *
 * The backend does not replay its own envelopes from `x-codex-subscribe-cursor` (it is recorded
 * with the handshake): an envelope written to a socket that then breaks is lost.
 */
import { WebSocket } from 'ws';
import { DEFAULT_REMOTE_WAIT_MS, RemoteClient } from './remote-client.js';
import type { RemoteEnrollment, RemoteEnrollments } from './remote-control.js';
import type { ServerEnvelope } from './remote-envelopes.js';
import { RemoteStream, type StreamSink, type StreamTarget } from './remote-stream.js';
import { MAX_RECORDED_REQUESTS } from './request-log.js';
import { Waiter } from './waiter.js';

/** An enrollment as `servers()` shows it: the enroll request's fields and the socket's state. */
export interface RemoteServerInfo extends RemoteEnrollment {
  /** Whether the server holds a socket now. */
  connected: boolean;
  /** Sockets accepted for this server so far (a reconnection makes it 2, ...). */
  connections: number;
}

export interface RemoteClientOptions {
  /** The server's environment; default: the one connected server (throws when not exactly one). */
  environmentId?: string;
  /** Default `cli_<n>`. */
  clientId?: string;
  /** Default `stream-<n>`. */
  streamId?: string;
  /** Send messages larger than this many bytes (UTF-8 JSON) as `client_message_chunk`s. */
  chunkBytes?: number;
  /** Ack each server envelope (default true). */
  autoAck?: boolean;
}

/**
 * What became of an envelope from the app-server: `delivered` (a message handed to its client,
 * or the last chunk completing one), `chunk` (a segment kept for later), `pong`, `replayed` (a
 * seq_id or segment already handled: acked, not delivered again), `dropped` (a chunk out of order,
 * of the wrong size or bad base64: the assembly is abandoned), `unknown-stream` (no such client),
 * `lost` (a `remote.ws.envelope` fault took it before it was handled).
 */
export type EnvelopeOutcome =
  'delivered' | 'chunk' | 'pong' | 'replayed' | 'dropped' | 'unknown-stream' | 'lost';

export interface ServerEnvelopeRecord {
  at: number;
  serverId: string;
  type: ServerEnvelope['type'];
  clientId: string;
  streamId: string;
  seqId: number;
  segmentId?: number;
  segmentCount?: number;
  outcome: EnvelopeOutcome;
  /** Whether the backend acked it. */
  acked: boolean;
}

/** `backend.remoteControl`: the remote-control state of the local backend, for tests and load tools. */
export interface RemoteControl {
  /** Lifetime of the tokens issued from now on (default 3600; 0 issues already expired ones). */
  tokenTtlSec: number;
  servers(): RemoteServerInfo[];
  /**
   * Deletes the enrollment and cuts the server's socket: refresh and handshake now answer 404
   * `{"detail":"Remote app server not found"}`. False when no such server.
   */
  forget(serverId: string): boolean;
  /** Every token issued so far is expired: the next handshake with one gets 401. Open sockets stay. */
  expireTokens(): void;
  /** Destroys every server socket at the TCP level (no close frame), as a network failure would. */
  dropSockets(): void;
  /** Resolves with the first connected server that satisfies the predicate (any when none given). */
  waitForServer(
    predicate?: (server: RemoteServerInfo) => boolean,
    timeoutMs?: number,
  ): Promise<RemoteServerInfo>;
  /** A remote client of a server (throws RemoteClientError when the server or ids are wrong). */
  openClient(options?: RemoteClientOptions): RemoteClient;
  /** Every envelope the app-servers sent, oldest first, the newest 10,000; empty it with `length = 0`. */
  readonly serverEnvelopes: ServerEnvelopeRecord[];
}

export class RemoteClientError extends Error {
  override name = 'RemoteClientError';
  constructor(
    /** The status the out-of-process endpoint refuses the upgrade with. */
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

/** The remote clients, the servers' sockets and the envelopes between them. */
export class RemoteRelay implements RemoteControl {
  readonly serverEnvelopes: ServerEnvelopeRecord[] = [];
  private readonly sockets = new Map<string, WebSocket>();
  private readonly connectionCounts = new Map<string, number>();
  /** Envelopes for a server that has no socket, sent in order when one is accepted. */
  private readonly queued = new Map<string, string[]>();
  private readonly streams = new Map<string, RemoteStream>();
  private readonly serverWaiters = new Set<{
    predicate: (server: RemoteServerInfo) => boolean;
    waiter: Waiter<RemoteServerInfo>;
  }>();
  private clientCount = 0;
  private cursorCount = 0;
  private closed = false;

  constructor(private readonly enrollments: RemoteEnrollments) {}

  get tokenTtlSec(): number {
    return this.enrollments.tokenTtlSec;
  }

  set tokenTtlSec(seconds: number) {
    this.enrollments.tokenTtlSec = seconds;
  }

  servers(): RemoteServerInfo[] {
    return this.enrollments.list().map((e) => this.info(e));
  }

  forget(serverId: string): boolean {
    if (!this.enrollments.forget(serverId)) return false;
    this.queued.delete(serverId);
    const ws = this.sockets.get(serverId);
    if (ws) {
      this.detach(serverId, ws);
      ws.terminate();
    }
    return true;
  }

  expireTokens(): void {
    this.enrollments.expireAll();
  }

  dropSockets(): void {
    for (const [serverId, ws] of [...this.sockets]) {
      this.detach(serverId, ws);
      ws.terminate(); // destroys the TCP socket: no close frame, no TLS close_notify
    }
  }

  waitForServer(
    predicate: (server: RemoteServerInfo) => boolean = () => true,
    timeoutMs: number = DEFAULT_REMOTE_WAIT_MS,
  ): Promise<RemoteServerInfo> {
    const ready = this.servers().find((s) => s.connected && predicate(s));
    if (ready) return Promise.resolve(ready);
    if (this.closed) return Promise.reject(new Error('the local backend is closed'));
    const entry = {
      predicate,
      waiter: new Waiter<RemoteServerInfo>(timeoutMs, 'no app-server connected', () =>
        this.serverWaiters.delete(entry),
      ),
    };
    this.serverWaiters.add(entry);
    return entry.waiter.promise;
  }

  openClient(options: RemoteClientOptions = {}): RemoteClient {
    const target = this.resolveTarget(options);
    return new RemoteClient((sink) => this.openStream(target, sink));
  }

  /** Checks a client's options and picks its server and ids (throws RemoteClientError). */
  resolveTarget(options: RemoteClientOptions): StreamTarget {
    if (this.closed) throw new RemoteClientError(404, 'the local backend is closed');
    const { chunkBytes } = options;
    if (chunkBytes !== undefined && !(Number.isInteger(chunkBytes) && chunkBytes >= 1)) {
      throw new RemoteClientError(400, `chunkBytes must be a positive integer, not ${chunkBytes}`);
    }
    let enrollment: RemoteEnrollment | undefined;
    if (options.environmentId !== undefined) {
      enrollment = this.enrollments.byEnvironment(options.environmentId);
      if (!enrollment) {
        throw new RemoteClientError(
          404,
          `no enrolled app-server has environment id ${JSON.stringify(options.environmentId)}`,
        );
      }
    } else {
      const connected = this.enrollments.list().filter((e) => this.sockets.has(e.serverId));
      if (connected.length !== 1) {
        throw new RemoteClientError(
          connected.length === 0 ? 404 : 409,
          `${connected.length === 0 ? 'no app-server is' : `${connected.length} app-servers are`} connected: ` +
            'name the environment id',
        );
      }
      enrollment = connected[0]!;
    }
    const n = ++this.clientCount;
    const clientId = options.clientId ?? `cli_${n}`;
    const streamId = options.streamId ?? `stream-${n}`;
    if (clientId === '' || streamId === '') {
      throw new RemoteClientError(400, 'client and stream ids must not be empty');
    }
    this.assertFree(clientId, streamId);
    return { enrollment, clientId, streamId, chunkBytes, autoAck: options.autoAck ?? true };
  }

  /** A stream for a resolved target; fails when the target went away since it was resolved. */
  openStream(target: StreamTarget, sink: StreamSink): RemoteStream {
    if (this.closed || !this.enrollments.get(target.enrollment.serverId)) {
      throw new RemoteClientError(404, 'the app-server is no longer enrolled');
    }
    this.assertFree(target.clientId, target.streamId);
    const stream = new RemoteStream(this, target, sink);
    this.streams.set(streamKey(target.clientId, target.streamId), stream);
    return stream;
  }

  /** A server socket was accepted: it replaces an older one, and gets what was queued. */
  attach(serverId: string, ws: WebSocket): void {
    if (this.closed || !this.enrollments.get(serverId)) {
      ws.terminate();
      return;
    }
    const older = this.sockets.get(serverId);
    if (older) older.terminate();
    this.sockets.set(serverId, ws);
    this.connectionCounts.set(serverId, (this.connectionCounts.get(serverId) ?? 0) + 1);
    const queued = this.queued.get(serverId) ?? [];
    this.queued.delete(serverId);
    for (const text of queued) ws.send(text);
    const info = this.servers().find((s) => s.serverId === serverId)!;
    for (const entry of this.serverWaiters) {
      if (entry.predicate(info)) {
        this.serverWaiters.delete(entry);
        entry.waiter.resolve(info);
      }
    }
  }

  /** The socket is gone (a newer one may already have replaced it: then nothing changes). */
  detach(serverId: string, ws: WebSocket): void {
    if (this.sockets.get(serverId) === ws) this.sockets.delete(serverId);
  }

  /** Sends to the server's socket; with `queue`, keeps the envelope until there is one. */
  sendToServer(serverId: string, envelope: object | string, queue: boolean): void {
    const text = typeof envelope === 'string' ? envelope : JSON.stringify(envelope);
    const ws = this.sockets.get(serverId);
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(text);
    else if (queue && !this.closed && this.enrollments.get(serverId)) {
      const pending = this.queued.get(serverId) ?? [];
      pending.push(text);
      this.queued.set(serverId, pending);
    }
  }

  nextCursor(): string {
    return `cur_${++this.cursorCount}`;
  }

  /** Hands an envelope to its stream; says whether it should be acked. */
  receive(serverId: string, envelope: ServerEnvelope): { outcome: EnvelopeOutcome; ack: boolean } {
    const stream = this.streams.get(streamKey(envelope.client_id, envelope.stream_id));
    // Envelopes for a client that is gone are acked all the same: nobody else will, and the
    // app-server would keep them for ever.
    if (!stream || stream.serverId !== serverId) return { outcome: 'unknown-stream', ack: true };
    return { outcome: stream.receive(envelope), ack: stream.autoAck };
  }

  record(serverId: string, envelope: ServerEnvelope, outcome: EnvelopeOutcome, acked: boolean): void {
    this.serverEnvelopes.push({
      at: Date.now(),
      serverId,
      type: envelope.type,
      clientId: envelope.client_id,
      streamId: envelope.stream_id,
      seqId: envelope.seq_id,
      ...(envelope.type === 'server_message_chunk'
        ? { segmentId: envelope.segment_id, segmentCount: envelope.segment_count }
        : {}),
      outcome,
      acked,
    });
    if (this.serverEnvelopes.length > MAX_RECORDED_REQUESTS) {
      this.serverEnvelopes.splice(0, this.serverEnvelopes.length - MAX_RECORDED_REQUESTS);
    }
  }

  removeStream(stream: RemoteStream): void {
    const key = streamKey(stream.clientId, stream.streamId);
    if (this.streams.get(key) === stream) this.streams.delete(key);
  }

  /** Ends every client and wait, and clears their timers (the sockets are the server's to close). */
  close(): void {
    this.closed = true;
    const reason = new Error('the local backend closed');
    for (const stream of [...this.streams.values()]) stream.end(reason);
    for (const entry of this.serverWaiters) entry.waiter.reject(reason);
    this.serverWaiters.clear();
    this.queued.clear();
    this.sockets.clear();
  }

  private assertFree(clientId: string, streamId: string): void {
    if (this.streams.has(streamKey(clientId, streamId))) {
      throw new RemoteClientError(409, `client ${clientId} already has a stream ${streamId} open`);
    }
  }

  private info(e: RemoteEnrollment): RemoteServerInfo {
    return {
      ...e,
      connected: this.sockets.has(e.serverId),
      connections: this.connectionCounts.get(e.serverId) ?? 0,
    };
  }
}

function streamKey(clientId: string, streamId: string): string {
  return JSON.stringify([clientId, streamId]);
}
