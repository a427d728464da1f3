/**
 * The backend's side of remote control (spec B.2, B.5): the server WebSocket an enrolled
 * app-server holds (`GET /backend-api/wham/remote/control/server` with an upgrade), and the remote
 * clients the backend relays to it. This is the other party of Gatehouse's remote-control
 * transport, written from the spec alone so that the two are checked against each other rather
 * than against a shared misreading.
 *
 * - The handshake takes an issued, unexpired remote-control token (remote-control.ts decides),
 *   after the `remote.ws` faults; one socket per server, a newer one terminates the older.
 * - A `RemoteClient` is a virtual JSON-RPC connection `(client_id, stream_id)`: its messages
 *   travel as `client_message` envelopes (or `client_message_chunk`s), numbered from seq_id 0,
 *   queued while the server has no socket. The app-server's `server_message`s come back
 *   reassembled from `server_message_chunk`s, each envelope acked unless the client says not,
 *   and one replayed after a reconnect (a seq_id already handled) is acked but not delivered twice.
 * - Every envelope the app-server sends is recorded twice: in `requests` under
 *   `remote.ws.envelope`, and in `serverEnvelopes` with what became of it.
 * - Out of process, `/__gatehouse/remote-control/client` (control-api.ts) bridges a plain
 *   JSON-RPC WebSocket to a remote client.
 *
 * The backend does not replay its own envelopes from `x-codex-subscribe-cursor` (it is recorded
 * with the handshake): an envelope written to a socket that then breaks is lost.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData, type WebSocketServer } from 'ws';
import { noteRequest, type BackendState } from './exchange.js';
import { reasonBody, refuseUpgrade, sleep } from './http-io.js';
import type { RemoteEnrollment, RemoteEnrollments } from './remote-control.js';
import { MAX_RECORDED_REQUESTS } from './request-log.js';

/** How long `request`, `next`, `ping` and `waitForServer` wait by default. */
export const DEFAULT_REMOTE_WAIT_MS = 10_000;
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

export interface RemoteServerInfo {
  serverId: string;
  environmentId: string;
  name: string;
  installationId: string;
  accountId: string;
  os: string;
  arch: string;
  appServerVersion: string;
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

export async function handleRemoteControlUpgrade(
  state: BackendState,
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  socket.on('error', () => socket.destroy()); // a peer that resets mid-handshake is not our error
  const path = req.url ?? '/';
  const note = (status: number) =>
    noteRequest(state, {
      route: 'remote.ws',
      method: req.method ?? 'GET',
      path,
      status,
      headers: req.headers,
    });

  const fault = state.faults.take('remote.ws');
  let budget = Infinity;
  if (fault?.kind === 'slow' && !(await sleep(fault.delayMs, state.signal))) {
    socket.destroy();
    return;
  }
  if (fault?.kind === 'status') {
    note(fault.status);
    const headers: Record<string, string> =
      fault.retryAfterSec === undefined ? {} : { 'retry-after': String(fault.retryAfterSec) };
    refuseUpgrade(socket, fault.status, fault.body ?? reasonBody(fault.status), headers);
    return;
  }
  if (fault?.kind === 'disconnect') {
    if (!fault.afterEvents) {
      note(0);
      socket.destroy();
      return;
    }
    budget = fault.afterEvents;
  }

  const serverId = req.headers['x-codex-server-id'];
  const admission = state.remoteEnrollments.admit(
    req.headers.authorization,
    typeof serverId === 'string' ? serverId : undefined,
  );
  if (!admission.ok) {
    note(admission.status);
    refuseUpgrade(socket, admission.status, JSON.stringify({ detail: admission.detail }));
    return;
  }
  if (socket.destroyed) return;
  note(101);
  const id = admission.enrollment.serverId;
  wss.handleUpgrade(req, socket, head, (ws) => new ServerSocketSession(state, ws, id, path, budget));
}

/** Text frames of one server socket, handled one after the other (a `slow` fault holds the rest). */
class ServerSocketSession {
  private queue: Promise<void> = Promise.resolve();
  private received = 0;

  constructor(
    private readonly state: BackendState,
    private readonly ws: WebSocket,
    private readonly serverId: string,
    private readonly path: string,
    /** Envelopes after which a `remote.ws` disconnect fault cuts the socket (Infinity: none). */
    private readonly budget: number,
  ) {
    const relay = state.remoteRelay;
    relay.attach(serverId, ws);
    ws.on('message', (data, isBinary) => {
      this.queue = this.queue
        .then(() => this.serve(data, isBinary))
        .catch((e: unknown) => {
          state.log.error({ err: (e as Error).message }, 'local backend: remote-control socket failed');
          ws.terminate();
        });
    });
    ws.on('close', () => relay.detach(serverId, ws));
    ws.on('error', () => ws.terminate());
  }

