/**
 * The piscina pool and the host that lets an actor live in it. Under tsx (tests, dev) the pool
 * loads the `.ts` worker and inherits tsx's loader; built code loads the compiled `.js`.
 * piscina is loaded when the first pool is made, not at start-up: the broker makes its pool on the
 * first task, and an app-server answering `initialize` needs neither the module nor its threads.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type { Piscina } from 'piscina';
import { BrokerError, fromErrorData } from '../protocol/errors.js';
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
  // Every thread starts with the pool and stays: with fewer kept, threads started under load and
  // ended after an idle spell, each start costing a busy moment and some 10 MiB of RSS, which the
  // soak's memory check read as growth (+5.15% when the second thread came mid-window).
  const pool = new Piscina({
    ...workerEntry(),
    minThreads: maxThreads,
    maxThreads,
    concurrentTasksPerWorker: 4,
  });
  failQueuedTasksWhenStranded(pool);
  return pool;
}

/**
 * piscina replaces a thread that dies, except one that dies while still starting: then it stops
 * replacing threads for good, and tasks queued for the threads it was starting wait for a thread
 * that never comes (a crash while the pool recovers from a crash left the crypto actor hung).
 * When the last thread is gone with tasks queued, `destroy()` fails those tasks, which are then
 * answered with WORKER_FAILED, and leaves the pool usable: the next task starts a thread.
 */
function failQueuedTasksWhenStranded(pool: Piscina): void {
  pool.on('workerDestroy', () =>
    // After piscina's own handling of the exit, which may start a replacement.
    setImmediate(() => {
      if (pool.threads.length === 0 && pool.queueSize > 0) void pool.destroy();
    }),
  );
}

/**
 * What a host may see of the pool and do to it. A worker thread cannot be killed from outside its
 * process, so `crashThreads` is how a host (and the chaos tests) ends every thread as a crash
 * would: piscina fails the tasks those threads held and starts new ones.
 */
export interface WorkerPoolControl {
  /** Threads alive now; 0 before the first task, since the pool is made on first use. */
  readonly threadCount: number;
  /** Terminates every thread at once; resolves with how many there were. */
  crashThreads(): Promise<number>;
}

export function workerPoolControl(pool: () => Piscina | undefined): WorkerPoolControl {
  return {
    get threadCount() {
      return pool()?.threads.length ?? 0;
    },
    crashThreads: async () => {
      const threads = pool()?.threads ?? [];
      await Promise.all(threads.map((thread) => thread.terminate()));
      return threads.length;
    },
  };
}

/**
 * piscina's rejections of the tasks a thread held when it exited ("worker exited with code: 1")
 * and of those queued when the pool is destroyed ("Terminating worker thread"). piscina has no
 * error codes for them, so the wording is matched; the chaos tests fail if it changes.
 */
const THREAD_EXITED = /^(worker exited with code|Terminating worker thread$)/;

/**
 * Hosts an actor in the pool: each envelope becomes one task, and the worker answers with an
 * encoded Result. A Result error is an ordinary error reply; a task that throws is a failure for
 * supervision. A thread that dies is neither: piscina already replaces it, and counting each task
 * it held as a failure would stop the actor for good after one crash with a few tasks in flight,
 * so those tasks get a WORKER_FAILED error reply, as in the thread host.
 */
export function poolHost(pool: Piscina, codec: ActorCodec): ActorHost {
  return lazyPoolHost(() => pool, codec);
}

/** `poolHost` for a pool made on first use: `pool()` is called for every task and makes it once. */
export function lazyPoolHost(pool: () => Piscina, codec: ActorCodec): ActorHost {
  return {
    process: async (bytes) => {
      let out: Uint8Array;
      try {
        out = (await pool().run(forThread(bytes), { name: 'receive' })) as Uint8Array;
      } catch (e) {
        if (e instanceof Error && THREAD_EXITED.test(e.message))
          throw new BrokerError(
            'WORKER_FAILED',
            `a worker-pool thread exited before the task was done (${e.message})`,
          );
        throw e;
      }
      const reply = codec.decode<Reply>(out);
      if (reply.ok) return reply.value;
      throw fromErrorData(reply.error);
    },
    restart: () => {},
    stop: () => {},
  };
}
