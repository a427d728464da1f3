/**
 * The remote clients of the local backend, both on a RemoteStream (remote-stream.ts):
 * `RemoteClient`, a JSON-RPC peer of an app-server in the test's own process
 * (`backend.remoteControl.openClient()`), and the out-of-process one, a plain JSON-RPC WebSocket
 * that `/__gatehouse/remote-control/client` (control-api.ts) bridges to a stream.
 */
import { WebSocket } from 'ws';
import { isObject, type RemoteMessage } from './remote-envelopes.js';
import { frameText } from './upgrade.js';
import type { RemoteRelay } from './remote-relay.js';
import type { RemoteStream, StreamSink, StreamTarget } from './remote-stream.js';
import { Waiter } from './waiter.js';

/** How long `request`, `next`, `ping` and `waitForServer` wait by default. */
export const DEFAULT_REMOTE_WAIT_MS = 10_000;

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
      message = isBinary ? undefined : JSON.parse(frameText(data));
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
