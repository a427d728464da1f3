// Dev and test only: on Node 20 a piscina worker does not get tsx's ESM hooks from the parent's
// --import flag, so this plain-JS entry registers them inside the worker and re-exports the tasks
// of the TypeScript worker named in workerData. Built code loads dist/workers/*.js directly.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const worker = await import(workerData.tsWorker);
export const receive = worker.receive;
