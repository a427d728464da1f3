/**
 * Hosts an actor in long-lived worker threads that keep state between messages (a key-store
 * session with a TPM or a PKCS#11 token), reached through comlink. As with the pool host, each
 * envelope is one call answered with an encoded Result; unlike pool tasks, a worker's state lives
 * as long as the worker. Threads start on the first message, not with the broker, so start-up
 * pays nothing for a feature nobody uses.
 *
 * A worker that dies fails the calls it held with WORKER_FAILED and is replaced on the next
 * message: comlink alone would leave those calls pending forever.
 *
 * Workers end themselves, between two calls, when asked (`close`, `exit`). `Worker.terminate()`
 * from this thread can land while the worker's JavaScript is entering a native addon, and
 * pkcs11js then uses the result of a napi_unwrap that failed because the thread is terminating:
 * the whole process dies of SIGSEGV (seen in CI, 2 in 200 runs of the recovery test under load).
 * Terminating is kept only as a last resort for a worker that does not exit within
 * `CLOSE_GRACE_MS`, which means it is stuck inside a native call, not about to enter one.
 */
import { Worker } from 'node:worker_threads';
import { transfer, wrap, type Remote } from 'comlink';
import { BrokerError, fromErrorData } from '../protocol/errors.js';
import { forThread, type ActorCodec } from '../codec/msgpack.js';
import { nodeEndpoint } from './comlink-node.js';
import type { ActorHost } from './actor-cell.js';
import type { Reply } from './envelope.js';
import type { Logger } from '../util/logger.js';

/** What a thread-hosted worker exposes; both calls answer with an encoded Reply. */
export interface ThreadWorkerApi {
  /** Builds the worker's state; called once before the first message. */
  open(): Promise<Uint8Array>;
  receive(bytes: Uint8Array): Promise<Uint8Array>;
  /** Closes the worker's state (sessions, connections), then ends the thread with code 0. */
  close(): Promise<void>;
  /** Ends the thread at once with `code`, closing nothing, as a crash would. */
  exit(code: number): void;
}

/** How long a closing worker may take to exit by itself before it is terminated. */
const CLOSE_GRACE_MS = 2_000;
/** The exit code of a worker crashed on purpose (`ThreadHost.crashWorkers`). */
const CRASH_EXIT_CODE = 70;

export interface ThreadHostOptions {
  /** For logs and errors: what the workers are ("device-key/hardware_tpm"). */
  name: string;
  /** The worker module, relative to `workers/` and named as built (`key-store.worker.js`). */
  module: string;
  /** Handed to every worker as `workerData.setup`. */
  setup: unknown;
  /** Most workers at once; a device that takes one connection at a time needs 1. */
  threads: number;
  codec: ActorCodec;
  log: Logger;
}

/** Built code runs the compiled worker; under tsx a bootstrap loads the TypeScript source. */
function workerEntry(module: string): { filename: URL; tsWorker?: string } {
  const built = new URL(`../../workers/${module}`, import.meta.url);
  if (!import.meta.url.endsWith('.ts')) return { filename: built };
  return {
    filename: new URL('../../workers/tsx-bootstrap.mjs', import.meta.url),
    tsWorker: built.href.replace(/\.js$/, '.ts'),
  };
}

class WorkerSlot {
  /** Set once `open()` succeeded; only open workers take messages. */
  isOpen = false;
  readonly ready: Promise<void>;
  private readonly worker: Worker;
  private readonly remote: Remote<ThreadWorkerApi>;
  /**
   * How each call still waiting is failed if the worker dies. One rejecter per call, dropped when
   * it settles: racing every call against one long-lived "died" promise would leave a reaction on
   * it per call for the worker's lifetime (some 600 bytes a sign, found by the backpressure test).
   */
  private readonly waiting = new Set<(error: BrokerError) => void>();
  private death: BrokerError | undefined;
  private readonly exited: Promise<void>;

