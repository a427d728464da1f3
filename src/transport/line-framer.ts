/**
 * JSON-lines framing over raw bytes. A line is cut at `\n` (a trailing `\r` is dropped), checked
 * for valid UTF-8, and handed on as text. A line longer than `maxLineBytes` is never buffered
 * whole: once it passes the bound its bytes are discarded up to the next newline and it is
 * reported as dropped. Partial lines are kept as a list of chunks, so a long line arriving in many
 * small chunks costs linear time.
 */
import { isUtf8 } from 'node:buffer';

export interface FramerEvents {
  line(text: string): void;
  /** A line was dropped; `bytes` is its length (at least maxLineBytes + 1 when oversized). */
  dropped(reason: 'oversized' | 'invalid-utf8', bytes: number): void;
}

export class LineFramer {
  private pieces: Buffer[] = [];
  private pending = 0;
  private discarding = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly events: FramerEvents,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.finishLine(chunk.subarray(start, nl));
      start = nl + 1;
    }
    if (start < chunk.length) this.keep(chunk.subarray(start));
  }

  /** End of input: a final line without a newline still counts. */
  end(): void {
    if (this.pending > 0 || this.discarding) this.finishLine(Buffer.alloc(0));
  }

  private keep(part: Buffer): void {
    if (this.discarding) {
      this.pending += part.length;
      return;
    }
    if (this.pending + part.length > this.maxLineBytes) {
      this.discarding = true;
      this.pending += part.length;
      this.pieces = [];
      return;
    }
    this.pieces.push(Buffer.from(part)); // copy: the stream may reuse its chunk
    this.pending += part.length;
  }

  private finishLine(tail: Buffer): void {
    if (this.discarding || this.pending + tail.length > this.maxLineBytes) {
      const bytes = this.pending + tail.length;
      this.reset();
      this.events.dropped('oversized', bytes);
      return;
    }
    let line = this.pieces.length === 0 ? tail : Buffer.concat([...this.pieces, tail]);
    this.reset();
    if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
    if (line.length === 0) return;
    if (!isUtf8(line)) {
      this.events.dropped('invalid-utf8', line.length);
      return;
    }
    this.events.line(line.toString('utf8'));
  }

  private reset(): void {
    this.pieces = [];
    this.pending = 0;
    this.discarding = false;
  }
}
