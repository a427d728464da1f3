/**
 * The one envelope codec, shared by the main thread and workers. Records are off (useRecords:
 * false) because envelopes are small and short-lived, and mismatched shared structures across a
 * thread boundary fail in confusing ways.
 *
 * An envelope is packed as a msgpack array in a fixed layout rather than as a map: its member
 * names would otherwise be written and read again on every hop, which was a good part of what a
 * hop cost. Bodies stay ordinary maps.
 *
 * `encode()` returns a view into msgpackr's pooled buffer. msgpackr never writes over bytes it
 * has returned (it starts a fresh buffer when one fills), so a view may sit in a mailbox as is.
 * It must not cross a thread as is, though: structured clone would copy the whole pooled buffer,
 * and transferring it would detach the encoder's own memory. `forThread()` makes the exact-size copy.
 */
import { Packr, addExtension } from 'msgpackr';
import type { ErrorData } from '../protocol/errors.js';
import { REPLY, type Envelope, type ReplyMessage } from '../runtime/envelope.js';

export interface ActorCodec {
  encode(value: unknown): Uint8Array;
  decode<T = unknown>(bytes: Uint8Array): T;
  encodeEnvelope(envelope: Envelope): Uint8Array;
  decodeEnvelope(bytes: Uint8Array): Envelope;
}

/**
 * The layout: `[to, type, body]`, plus `replyAddress, replyCorrelation` when a reply is wanted.
 * A reply's body `{ correlation, reply }` is itself `[correlation, ok, value | error]`.
 */
type Packed = [string, string, unknown] | [string, string, unknown, string, string | number | bigint];
type PackedReply = [string | number | bigint, boolean, unknown];

export function createActorCodec(): ActorCodec {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  return {
    encode: (value) => packr.pack(value),
    decode: <T>(bytes: Uint8Array) => packr.unpack(bytes) as T,
    encodeEnvelope: (e) => {
      const body = e.type === REPLY ? packReply(e.body as ReplyMessage) : e.body;
      const packed: Packed = e.replyTo
        ? [e.to, e.type, body, e.replyTo.address, e.replyTo.correlation]
        : [e.to, e.type, body];
      return packr.pack(packed);
    },
    decodeEnvelope: (bytes) => {
      const p = packr.unpack(bytes) as Packed;
      const body = p[1] === REPLY ? unpackReply(p[2] as PackedReply) : p[2];
      return p.length === 5
        ? { to: p[0], type: p[1], body, replyTo: { address: p[3], correlation: p[4] } }
        : { to: p[0], type: p[1], body };
    },
  };
}

function packReply({ correlation, reply }: ReplyMessage): PackedReply {
  return [correlation, reply.ok, reply.ok ? reply.value : reply.error];
}

function unpackReply([correlation, ok, outcome]: PackedReply): ReplyMessage {
  return {
    correlation,
    reply: ok ? { ok: true, value: outcome } : { ok: false, error: outcome as ErrorData },
  };
}

/**
 * Lets a message body class travel as a tuple in a fixed order rather than as a map: a body sent
 * with every request otherwise pays for its member names each time it is packed and read (for the
 * scope request, most of its bytes and of its encoding cost). Plain objects of the same shape
 * still travel as maps. msgpackr's extensions are global to a thread: the module that defines the
 * class registers it once, and a thread that reads such a body must have loaded that module.
 * Types 0x10 to 0x1f are ours (msgpackr's own extension types are outside that range).
 */
export function packAsTuple<T extends object, W extends unknown[]>(
  type: number,
  Class: abstract new (...args: never[]) => T,
  toTuple: (value: T) => W,
  fromTuple: (tuple: W) => T,
): void {
  addExtension({ Class, type, write: toTuple, read: fromTuple });
}

/** An exact-size copy of encoded bytes, safe to post to another thread. */
export function forThread(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
