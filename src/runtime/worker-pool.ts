/**
 * The piscina pool and the host that lets an actor live in it. Under tsx (tests, dev) the pool
 * loads the `.ts` worker and inherits tsx's loader; built code loads the compiled `.js`.
 * piscina is loaded when the first pool is made, not at start-up: the broker makes its pool on the
 * first task, and an app-server answering `initialize` needs neither the module nor its threads.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type { Piscina } from 'piscina';
import { fromErrorData } from '../protocol/errors.js';
import { forThread, type ActorCodec } from '../codec/msgpack.js';
import type { ActorHost } from './actor-cell.js';
import type { Reply } from './envelope.js';

const WORKER = '../../workers/actor.worker.js';

/** Built code runs the compiled worker; under tsx a bootstrap loads the TypeScript source. */
function workerEntry(): { filename: string; workerData?: { tsWorker: string } } {
  if (!import.meta.url.endsWith('.ts')) return { filename: new URL(WORKER, import.meta.url).href };
  return {
    filename: new URL('../../workers/tsx-bootstrap.mjs', import.meta.url).href,
    workerData: { tsWorker: new URL(WORKER.replace(/\.js$/, '.ts'), import.meta.url).href },
  };
}

export function createWorkerPool(options: { maxThreads?: number } = {}): Piscina {
  const maxThreads = options.maxThreads ?? Math.max(1, Math.min(4, availableParallelism()));
  const { Piscina } = createRequire(import.meta.url)('piscina') as typeof import('piscina');
  return new Piscina({
    ...workerEntry(),
    minThreads: 1,
    maxThreads,
    concurrentTasksPerWorker: 4,
    idleTimeout: 30_000,
  });
}

/**
 * Hosts an actor in the pool: each envelope becomes one task, and the worker answers with an
 * encoded Result. A Result error is an ordinary error reply; a task that throws or whose worker
 * dies is a failure for supervision (piscina replaces the worker, so a restart has nothing to do).
 */
export function poolHost(pool: Piscina, codec: ActorCodec): ActorHost {
  return lazyPoolHost(() => pool, codec);
}

/** `poolHost` for a pool made on first use: `pool()` is called for every task and makes it once. */
export function lazyPoolHost(pool: () => Piscina, codec: ActorCodec): ActorHost {
  return {
    process: async (bytes) => {
      const out = (await pool().run(forThread(bytes), { name: 'receive' })) as Uint8Array;
      const reply = codec.decode<Reply>(out);
      if (reply.ok) return reply.value;
      throw fromErrorData(reply.error);
    },
    restart: () => {},
    stop: () => {},
  };
}
