import type { ActorSystem } from './actor-system.js';
import type { ReplyTo } from './envelope.js';

export interface Message<B = unknown> {
  type: string;
  body: B;
  replyTo?: ReplyTo;
}

export interface ActorContext {
  readonly self: string;
  readonly system: ActorSystem;
}

/**
 * An actor's behaviour. `receive` handles one message at a time, in mailbox order; what it
 * returns is the reply (awaited when it is a promise, which holds the mailbox until it settles).
 * Return `later(promise)` to reply when the promise settles without holding the mailbox.
 * Throwing a ProtocolError or BrokerError is an ordinary error reply; anything else is a failure
 * that the actor's supervision handles.
 */
export interface Behaviour {
  receive(message: Message, ctx: ActorContext): unknown;
  /** Called once when the actor stops (normally or after escalation). */
  stopped?(): void;
}

export class Later {
  constructor(readonly promise: Promise<unknown>) {}
}

export function later(promise: Promise<unknown>): Later {
  return new Later(promise);
}

export interface Supervision {
  /** restart: replace the behaviour and keep the mailbox; escalate: stop and report upward. */
  strategy: 'restart' | 'escalate';
  /** Restarts allowed within `windowMs` before a failure escalates anyway. */
  maxRestarts: number;
  windowMs: number;
}

export const DEFAULT_SUPERVISION: Supervision = { strategy: 'restart', maxRestarts: 5, windowMs: 10_000 };

export interface SpawnOptions {
  /** Mailbox bound; past it, `tell` fails with MAILBOX_FULL (the client sees -32001). */
  capacity?: number;
  /** Messages processed at once; 1 keeps strict order (stateless pool actors may use more). */
  concurrency?: number;
  supervision?: Partial<Supervision>;
}
