/**
 * The output bound of one stream connection. The transport reports how many bytes it has written
 * that the peer has not taken yet; this decides when to stop and restart reading the input, and
 * when to give up on the peer.
 *
 * - Past `highWaterBytes` input reading stops. The peer's writes then block on the pipe or the
 *   TCP window: real backpressure, with nothing refused, so every request already read is still
 *   answered. Reading starts again once the backlog is down to half, not at the first byte below
 *   the mark, so a peer reading slowly does not flip it on and off per message.
 * - Past `OVERFLOW_FACTOR` times the mark the peer is dropped. With input stopped, output still
 *   grows from work already accepted (answers to held requests, a turn's streamed events), which
 *   is bounded by the connection's in-flight bound; reaching four marks means the peer has stopped
 *   reading for good, and holding more would make the broker's memory the peer's to fill.
 */
import type { Logger } from '../util/logger.js';

export const OVERFLOW_FACTOR = 4;

/** `gatehouse.max_pending_output_bytes` by default: as large as the longest inbound message. */
export const DEFAULT_MAX_PENDING_OUTPUT_BYTES = 8 * 1024 * 1024;

export interface OutputPressureHooks {
  pauseInput(): void;
  resumeInput(): void;
  /** The peer left more than `OVERFLOW_FACTOR` marks unread: close it. Called once. */
  overflow(): void;
}

/** Runs `onTimeout` after `ms` (never when `ms` is undefined); returns the cancel. */
export function giveUpAfter(ms: number | undefined, onTimeout: () => void): () => void {
  if (ms === undefined) return () => undefined;
  const timer = setTimeout(onTimeout, ms);
  return () => clearTimeout(timer);
}

export class OutputPressure {
  private paused = false;
  private overflowed = false;

  constructor(
    readonly highWaterBytes: number,
    /** Who the peer is, in log lines: "the stdio host", "a WebSocket client". */
    private readonly peer: string,
    private readonly log: Logger,
    private readonly hooks: OutputPressureHooks,
  ) {}

  /** Whether input is held back because of unread output. */
  get isPaused(): boolean {
    return this.paused;
  }

  /** Call after each write and each time the backlog shrinks. */
  update(pendingBytes: number): void {
    if (this.overflowed) return;
    const limits = { pendingBytes, maxPendingOutputBytes: this.highWaterBytes };
    if (pendingBytes > this.highWaterBytes * OVERFLOW_FACTOR) {
      this.overflowed = true;
      this.log.error(limits, `${this.peer} left too much output unread: connection dropped`);
      this.hooks.overflow();
    } else if (!this.paused && pendingBytes > this.highWaterBytes) {
      this.paused = true;
      this.log.warn(limits, `${this.peer} is not reading its output: its input is no longer read`);
      this.hooks.pauseInput();
    } else if (this.paused && pendingBytes <= this.highWaterBytes / 2) {
      this.paused = false;
      this.log.info(limits, `${this.peer} caught up with its output: its input is read again`);
      this.hooks.resumeInput();
    }
  }
}
