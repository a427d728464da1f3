/**
 * The stdio transport: JSON lines in on stdin, JSON lines out on stdout. The only module besides
 * the CLI that touches the process streams. Outbound lines are joined into few writes (see
 * FLUSH_CHARS).
 */
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../util/logger.js';
import { LineFramer } from './line-framer.js';
import type { Transport, TransportSink } from './transport.js';

/**
 * Output is written once per turn of the event loop, or as soon as this much is queued. A large
 * input chunk then answers in a few writes instead of one at the very end, so the host starts on
 * the first answers (and sends the next requests) while later ones are still being computed:
 * about a fifth more `account/read` per second at 64 in flight, and no change at 1000.
 */
const FLUSH_CHARS = 8 * 1024;

export class StdioTransport implements Transport {
  readonly kind = 'stdio';
  private queued: string[] = [];
  private queuedChars = 0;
  private flushScheduled = false;
  private reading = false;
  private readonly onData = (chunk: Buffer) => this.framer?.push(chunk);
  private readonly onEnd = () => {
    this.framer?.end();
    this.resolveEnded();
  };
  private resolveEnded!: () => void;
  /**
   * Settles when stdin reaches EOF. Output stays open: codex answers what it already read, then
   * exits, so the owner drains the broker rather than dropping the connection.
   */
  readonly ended = new Promise<void>((resolve) => (this.resolveEnded = resolve));
  private framer?: LineFramer;
  private sink?: TransportSink;

  constructor(
    private readonly maxLineBytes: number,
    private readonly log: Logger,
    private readonly input: Readable = process.stdin,
    private readonly output: Writable = process.stdout,
  ) {}

  start(sink: TransportSink): void {
    this.sink = sink;
    this.framer = new LineFramer(this.maxLineBytes, {
      line: (text) => sink.message(text),
      dropped: (reason, bytes) =>
        this.log.error(
          { reason, bytes, maxLineBytes: this.maxLineBytes },
          reason === 'oversized'
            ? 'dropped a line longer than max_line_bytes'
            : 'dropped a line that is not valid UTF-8',
        ),
    });
    this.reading = true;
    this.input.on('data', this.onData);
    this.input.on('end', this.onEnd);
    this.input.on('error', this.onEnd);
  }

  send(text: string): void {
    this.queued.push(text);
    this.queuedChars += text.length;
    if (this.queuedChars >= FLUSH_CHARS) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  stopReading(): void {
    if (!this.reading) return;
    this.reading = false;
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    this.input.pause();
  }

  async close(): Promise<void> {
    this.stopReading();
    this.flush();
    if (this.output.writableNeedDrain) {
      await new Promise<void>((resolve) => this.output.once('drain', resolve));
    }
  }

  private flush(): void {
    if (this.queued.length === 0) return;
    const text = this.queued.join('\n') + '\n';
    this.queued = [];
    this.queuedChars = 0;
    this.output.write(text);
  }
}
