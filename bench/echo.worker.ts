/** The raw worker ceiling's far end (`worker-echo.ts`): posts every message straight back. */
import { parentPort } from 'node:worker_threads';

const port = parentPort;
if (!port) throw new Error('echo.worker.js runs as a worker thread');
port.on('message', (message: unknown) => port.postMessage(message));
