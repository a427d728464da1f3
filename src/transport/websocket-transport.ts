/**
 * One WebSocket connection: one JSON-RPC message per text frame (codex's `--listen ws://`).
 * A binary frame is dropped with a log line and the connection stays usable; ws itself closes it
 * on a frame over max_line_bytes (1009, `maxPayload` in the listener) or text that is not UTF-8 (1007).
 * Output the client has not read (`bufferedAmount`) is bounded as stdio's is (OutputPressure):
 * past the mark the socket stops being read (ws's `pause()`, which stops the TCP reads, so the
 * client's sends block in its own TCP window), and a client that reads nothing at all is cut off.
 */
import type { WebSocket } from 'ws';
import type { Logger } from '../util/logger.js';
import { DEFAULT_MAX_PENDING_OUTPUT_BYTES, giveUpAfter, OutputPressure } from './output-pressure.js';
import type { Transport, TransportSink } from './transport.js';

export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  private reading = true;
  private readonly pressure: OutputPressure;
  /**
   * One function for every send's completion callback (no closure per message): a write that
   * completed may have brought the backlog under the mark.
   */
  private readonly onSent = () => this.pressure.update(this.socket.bufferedAmount);

  constructor(
    private readonly socket: WebSocket,
    private readonly log: Logger,
    maxPendingOutputBytes = DEFAULT_MAX_PENDING_OUTPUT_BYTES,
  ) {
    this.pressure = new OutputPressure(maxPendingOutputBytes, 'a WebSocket client', log, {
      pauseInput: () => this.socket.pause(),
      resumeInput: () => this.socket.resume(),
      // A close frame would wait behind everything unread: end the TCP connection instead.
      overflow: () => this.socket.terminate(),
    });
  }

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
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(text, this.onSent);
    this.pressure.update(this.socket.bufferedAmount);
  }

  stopReading(): void {
    this.reading = false;
  }

  /** Closes with 1001 after what is queued; terminates when the handshake is not done in time. */
  close(flushTimeoutMs?: number): Promise<void> {
    this.reading = false;
    if (this.socket.readyState === this.socket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const cancel = giveUpAfter(flushTimeoutMs, () => {
        this.log.warn(
          { droppedBytes: this.socket.bufferedAmount },
          'a WebSocket client did not close in time',
        );
        this.socket.terminate();
      });
      this.socket.once('close', () => {
        cancel();
        resolve();
      });
      // The client's close frame has to be read, even from a socket paused for backpressure.
      if (this.pressure.isPaused) this.socket.resume();
      if (this.socket.readyState !== this.socket.CLOSING) this.socket.close(1001, 'server shutting down');
    });
  }
}
