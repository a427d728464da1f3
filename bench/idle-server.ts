/**
 * The server side of the idle-connection bench (`idle-connections.ts`), in a child process of
 * its own so that its memory is the server's alone and a GC can be forced (`--expose-gc`).
 *
 *   node --expose-gc dist/bench/idle-server.js broker <codexHome>   Gatehouse's broker through the
 *        library API, listening on ws://127.0.0.1:0 as `gatehouse app-server --listen` does
 *   node --expose-gc dist/bench/idle-server.js bare-ws              a bare `ws` server answering
 *        initialize with a canned result: the socket cost without the broker (the ceiling)
 *
 * Commands arrive over IPC: `memory` answers `process.memoryUsage()` after forced collections,
 * with the number of open connections; `in-process` opens that many InProcessClients on the
 * broker and initializes each (kept open until the process ends).
 */
import { realpathSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { createBroker, listenWebSocket, type InProcessClient } from '../src/index.js';
import { silentLogger } from '../src/util/logger.js';
import { checkInitialize, INITIALIZE } from './handshake.js';

export type IdleServerMode = 'broker' | 'bare-ws';

export type IdleCommand = { cmd: 'memory' } | { cmd: 'in-process'; count: number };

export type IdleReply =
  | { type: 'ready'; url: string }
  | { type: 'memory'; usage: NodeJS.MemoryUsage; open: number }
  | { type: 'in-process'; opened: number }
  | { type: 'error'; message: string };

/** In-process connections initialized at once; more would only queue in the broker. */
const IN_PROCESS_BATCH = 500;

function reply(message: IdleReply): void {
  process.send?.(message);
}

/** Forced full collections until the heap stops shrinking, then the figures. */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  const gc = globalThis.gc;
  if (!gc) throw new Error('idle-server needs --expose-gc');
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 10; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    const used = process.memoryUsage().heapUsed;
    if (used >= last) break;
    last = used;
  }
  return process.memoryUsage();
}

async function main(): Promise<void> {
  const [mode, codexHome] = process.argv.slice(2) as [IdleServerMode, string | undefined];
  let open = 0;
  let openInProcess: (count: number) => Promise<number> = () =>
    Promise.reject(new Error('in-process connections need the broker mode'));
  let url: string;
  if (mode === 'broker') {
    if (!codexHome) throw new Error('broker mode needs a codexHome');
    const broker = createBroker({ codexHome, log: silentLogger() });
    broker.on('connectionOpened', () => open++);
    broker.on('connectionClosed', () => open--);
    url = (await listenWebSocket(broker, 'ws://127.0.0.1:0')).url;
    const homes = [codexHome, realpathSync(codexHome)];
    const clients: InProcessClient[] = [];
    const one = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const client = broker.connectInProcess();
        clients.push(client);
        client.once('message', (msg) => {
          const problem = checkInitialize(msg, homes);
          if (problem === undefined) resolve();
          else reject(new Error(`in-process initialize: ${problem}`));
        });
        client.send(INITIALIZE);
      });
    openInProcess = async (count) => {
      for (let done = 0; done < count; done += IN_PROCESS_BATCH) {
        await Promise.all(Array.from({ length: Math.min(IN_PROCESS_BATCH, count - done) }, one));
      }
      return clients.length;
    };
  } else if (mode === 'bare-ws') {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    server.on('connection', (socket) => {
      open++;
      socket.on('close', () => open--);
      socket.on('message', (data: Buffer) => {
        const { id } = JSON.parse(data.toString('utf8')) as { id?: unknown };
        socket.send(JSON.stringify({ id, result: { userAgent: 'bare-ws' } }));
      });
    });
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('bare ws server has no address');
    url = `ws://127.0.0.1:${address.port}`;
  } else {
    throw new Error(`unknown mode '${String(mode)}' (broker or bare-ws)`);
  }

  process.on('message', (command: IdleCommand) => {
    const answer =
      command.cmd === 'memory'
        ? settledMemory().then((usage): IdleReply => ({ type: 'memory', usage, open }))
        : openInProcess(command.count).then((opened): IdleReply => ({ type: 'in-process', opened }));
    answer.then(reply, (e: unknown) =>
      reply({ type: 'error', message: e instanceof Error ? e.message : String(e) }),
    );
  });
  // The bench going away ends this process, whatever it was doing.
  process.on('disconnect', () => process.exit(0));
  reply({ type: 'ready', url });
}

main().catch((e: unknown) => {
  process.stderr.write(`idle-server: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
