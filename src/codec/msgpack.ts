/**
 * The one envelope codec, shared by the main thread and workers. Records are off (useRecords:
 * false) because envelopes are small and short-lived, and mismatched shared structures across a
 * thread boundary fail in confusing ways. `pack()` returns a view of a reused buffer, so every
 * encoded envelope is copied into a buffer its owner keeps.
 */
import { Packr } from 'msgpackr';

export interface ActorCodec {
  encode(value: unknown): Uint8Array;
  decode<T = unknown>(bytes: Uint8Array): T;
}

export function createActorCodec(): ActorCodec {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  return {
    encode: (value) => new Uint8Array(packr.pack(value)),
    decode: <T>(bytes: Uint8Array) => packr.unpack(bytes) as T,
  };
}
