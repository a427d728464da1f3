/**
 * Entry point of the worker pool: decodes an actor envelope, runs the behaviour for its address
 * and returns an encoded Result. Expected failures (bad input) are Results; a message no behaviour
 * knows is a bug and throws, so the owning actor's supervision sees it.
 * No top-level await here: piscina loads this module through tsx's CommonJS hook in tests.
 */
import { createActorCodec } from '../src/codec/msgpack.js';
import type { Reply } from '../src/runtime/envelope.js';
import { cryptoBehaviour } from './crypto.behaviour.js';

const codec = createActorCodec();

const behaviours: Record<string, Record<string, (body: never) => Reply>> = {
  crypto: cryptoBehaviour,
};

export function receive(bytes: Uint8Array): Uint8Array {
  const envelope = codec.decodeEnvelope(bytes);
  const behaviour = behaviours[envelope.to];
  const handler = behaviour?.[envelope.type];
  if (!handler) throw new TypeError(`no pooled behaviour handles ${envelope.to}/${envelope.type}`);
  return codec.encode(handler(envelope.body as never));
}
