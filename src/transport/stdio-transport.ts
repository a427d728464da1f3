/**
 * The stdio transport: JSON lines in on stdin, JSON lines out on stdout. The only module besides
 * the CLI that touches the process streams. Outbound lines are joined into few writes (see
 * FLUSH_CHARS). `write()`'s answer is heeded: a host that stops reading stdout stops the reading
 * of stdin (OutputPressure), with one 'drain' listener at most, and a stdout that fails (EPIPE,
 * ENOBUFS) ends the connection as stdin's EOF would, instead of crashing the process.
 */
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../util/logger.js';
import { LineFramer } from './line-framer.js';
import { DEFAULT_MAX_PENDING_OUTPUT_BYTES, giveUpAfter, OutputPressure } from './output-pressure.js';
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
  /** Set once the host cannot take output any more (stdout failed, or it overflowed). */
  private outputGone = false;
  /** The one 'drain' listener, registered while a write is waiting for the pipe. */
  private waitingForDrain = false;
  private readonly onDrain = () => {
    this.waitingForDrain = false;
    this.pressure.update(this.output.writableLength);
  };
  private readonly onOutputError = (err: NodeJS.ErrnoException) => {
    if (this.outputGone) return;
    this.log.warn({ code: err.code }, 'stdout failed: the host no longer reads it; closing the connection');
    this.hostGone();
  };
  private readonly pressure: OutputPressure;
  private readonly onData = (chunk: Buffer) => this.framer?.push(chunk);
  private readonly onEnd = () => {
    this.framer?.end();
    this.resolveEnded();
  };
  private resolveEnded!: () => void;
  /**
   * Settles when stdin reaches EOF (or stdout fails: the host is gone either way). Output stays
   * open: codex answers what it already read, then exits, so the owner drains the broker rather
   * than dropping the connection.
   */
  readonly ended = new Promise<void>((resolve) => (this.resolveEnded = resolve));
  private framer?: LineFramer;
  private sink?: TransportSink;

  constructor(
    private readonly maxLineBytes: number,
    private readonly log: Logger,
    private readonly input: Readable = process.stdin,
    private readonly output: Writable = process.stdout,
    maxPendingOutputBytes = DEFAULT_MAX_PENDING_OUTPUT_BYTES,
  ) {
    this.pressure = new OutputPressure(maxPendingOutputBytes, 'the stdio host', log, {
      pauseInput: () => this.reading && this.input.pause(),
      resumeInput: () => this.reading && this.input.resume(),
      overflow: () => {
        this.hostGone();
        this.output.destroy();
      },
    });
  }

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
    this.output.on('error', this.onOutputError);
  }

  send(text: string): void {
    if (this.outputGone) return;
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

  async close(flushTimeoutMs?: number): Promise<void> {
    this.stopReading();
    this.flush();
    if (this.outputGone || this.output.writableLength === 0) return;
    await new Promise<void>((resolve) => {
      const cancel = giveUpAfter(flushTimeoutMs, () => {
        this.log.warn({ droppedBytes: this.output.writableLength }, 'the host did not read its last output');
        this.outputGone = true;
        this.output.destroy();
        done();
      });
      const done = () => {
        cancel();
        this.output.off('close', done);
        resolve();
      };
      // Writes complete in order: an empty one completes once everything before it is written,
      // which 'drain' does not tell when the buffer never reached the stream's high-water mark.
      this.output.write('', done);
      // A stdout that fails or closes meanwhile never completes it.
      this.output.on('close', done);
    });
  }

  private flush(): void {
    if (this.queued.length === 0 || this.outputGone) return;
    const text = this.queued.join('\n') + '\n';
    this.queued = [];
    this.queuedChars = 0;
    if (!this.output.write(text) && !this.waitingForDrain) {
      this.waitingForDrain = true;
      this.output.once('drain', this.onDrain);
    }
    this.pressure.update(this.output.writableLength);
  }

  /** The host cannot take output any more: the connection ends as at stdin's EOF. */
  private hostGone(): void {
    this.outputGone = true;
    this.queued = [];
    this.queuedChars = 0;
    this.stopReading();
    this.sink?.closed();
    this.resolveEnded();
  }
}
