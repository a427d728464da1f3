/**
 * A WebSocket client that floods a server with one request (`account/read` by default) as fast as
 * it can, in its own process, so the test process measuring another connection's latency is not
 * the one parsing the flood's answers. `floodFromChild()` runs it and returns its tally; run
 * directly it is the child: `node --import tsx test/helpers/ws-flood-client.ts URL COUNT FIRST_ID
 * [METHOD PARAMS_JSON]` prints one JSON line.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';

export interface FloodTally {
  sent: number;
  results: number;
  overloaded: number;
  /** Answers that are neither a result nor -32001 "Server overloaded; retry later.". */
  otherErrors: number;
  /** Ids answered more than once, and never. */
  duplicates: number;
  missing: number;
  /** From the first frame sent to the last answer. */
  elapsedMs: number;
}

/** What every frame of the flood asks, with its own id. */
export interface FloodRequest {
  method: string;
  params: unknown;
}

const ACCOUNT_READ: FloodRequest = { method: 'account/read', params: {} };

const OVERLOADED_MESSAGE = 'Server overloaded; retry later.';

async function flood(
  url: string,
  count: number,
  firstId: number,
  request: FloodRequest,
): Promise<FloodTally> {
  const socket = new WebSocket(url, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const answers = new Uint8Array(count);
  const tally: FloodTally = {
    sent: count,
    results: 0,
    overloaded: 0,
    otherErrors: 0,
    duplicates: 0,
    missing: 0,
    elapsedMs: 0,
  };
  let answered = 0;
  let initialized!: () => void;
  const ready = new Promise<void>((resolve) => (initialized = resolve));
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  socket.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString('utf8')) as {
      id?: number;
      method?: string;
      error?: { code: number; message: string };
    };
    if (m.id === 0) return initialized();
    if (m.method !== undefined || typeof m.id !== 'number') return;
    const i = m.id - firstId;
    if (answers[i]! > 0) tally.duplicates++;
    answers[i] = 1;
    if (m.error === undefined) tally.results++;
    else if (m.error.code === -32001 && m.error.message === OVERLOADED_MESSAGE) tally.overloaded++;
    else tally.otherErrors++;
    if (++answered === count) done();
  });
  socket.send(
    JSON.stringify({ id: 0, method: 'initialize', params: { clientInfo: { name: 'flood', version: '1' } } }),
  );
  await ready;
  const started = performance.now();
  const tail = `,"method":${JSON.stringify(request.method)},"params":${JSON.stringify(request.params)}}`;
  for (let id = firstId; id < firstId + count; id++) socket.send(`{"id":${id}${tail}`);
  await finished;
  tally.elapsedMs = Math.round(performance.now() - started);
  tally.missing = answers.reduce((n, a) => n + (a === 0 ? 1 : 0), 0);
  socket.terminate();
  return tally;
}

/** Runs the flood in a child process; resolves with its tally (bounded by `timeoutMs`). */
export function floodFromChild(
  url: string,
  count: number,
  firstId: number,
  timeoutMs: number,
  request: FloodRequest = ACCOUNT_READ,
): Promise<FloodTally> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      url,
      String(count),
      String(firstId),
      request.method,
      JSON.stringify(request.params),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the flood client did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out) as FloodTally);
      else reject(new Error(`the flood client exited with ${code}: ${out}`));
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [url, count, firstId, method, params] = process.argv.slice(2);
  const request =
    method === undefined ? ACCOUNT_READ : { method, params: JSON.parse(params ?? '{}') as unknown };
  const tally = await flood(url!, Number(count), Number(firstId), request);
  process.stdout.write(`${JSON.stringify(tally)}\n`);
}
