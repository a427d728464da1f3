/**
 * Addresses, delivery and asks. `tell` and `ask` look the same whether the receiver is a
 * behaviour in this thread or a worker-hosted actor: both get the same msgpackr envelope.
 */
import { BrokerError, fromErrorData } from '../protocol/errors.js';
import { createActorCodec, type ActorCodec } from '../codec/msgpack.js';
import type { Logger } from '../util/logger.js';
import { DEFAULT_SUPERVISION, type ActorContext, type Behaviour, type SpawnOptions } from './actor.js';
import { ActorCell, type ActorHost, type CellEvents } from './actor-cell.js';
import { REPLY, type Envelope, type Reply, type ReplyMessage, type ReplyTo } from './envelope.js';

/** The reserved address whose "mailbox" is the table of pending asks. */
const ASK = '$ask';
export const DEFAULT_MAILBOX_CAPACITY = 4096;

export interface ActorSystemOptions {
  log: Logger;
  defaultCapacity?: number;
  onEscalation?: (address: string, error: unknown) => void;
}

export interface ActorSystemStats {
  actors: number;
  /** Actors by the first segment of their address (`connection`, `wire`, `thread`, `scope`, ...). */
  byKind: Record<string, number>;
  /** Envelopes queued and not yet started. */
  mailboxEntries: number;
  /** Messages being processed. */
  running: number;
  /** Processed requests whose reply is still to come (a turn, a server request...). */
  awaitingReplies: number;
  /** `ask()` promises not yet settled. */
  pendingAsks: number;
}

export class ActorSystem {
  readonly codec: ActorCodec = createActorCodec();
  private readonly cells = new Map<string, ActorCell>();
  private readonly asks = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private nextAsk = 0;
  private readonly log: Logger;
  private readonly defaultCapacity: number;
  /** Shared by every cell (one object, not one per actor: idle connections should be cheap). */
  private readonly cellEvents: CellEvents;

  constructor(private readonly options: ActorSystemOptions) {
    this.log = options.log;
    this.defaultCapacity = options.defaultCapacity ?? DEFAULT_MAILBOX_CAPACITY;
    this.cellEvents = {
      deliverReply: (replyTo, reply) => this.deliverReply(replyTo, reply),
      escalate: (addr, error) => {
        this.cells.delete(addr);
        this.options.onEscalation?.(addr, error);
      },
    };
  }

  /** Spawns an actor whose behaviour runs in this thread; `create` is called again on restart. */
  spawn(address: string, create: () => Behaviour, options: SpawnOptions = {}): void {
    this.spawnHost(address, new BehaviourHost(create, { self: address, system: this }), options);
  }

  /** Spawns an actor backed by another host (for example a task in the worker pool). */
  spawnHost(address: string, host: ActorHost, options: SpawnOptions = {}): void {
    if (this.cells.has(address)) throw new BrokerError('INVALID_INPUT', `actor ${address} already exists`);
    const cell = new ActorCell(
      address,
      host,
      options.capacity ?? this.defaultCapacity,
      options.concurrency ?? 1,
      options.supervision ? { ...DEFAULT_SUPERVISION, ...options.supervision } : DEFAULT_SUPERVISION,
      this.cellEvents,
      this.log,
    );
    this.cells.set(address, cell);
  }

  has(address: string): boolean {
    return this.cells.has(address);
  }

  mailboxDepth(address: string): number {
    return this.cells.get(address)?.depth ?? 0;
  }

  /** Counts over every actor, for diagnostics: a leak shows as a count that only grows. */
  stats(): ActorSystemStats {
    const byKind: Record<string, number> = {};
    let mailboxEntries = 0;
    let running = 0;
    let awaitingReplies = 0;
    for (const [address, cell] of this.cells) {
      const kind = address.split('/', 1)[0]!;
      byKind[kind] = (byKind[kind] ?? 0) + 1;
      mailboxEntries += cell.depth;
      running += cell.running;
      awaitingReplies += cell.awaitingReplies;
    }
    return {
      actors: this.cells.size,
      byKind,
      mailboxEntries,
      running,
      awaitingReplies,
      pendingAsks: this.asks.size,
    };
  }

  /**
   * Fire-and-forget. Throws MAILBOX_FULL past the receiver's bound (unless `force`, kept for answers
   * to work already accepted) and ACTOR_NOT_FOUND when nobody lives at the address.
   */
  tell(to: string, type: string, body: unknown, replyTo?: ReplyTo, force = false): void {
    const cell = this.cells.get(to);
    if (!cell) throw new BrokerError('ACTOR_NOT_FOUND', `no actor at ${to}`);
    const envelope: Envelope = replyTo ? { to, type, body, replyTo } : { to, type, body };
    cell.enqueue(this.codec.encodeEnvelope(envelope), replyTo, force);
  }

  /** Request/response between actors; the promise settles with the receiver's reply. */
  ask<T = unknown>(to: string, type: string, body: unknown): Promise<T> {
    const correlation = this.nextAsk++;
    return new Promise<T>((resolve, reject) => {
      this.asks.set(correlation, { resolve, reject });
      try {
        this.tell(to, type, body, { address: ASK, correlation });
      } catch (e) {
        this.asks.delete(correlation);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** Routes a reply to the pending ask or to the actor that asked. Replies are never refused. */
  deliverReply(replyTo: ReplyTo, reply: Reply): void {
    if (replyTo.address === ASK) {
      const pending = this.asks.get(replyTo.correlation as number);
      if (!pending) return;
      this.asks.delete(replyTo.correlation as number);
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(fromErrorData(reply.error));
      return;
    }
    const cell = this.cells.get(replyTo.address);
    if (!cell || cell.isStopped) {
      this.log.debug({ to: replyTo.address }, 'reply dropped: the asking actor is gone');
      return;
    }
    const body: ReplyMessage = { correlation: replyTo.correlation, reply };
    cell.enqueue(this.codec.encodeEnvelope({ to: replyTo.address, type: REPLY, body }), undefined, true);
  }

  /** Stops an actor; whatever it still held gets an ACTOR_STOPPED error reply. */
  stop(address: string): void {
    const cell = this.cells.get(address);
    if (!cell) return;
    this.cells.delete(address);
    cell.stop();
  }

  stopAll(): void {
    for (const address of [...this.cells.keys()]) this.stop(address);
    for (const [, pending] of this.asks)
      pending.reject(new BrokerError('ACTOR_STOPPED', 'actor system stopped'));
    this.asks.clear();
  }
}

/** Runs a behaviour in this thread: decodes each envelope and hands the message to it. */
class BehaviourHost implements ActorHost {
  private behaviour: Behaviour;

  constructor(
    private readonly create: () => Behaviour,
    private readonly ctx: ActorContext,
  ) {
    this.behaviour = create();
  }

  process(bytes: Uint8Array): unknown {
    return this.behaviour.receive(this.ctx.system.codec.decodeEnvelope(bytes), this.ctx);
  }

  restart(): void {
    this.behaviour.stopped?.();
    this.behaviour = this.create();
  }

  stop(): void {
    this.behaviour.stopped?.();
  }
}
