import type { ErrorData } from '../protocol/errors.js';

/** Where a reply goes: an actor address plus the correlation the receiver uses to match it. */
export interface ReplyTo {
  address: string;
  correlation: string | number | bigint;
}

/** Every message between actors, in a thread or across one, is this, encoded with msgpackr. */
export interface Envelope {
  to: string;
  type: string;
  body: unknown;
  replyTo?: ReplyTo;
}

export type Reply = { ok: true; value: unknown } | { ok: false; error: ErrorData };

/** The body of a `reply` envelope delivered to an actor that asked. */
export interface ReplyMessage {
  correlation: string | number | bigint;
  reply: Reply;
}

export const REPLY = 'reply';
