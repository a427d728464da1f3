/**
 * The one envelope codec, shared by the main thread and workers. Records are off (useRecords:
 * false) because envelopes are small and short-lived, and mismatched shared structures across a
 * thread boundary fail in confusing ways.
 *
 * `encode()` returns a view into msgpackr's pooled buffer. msgpackr never writes over bytes it
 * has returned (it starts a fresh buffer when one fills), so a view may sit in a mailbox as is.
 * It must not cross a thread as is, though: structured clone would copy the whole pooled buffer,
 * and transferring it would detach the encoder's own memory. `forThread()` makes the exact-size copy.
 */
import { Packr } from 'msgpackr';

export interface ActorCodec {
  encode(value: unknown): Uint8Array;
  decode<T = unknown>(bytes: Uint8Array): T;
}

export function createActorCodec(): ActorCodec {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  return {
    encode: (value) => packr.pack(value),
    decode: <T>(bytes: Uint8Array) => packr.unpack(bytes) as T,
  };
}

/** An exact-size copy of encoded bytes, safe to post to another thread. */
export function forThread(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
