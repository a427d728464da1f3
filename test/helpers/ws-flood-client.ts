/**
 * A WebSocket client that floods a server with `account/read` as fast as it can, in its own
 * process, so the test process measuring another connection's latency is not the one parsing the
 * flood's answers. `floodFromChild()` runs it and returns its tally; run directly it is the child:
 * `node --import tsx test/helpers/ws-flood-client.ts URL COUNT FIRST_ID` prints one JSON line.
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
}

const OVERLOADED_MESSAGE = 'Server overloaded; retry later.';

async function flood(url: string, count: number, firstId: number): Promise<FloodTally> {
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
  for (let id = firstId; id < firstId + count; id++)
    socket.send(`{"id":${id},"method":"account/read","params":{}}`);
  await finished;
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
): Promise<FloodTally> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), url, String(count), String(firstId)],
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
  const [url, count, firstId] = process.argv.slice(2);
  const tally = await flood(url!, Number(count), Number(firstId));
  process.stdout.write(`${JSON.stringify(tally)}\n`);
}
