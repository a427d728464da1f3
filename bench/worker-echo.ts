/**
 * The raw worker round trip ceiling: a plain `worker_threads` Worker posting `{ id }` back, one
 * message at a time (RTT) and pipelined; and the same through piscina's `run()`, since the broker
 * hosts its crypto actor in a piscina pool. One thread each, so the main thread and the worker
 * have a core apiece on the 2-core VM; the piscina pool is set like the broker's
 * (`src/runtime/worker-pool.ts`: concurrentTasksPerWorker 4).
 */
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { withTimeout } from './line-child.js';
import { loadResult, summarizeLoads, type LoadResult, type LoadSummary } from './stdio-load.js';

/** Messages outstanding in the pipelined runs. */
export const WORKER_IN_FLIGHT = 256;
const PISCINA_TASKS_PER_WORKER = 4;

export interface WorkerCeilings {
  raw: { rtt: LoadSummary; pipelined: LoadSummary };
  piscina: { rtt: LoadSummary; pipelined: LoadSummary };
}

export interface WorkerCeilingSizes {
  rounds: number;
  workerRtt: number;
  workerMessages: number;
  piscinaTasks: number;
}

export async function measureWorkerCeilings(
  sizes: WorkerCeilingSizes,
  progress: (message: string) => void,
): Promise<WorkerCeilings> {
  const worker = new Worker(new URL('./echo.worker.js', import.meta.url));
  const pool = new Piscina({
    filename: new URL('./echo-task.worker.js', import.meta.url).href,
    minThreads: 1,
    maxThreads: 1,
    concurrentTasksPerWorker: PISCINA_TASKS_PER_WORKER,
  });
  const raw = (n: number, inFlight: number) => rawLoad(worker, n, inFlight);
  const piscina = (n: number, inFlight: number) => piscinaLoad(pool, n, inFlight);
  try {
    progress('worker ceilings: warm-up of the raw worker and of piscina');
    await raw(Math.min(sizes.workerMessages, 20_000), WORKER_IN_FLIGHT);
    await raw(Math.min(sizes.workerRtt, 1000), 1);
    await piscina(Math.min(sizes.piscinaTasks, 5000), WORKER_IN_FLIGHT);
    await piscina(Math.min(sizes.workerRtt, 1000), 1);
    const rounds: Record<'rawRtt' | 'rawPipelined' | 'piscinaRtt' | 'piscinaPipelined', LoadResult>[] = [];
    for (let r = 1; r <= sizes.rounds; r++) {
      progress(
        `worker ceilings round ${r}/${sizes.rounds}: ${sizes.workerRtt} round trips and ` +
          `${sizes.workerMessages} messages (${sizes.piscinaTasks} piscina tasks) at ${WORKER_IN_FLIGHT} in flight`,
      );
      rounds.push({
        rawRtt: await raw(sizes.workerRtt, 1),
        rawPipelined: await raw(sizes.workerMessages, WORKER_IN_FLIGHT),
        piscinaRtt: await piscina(sizes.workerRtt, 1),
        piscinaPipelined: await piscina(sizes.piscinaTasks, WORKER_IN_FLIGHT),
      });
    }
    const of = (key: keyof (typeof rounds)[number]) => summarizeLoads(rounds.map((r) => r[key]));
    return {
      raw: { rtt: of('rawRtt'), pipelined: of('rawPipelined') },
      piscina: { rtt: of('piscinaRtt'), pipelined: of('piscinaPipelined') },
    };
  } finally {
    await worker.terminate();
    await pool.destroy();
  }
}

/** A floor of 5,000 messages/s, at least 30 s. */
const timeoutMs = (messages: number): number => Math.max(30_000, messages / 5);

/** `messages` posts to the echo worker, `inFlight` outstanding, each answer checked by id. */
function rawLoad(worker: Worker, messages: number, inFlight: number): Promise<LoadResult> {
  const started = new Float64Array(messages);
  const latency = new Float64Array(messages);
  const seen = new Uint8Array(messages);
  let sent = 0;
  let received = 0;
  let t0 = 0;
  let onMessage: (m: { id?: unknown }) => void = () => {};
  let onError: (e: Error) => void = () => {};
  const send = (): void => {
    const i = sent++;
    started[i] = performance.now();
    worker.postMessage({ id: i });
  };
  const finished = new Promise<number>((resolve, reject) => {
    onMessage = (m) => {
      const now = performance.now();
      const i = m.id;
      if (typeof i !== 'number' || i < 0 || i >= messages || seen[i]) {
        return reject(new Error(`raw worker: unexpected answer ${JSON.stringify(m)}`));
      }
      seen[i] = 1;
      latency[i] = now - (started[i] as number);
      if (++received === messages) resolve(now);
      else if (sent < messages) send();
    };
    onError = reject;
    worker.on('message', onMessage);
    worker.once('error', onError);
    t0 = performance.now();
    while (sent < Math.min(inFlight, messages)) send();
  });
  return withTimeout(
    finished,
    timeoutMs(messages),
    () => new Error(`raw worker: ${received}/${messages} answers within ${timeoutMs(messages)} ms`),
  )
    .then((t1) => loadResult(latency, inFlight, t1 - t0))
    .finally(() => {
      worker.off('message', onMessage);
      worker.off('error', onError);
    });
}

/** `tasks` calls of `pool.run({ id })`, `inFlight` outstanding, each result checked. */
async function piscinaLoad(pool: Piscina, tasks: number, inFlight: number): Promise<LoadResult> {
  const latency = new Float64Array(tasks);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < tasks) {
      const i = next++;
      const start = performance.now();
      const answer = (await pool.run({ id: i })) as { id?: unknown };
      latency[i] = performance.now() - start;
      if (answer.id !== i) throw new Error(`piscina: task ${i} answered ${JSON.stringify(answer)}`);
    }
  };
  const t0 = performance.now();
  const lanes = Array.from({ length: Math.min(inFlight, tasks) }, () => lane());
  await withTimeout(
    Promise.all(lanes),
    timeoutMs(tasks),
    () => new Error(`piscina: ${tasks} tasks not done within ${timeoutMs(tasks)} ms`),
  );
  return loadResult(latency, inFlight, performance.now() - t0);
}
