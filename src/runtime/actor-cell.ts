/**
 * One actor's mailbox and its processing loop: bounded, ordered, supervised. The cell holds
 * encoded envelopes; its host decides how one is processed (a behaviour in this thread, or a task
 * in the worker pool), so senders never know where an actor runs.
 */
import { BrokerError, isBrokerError, isProtocolError, toErrorData } from '../protocol/errors.js';
import type { Logger } from '../util/logger.js';
import { Later, type Supervision } from './actor.js';
import type { Reply, ReplyTo } from './envelope.js';

export interface ActorHost {
  /** Processes one encoded envelope; returns the reply value, a promise of it, or a Later. */
  process(bytes: Uint8Array): unknown;
  /** Replaces failed state (a new behaviour instance); pool hosts have none to replace. */
  restart(): void;
  stop(): void;
}

interface Entry {
  bytes: Uint8Array;
  replyTo: ReplyTo | undefined;
}

export interface CellEvents {
  deliverReply(replyTo: ReplyTo, reply: Reply): void;
  escalate(address: string, error: unknown): void;
}

export class ActorCell {
  private queue: Entry[] = [];
  private head = 0;
  private active = 0;
  private scheduled = false;
  private pumping = false;
  private stopped = false;
  // Made on first use: most cells never restart, and an idle connection's cells should cost little.
  private restarts?: number[];
  /** Replies promised by `later()` that have not settled yet. */
  private pendingLater?: Set<ReplyTo>;

  constructor(
    readonly address: string,
    private readonly host: ActorHost,
    private readonly capacity: number,
    private readonly concurrency: number,
    private readonly supervision: Supervision,
    private readonly events: CellEvents,
    private readonly log: Logger,
  ) {}

  get depth(): number {
    return this.queue.length - this.head;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Messages being processed now (for diagnostics). */
  get running(): number {
    return this.active;
  }

  /** Requests processed whose reply waits on a promise (`later()`), for diagnostics. */
  get awaitingReplies(): number {
    return this.pendingLater?.size ?? 0;
  }

  /** `force` is for replies: answers to work already accepted are never refused. */
  enqueue(bytes: Uint8Array, replyTo: ReplyTo | undefined, force = false): void {
    if (this.stopped) throw new BrokerError('ACTOR_STOPPED', `actor ${this.address} is stopped`);
    if (!force && this.depth >= this.capacity) {
      throw new BrokerError('MAILBOX_FULL', `mailbox of ${this.address} is full (${this.capacity})`);
    }
    this.queue.push({ bytes, replyTo });
    this.schedule();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.failHeld(new BrokerError('ACTOR_STOPPED', `actor ${this.address} stopped`));
    this.host.stop();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    // A message settled synchronously goes back to this loop rather than into a nested pump: a
    // mailbox of thousands (a burst of connections all initializing) once overflowed the stack.
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.stopped && this.active < this.concurrency && this.head < this.queue.length) {
        const entry = this.queue[this.head++]!;
        if (this.head === this.queue.length) {
          // Drained: drop the processed entries at once, so an idle actor holds no envelope bytes
          // (each is a view that keeps one of the codec's 8 KB buffers alive).
          this.queue.length = 0;
          this.head = 0;
        } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        this.active++;
        this.run(entry);
      }
    } finally {
      this.pumping = false;
    }
  }

  private run(entry: Entry): void {
    let out: unknown;
    try {
      out = this.host.process(entry.bytes);
    } catch (e) {
      this.settle(entry, e, false);
      return;
    }
    if (out instanceof Later) {
      this.settle(entry, undefined, true, out.promise);
    } else if (out instanceof Promise) {
      out.then(
        (v: unknown) => this.settle(entry, v, true),
        (e: unknown) => this.settle(entry, e, false),
      );
    } else {
      this.settle(entry, out, true);
    }
  }

  private settle(entry: Entry, valueOrError: unknown, ok: boolean, later?: Promise<unknown>): void {
    this.active--;
    if (later) {
      if (entry.replyTo) this.awaitLater(entry.replyTo, later);
      else
        later.catch((e: unknown) =>
          this.log.warn({ actor: this.address, err: describe(e) }, 'unanswered failure'),
        );
    } else if (ok) {
      if (entry.replyTo) this.events.deliverReply(entry.replyTo, { ok: true, value: valueOrError });
    } else if (isProtocolError(valueOrError) || isBrokerError(valueOrError)) {
      if (entry.replyTo)
        this.events.deliverReply(entry.replyTo, { ok: false, error: toErrorData(valueOrError) });
    } else {
      this.fail(entry, valueOrError);
    }
    if (!this.stopped) this.pump();
  }

  private awaitLater(replyTo: ReplyTo, promise: Promise<unknown>): void {
    (this.pendingLater ??= new Set()).add(replyTo);
    promise.then(
      (value: unknown) => this.deliverLater(replyTo, { ok: true, value }),
      (e: unknown) => this.deliverLater(replyTo, { ok: false, error: toErrorData(e) }),
    );
  }

  private deliverLater(replyTo: ReplyTo, reply: Reply): void {
    // After an escalation the held request was already answered with an error.
    if (!this.pendingLater?.delete(replyTo)) return;
    this.events.deliverReply(replyTo, reply);
  }

  /** An unexpected error: the held request gets an error reply, then supervision decides. */
  private fail(entry: Entry, error: unknown): void {
    this.log.error({ actor: this.address, err: describe(error) }, 'actor failed while processing a message');
    if (entry.replyTo) {
      this.events.deliverReply(entry.replyTo, {
        ok: false,
        error: toErrorData(new BrokerError('ACTOR_FAILED', `actor ${this.address} failed`)),
      });
    }
    const now = Date.now();
    this.restarts = (this.restarts ?? []).filter((t) => now - t < this.supervision.windowMs);
    if (this.supervision.strategy === 'restart' && this.restarts.length < this.supervision.maxRestarts) {
      this.restarts.push(now);
      this.log.warn({ actor: this.address, restarts: this.restarts.length }, 'restarting actor');
      this.host.restart();
      return;
    }
    this.stopped = true;
    this.failHeld(new BrokerError('ACTOR_FAILED', `actor ${this.address} failed and was stopped`));
    this.host.stop();
    this.events.escalate(this.address, error);
  }

  /** Every request the actor still holds gets an error reply: never silence. */
  private failHeld(error: BrokerError): void {
    const data = toErrorData(error);
    for (let i = this.head; i < this.queue.length; i++) {
      const replyTo = this.queue[i]!.replyTo;
      if (replyTo) this.events.deliverReply(replyTo, { ok: false, error: data });
    }
    this.queue = [];
    this.head = 0;
    if (!this.pendingLater) return;
    for (const replyTo of this.pendingLater) this.events.deliverReply(replyTo, { ok: false, error: data });
    this.pendingLater = undefined;
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
