/**
 * In-process connections for hosts that embed the broker: the host holds an InProcessClient and
 * exchanges messages with its connection without a child process or a socket. Messages still pass
 * through the same classification as stdio lines, so behaviour is identical.
 */
import { EventEmitter } from 'eventemitter3';
import type { Transport, TransportSink } from './transport.js';

export interface InProcessClientEvents {
  /** One message from the server, parsed. */
  message: (message: Record<string, unknown>) => void;
  close: () => void;
}

export class InProcessClient extends EventEmitter<InProcessClientEvents> {
  constructor(
    readonly connectionId: string,
    private readonly transport: InProcessTransport,
  ) {
    super();
  }

  /** Sends one message: an object (serialized to JSON) or the JSON text itself. */
  send(message: object | string): void {
    this.transport.deliver(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Closes the connection as a client going away would. */
  close(): void {
    this.transport.peerClosed();
  }
}

export class InProcessTransport implements Transport {
  readonly kind = 'in-process';
  private sink?: TransportSink;
  private reading = true;
  private closed = false;
  client?: InProcessClient;

  start(sink: TransportSink): void {
    this.sink = sink;
  }

  deliver(text: string): void {
    if (this.reading && !this.closed) this.sink?.message(text);
  }

  peerClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.sink?.closed();
    this.client?.emit('close');
  }

  send(text: string): void {
    if (!this.closed) this.client?.emit('message', JSON.parse(text) as Record<string, unknown>);
  }

  stopReading(): void {
    this.reading = false;
  }

  close(): Promise<void> {
    this.peerClosed();
    return Promise.resolve();
  }
}