  private async serve(data: RawData, isBinary: boolean): Promise<void> {
    // Binary frames carry nothing in this protocol; the app-server ignores them too.
    if (isBinary || this.ws.readyState !== WebSocket.OPEN) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawText(data));
    } catch {
      parsed = undefined;
    }
    this.received += 1;
    const cutAfterThis = this.received >= this.budget;
    const envelope = parseServerEnvelope(parsed);
    if (!envelope) {
      this.note(400, parsed ?? rawText(data));
      if (cutAfterThis) this.cut();
      return;
    }

    const relay = this.state.remoteRelay;
    const fault = this.state.faults.take('remote.ws.envelope');
    if (fault?.kind === 'status' || fault?.kind === 'disconnect') {
      this.note(fault.kind === 'status' ? fault.status : 0, envelope);
      relay.record(this.serverId, envelope, 'lost', false);
      if (fault.kind === 'disconnect' || cutAfterThis) this.cut();
      return;
    }
    if (fault?.kind === 'slow' && !(await sleep(fault.delayMs, this.state.signal))) return;

    this.note(200, envelope);
    const { outcome, ack } = relay.receive(this.serverId, envelope);
    // The envelope that exhausts a disconnect budget is handled but not acked: the app-server
    // must send it again after reconnecting (spec B.5).
    const acked = ack && !cutAfterThis && this.ws.readyState === WebSocket.OPEN;
    if (acked) this.ws.send(JSON.stringify(ackFor(envelope)));
    relay.record(this.serverId, envelope, outcome, acked);
    if (cutAfterThis) this.cut();
  }

  private cut(): void {
    this.state.remoteRelay.detach(this.serverId, this.ws);
    this.ws.terminate();
  }

  private note(status: number, body: unknown): void {
    noteRequest(this.state, {
      route: 'remote.ws.envelope',
      method: 'WS',
      path: this.path,
      status,
      headers: {},
      body,
    });
  }
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

function parseServerEnvelope(value: unknown): ServerEnvelope | undefined {
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
function ackFor(envelope: ServerEnvelope): Record<string, unknown> {
  return {
    type: 'ack',
    client_id: envelope.client_id,
    stream_id: envelope.stream_id,
    seq_id: envelope.seq_id,
    ...(envelope.type === 'server_message_chunk' ? { segment_id: envelope.segment_id } : {}),
  };
}

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
      serverId: e.serverId,
      environmentId: e.environmentId,
      name: e.name,
      installationId: e.installationId,
      accountId: e.accountId,
      os: e.os,
      arch: e.arch,
      appServerVersion: e.appServerVersion,
      connected: this.sockets.has(e.serverId),
      connections: this.connectionCounts.get(e.serverId) ?? 0,
    };
  }
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

/**
 * A remote client in the test's process: a JSON-RPC peer of the app-server, through the
 * backend. Request ids are numbers from 1; give messages sent with `send()` other ids (strings).
 */
export class RemoteClient {
  /** Every JSON-RPC message from the app-server, in order, responses included. */
  readonly received: RemoteMessage[] = [];
  private readonly stream: RemoteStream;
  private readonly inbox: RemoteMessage[] = [];
  private readonly nextWaiters: Waiter<RemoteMessage>[] = [];
  private readonly pingWaiters: Waiter<string>[] = [];
  private readonly pending = new Map<number, Waiter<RemoteMessage>>();
  private lastRequestId = 0;

  /** Made by `backend.remoteControl.openClient()`. */
  constructor(open: (sink: StreamSink) => RemoteStream) {
    this.stream = open({
      message: (message) => this.onMessage(message),
      pong: (status) => this.pingWaiters.shift()?.resolve(status),
      closed: (reason) => {
        for (const w of [...this.pending.values(), ...this.nextWaiters, ...this.pingWaiters])
          w.reject(reason);
        this.pending.clear();
        this.nextWaiters.length = 0;
        this.pingWaiters.length = 0;
      },
    });
  }

  get clientId(): string {
    return this.stream.clientId;
  }

  get streamId(): string {
    return this.stream.streamId;
  }

  get environmentId(): string {
    return this.stream.environmentId;
  }

  get serverId(): string {
    return this.stream.serverId;
  }

  /** Whether server envelopes of this client are acked as they arrive (default true). */
  get autoAck(): boolean {
    return this.stream.autoAck;
  }

  set autoAck(on: boolean) {
    this.stream.autoAck = on;
  }

  get closed(): boolean {
    return this.stream.ended;
  }

  /** Sends a JSON-RPC message (chunked past `chunkBytes`); queued while the server has no socket. */
  send(message: object): void {
    this.stream.send(message);
  }

  /** Sends an envelope as given (an object is serialised, a string sent verbatim): for fault tests. */
  sendEnvelope(envelope: object | string): void {
    this.stream.sendRaw(envelope);
  }

