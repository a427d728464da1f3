/**
 * One WebSocket connection: one JSON-RPC message per text frame (codex's `--listen ws://`).
 * Binary frames and oversized frames are refused by closing with the matching status code.
 */
import type { WebSocket } from 'ws';
import type { Logger } from '../util/logger.js';
import type { Transport, TransportSink } from './transport.js';

export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  private reading = true;

  constructor(
    private readonly socket: WebSocket,
    private readonly log: Logger,
  ) {}

  start(sink: TransportSink): void {
    this.socket.on('message', (data, isBinary) => {
      if (!this.reading) return;
      if (isBinary) {
        this.log.error('dropped a binary WebSocket frame: messages are JSON text frames');
        return;
      }
      sink.message(
        Buffer.isBuffer(data)
          ? data.toString('utf8')
          : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'),
      );
    });
    this.socket.on('close', () => sink.closed());
    this.socket.on('error', (err) => this.log.warn({ err: err.message }, 'WebSocket error'));
  }

  send(text: string): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(text);
  }

  stopReading(): void {
    this.reading = false;
  }

  close(): Promise<void> {
    this.reading = false;
    if (this.socket.readyState === this.socket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close(1001, 'server shutting down');
    });
  }
}
