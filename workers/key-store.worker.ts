/**
 * A key-store worker: one provider session and a state-database connection, kept for the life of
 * the thread and reached through comlink (src/runtime/thread-host.ts). Private keys stay in the
 * device; this thread only ever holds handles to them. Answers are encoded Results, so errors
 * cross the thread as data with their codes intact.
 * No top-level await: under tsx this module is loaded by the bootstrap's dynamic import.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { expose } from 'comlink';
import { createActorCodec } from '../src/codec/msgpack.js';
import { toErrorData } from '../src/protocol/errors.js';
import { nodeEndpoint } from '../src/runtime/comlink-node.js';
import type { Reply } from '../src/runtime/envelope.js';
import type { ThreadWorkerApi } from '../src/runtime/thread-host.js';
import { KeyStore, type KeyStoreSetup } from '../src/device-key/key-store.js';
import { KeyStoreMessage } from '../src/device-key/key-store-messages.js';

const codec = createActorCodec();
const setup = (workerData as { setup: KeyStoreSetup }).setup;
let store: KeyStore | undefined;

async function answer(work: () => Promise<unknown>): Promise<Uint8Array> {
  let reply: Reply;
  try {
    reply = { ok: true, value: await work() };
  } catch (e) {
    reply = { ok: false, error: toErrorData(e) };
  }
  // An exact-size copy: the codec's pooled buffer must not cross the thread.
  return new Uint8Array(codec.encode(reply));
}

const api: ThreadWorkerApi = {
  open: () =>
    answer(async () => {
      store ??= await KeyStore.open(setup);
      return null;
    }),
  receive: (bytes) =>
    answer(async () => {
      const envelope = codec.decodeEnvelope(bytes);
      if (!store) throw new Error('the key store is not open');
      switch (envelope.type) {
        case KeyStoreMessage.create:
          return store.create(envelope.body as never);
        case KeyStoreMessage.public:
          return store.public(envelope.body as never);
        case KeyStoreMessage.sign:
          return store.sign(envelope.body as never);
        default:
          throw new TypeError(`the key store has no message ${envelope.type}`);
      }
    }),
  close: async () => {
    try {
      await store?.close();
    } finally {
      process.exit(0);
    }
  },
  exit: (code) => process.exit(code),
};

expose(api, nodeEndpoint(parentPort!));