  /** Reserves the next client seq_id, for an envelope built by hand. */
  nextSeqId(): number {
    return this.stream.takeSeqId();
  }

  /** Sends a request and resolves with its response (a result or an error message). */
  request(
    method: string,
    params?: unknown,
    timeoutMs: number = DEFAULT_REMOTE_WAIT_MS,
  ): Promise<RemoteMessage> {
    const id = ++this.lastRequestId;
    const waiter = new Waiter<RemoteMessage>(timeoutMs, `no response to ${method} (id ${id})`, () =>
      this.pending.delete(id),
    );
    this.pending.set(id, waiter);
    try {
      this.stream.send({ id, method, ...(params !== undefined ? { params } : {}) });
    } catch (e) {
      this.pending.delete(id);
      waiter.reject(e as Error);
    }
    return waiter.promise;
  }

  /** The next message that is not the response to a `request()`: notifications, server requests. */
  next(timeoutMs: number = DEFAULT_REMOTE_WAIT_MS): Promise<RemoteMessage> {
    const ready = this.inbox.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closed) return Promise.reject(new Error('the remote client is closed'));
    const waiter = new Waiter<RemoteMessage>(timeoutMs, 'no message from the app-server', () =>
      this.nextWaiters.splice(this.nextWaiters.indexOf(waiter), 1),
    );
    this.nextWaiters.push(waiter);
    return waiter.promise;
  }

  /** Sends a `ping` envelope; resolves with the pong's status (`active` or `unknown`). */
  ping(timeoutMs: number = DEFAULT_REMOTE_WAIT_MS): Promise<string> {
    const waiter = new Waiter<string>(timeoutMs, 'no pong', () =>
      this.pingWaiters.splice(this.pingWaiters.indexOf(waiter), 1),
    );
    this.pingWaiters.push(waiter);
    try {
      this.stream.ping();
    } catch (e) {
      this.pingWaiters.pop();
      waiter.reject(e as Error);
    }
    return waiter.promise;
  }

  /** Acks a server envelope by hand (with `autoAck` off); dropped when the server has no socket. */
  ack(seqId: number, segmentId?: number): void {
    this.stream.ack(seqId, segmentId);
  }

  /** Sends `client_closed`; pending requests and waits are rejected. */
  close(): void {
    this.stream.close();
  }

  private onMessage(message: RemoteMessage): void {
    this.received.push(message);
    const isResponse = message.method === undefined && ('result' in message || 'error' in message);
    const waiter = isResponse && typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (waiter) {
      this.pending.delete(message.id as number);
      waiter.resolve(message);
      return;
    }
    const next = this.nextWaiters.shift();
    if (next) next.resolve(message);
    else this.inbox.push(message);
  }
}

/**
 * The out-of-process remote client: a WebSocket peer speaking plain JSON-RPC, one message per
 * text frame, wrapped into envelopes and back. Closing it sends `client_closed`.
 */
export function bridgeRemoteClient(relay: RemoteRelay, ws: WebSocket, target: StreamTarget): void {
  let stream: RemoteStream;
  try {
    stream = relay.openStream(target, {
      message: (message) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
      },
      pong: () => {},
      closed: () => ws.close(1001, 'remote client ended'),
    });
  } catch {
    // Only when the server was forgotten, or the ids taken, since the upgrade was accepted.
    ws.close(1011, 'the remote client could not be opened');
    return;
  }
  ws.on('message', (data, isBinary) => {
    if (stream.ended) return;
    let message: unknown;
    try {
      message = isBinary ? undefined : JSON.parse(rawText(data));
    } catch {
      message = undefined;
    }
    if (!isObject(message)) {
      ws.close(1007, 'each text frame must be one JSON-RPC message (a JSON object)');
      return;
    }
    stream.send(message);
  });
  ws.on('close', () => stream.close());
  ws.on('error', () => ws.terminate());
}

/** A promise settled once, by its owner or by a timeout (whose timer dies with it). */
class Waiter<T> {
  readonly promise: Promise<T>;
  private settle!: { resolve: (value: T) => void; reject: (reason: Error) => void };
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number, what: string, onTimeout: () => void) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.timer = setTimeout(() => {
      onTimeout();
      this.settle.reject(new Error(`${what} within ${timeoutMs} ms`));
    }, timeoutMs);
  }

  resolve(value: T): void {
    clearTimeout(this.timer);
    this.settle.resolve(value);
  }

  reject(reason: Error): void {
    clearTimeout(this.timer);
    this.settle.reject(reason);
  }
}

function streamKey(clientId: string, streamId: string): string {
  return JSON.stringify([clientId, streamId]);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Strict standard base64 (padding included); undefined for anything else. */
function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
}