  constructor(
    private readonly options: ThreadHostOptions,
    onExit: (slot: WorkerSlot) => void,
  ) {
    const entry = workerEntry(options.module);
    this.worker = new Worker(entry.filename, {
      workerData: { tsWorker: entry.tsWorker, setup: options.setup },
    });
    this.worker.unref();
    this.remote = wrap<ThreadWorkerApi>(nodeEndpoint(this.worker));
    let lastError = '';
    this.worker.on('error', (e) => (lastError = `: ${e.message}`));
    this.exited = new Promise<void>((resolve) => {
      this.worker.once('exit', (code) => {
        onExit(this);
        this.death = new BrokerError(
          'WORKER_FAILED',
          `${options.name} worker exited with code ${code}${lastError}`,
        );
        for (const fail of this.waiting) fail(this.death);
        resolve();
      });
    });
    this.ready = this.settle(this.remote.open()).then(() => {
      this.isOpen = true;
    });
  }

  call(bytes: Uint8Array): Promise<unknown> {
    const copy = forThread(bytes);
    return this.settle(this.remote.receive(transfer(copy, [copy.buffer as ArrayBuffer])));
  }

  /**
   * Asks the worker to close its state and exit, and resolves once it has. Calls still queued in
   * the worker get WORKER_FAILED. comlink never answers `close` (the thread is gone), so the
   * worker's exit is what is awaited.
   */
  async close(): Promise<void> {
    // Held open until the exit: the process ending first would terminate the thread after all.
    this.worker.ref();
    void this.remote.close().catch(() => undefined);
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Ends the worker between two of its calls, as a crash would; resolves once it has exited. */
  async crash(): Promise<void> {
    this.worker.ref();
    void this.remote.exit(CRASH_EXIT_CODE).catch(() => undefined);
    await this.exited;
  }

  /** Calls waiting for their answer. */
  get pending(): number {
    return this.waiting.size;
  }

  /** Awaits one call (or the worker's death) and unpacks its Reply. */
  private async settle(call: Promise<Uint8Array>): Promise<unknown> {
    if (this.death) throw this.death;
    let fail!: (error: BrokerError) => void;
    const died = new Promise<never>((_, reject) => (fail = reject));
    this.waiting.add(fail);
    try {
      const reply = this.options.codec.decode<Reply>(await Promise.race([call, died]));
      if (reply.ok) return reply.value;
      throw fromErrorData(reply.error);
    } finally {
      this.waiting.delete(fail);
    }
  }
}

export class ThreadHost implements ActorHost {
  private readonly slots: WorkerSlot[] = [];
  private stopped = false;
  private closing: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ThreadHostOptions) {}

  process(bytes: Uint8Array): Promise<unknown> {
    return this.pick().then((slot) => slot.call(bytes));
  }

  /** Worker deaths are handled per slot; there is no behaviour state to replace here. */
  restart(): void {}

  stop(): void {
    this.stopped = true;
    this.closing = Promise.all(this.slots.splice(0).map((slot) => slot.close()));
  }

  /** Resolves once every worker that `stop()` closed has exited. */
  async closed(): Promise<void> {
    await this.closing;
  }

  /** Workers alive now (started on demand, so 0 until the first message). */
  get threadCount(): number {
    return this.slots.length;
  }

  /** Ends every worker as a crash would (tests of recovery use this). */
  async crashWorkers(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.crash()));
  }

  /**
   * The least busy ready worker. The first worker opens alone, so one-time set-up (initialising a
   * token) never races; more start only while every worker is busy.
   */
  private async pick(): Promise<WorkerSlot> {
    if (this.stopped) throw new BrokerError('ACTOR_STOPPED', `${this.options.name} is stopped`);
    if (this.slots.length === 0) this.spawn();
    const first = this.slots[0]!;
    await first.ready;
    let best = first;
    for (const slot of this.slots) if (slot.isOpen && slot.pending < best.pending) best = slot;
    if (best.pending > 0 && this.slots.length < this.options.threads) this.spawn();
    return best;
  }

  private spawn(): void {
    const slot = new WorkerSlot(this.options, (dead) => this.remove(dead));
    this.slots.push(slot);
    slot.ready.catch((e: unknown) => {
      this.remove(slot);
      void slot.close();
      this.options.log.warn({ actor: this.options.name, err: (e as Error).message }, 'worker could not open');
    });
  }

  private remove(slot: WorkerSlot): void {
    const index = this.slots.indexOf(slot);
    if (index >= 0) this.slots.splice(index, 1);
  }
}
