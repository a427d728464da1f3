/**
 * Broker memory per idle connection (issue 7: under 16 KB each at 10,000 connections).
 *
 * Each measurement starts a fresh `idle-server.ts` child (its memory is the server's alone, and it
 * runs with --expose-gc), opens and closes a few connections so that lazily loaded code is not
 * counted per connection, takes the baseline after forced collections, opens `connections`
 * connections that each send `initialize`, check the answer and then idle, and takes the figures
 * again. Per connection: the heap-used delta (JS objects: actors, machines, sockets' JS side) and
 * the RSS delta (everything, native socket state and allocator slack included) divided by the
 * count. Neither is the whole truth alone, so the target's verdict uses the larger.
 *
 * Three measurements: a bare `ws` server (the socket cost without the broker: the ceiling), the
 * broker over WebSocket (the target), and the broker with in-process clients (no socket at all:
 * the broker's own cost per connection).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { checkInitialize, INITIALIZE } from './handshake.js';
import { BenchError, track, withTimeout } from './line-child.js';
import { kb, ms, ratio, row, int } from './report.js';
import type { IdleCommand, IdleReply, IdleServerMode } from './idle-server.js';
import { IDLE_TARGET_CONNECTIONS } from './options.js';

export type IdleKind = 'bare-ws' | 'broker-ws' | 'broker-in-process';

export interface IdleMeasure {
  kind: IdleKind;
  connections: number;
  /** Wall time to open and initialize all of them. */
  openMs: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  heapUsedBytesEach: number;
  rssBytesEach: number;
  /** The larger of the two: what the target's verdict uses, and which one it was. */
  bytesEach: number;
  larger: 'heapUsed' | 'rss';
}

export interface IdleReport {
  connections: number;
  webSocket: IdleMeasure;
  inProcess: IdleMeasure;
}

/** Connections opened and closed before the baseline. */
const WARM_UP = 200;
/** WebSocket handshakes in progress at once while opening. */
const OPENING_AT_ONCE = 200;
const COMMAND_TIMEOUT_MS = 60_000;
const serverScript = fileURLToPath(new URL('./idle-server.js', import.meta.url));

export async function runIdleBench(connections: number, progress: (m: string) => void): Promise<IdleReport> {
  progress(`idle: ${connections} WebSocket connections to the broker`);
  const webSocket = await measureIdle('broker-ws', connections);
  progress(`idle: ${connections} in-process connections to the broker`);
  const inProcess = await measureIdle('broker-in-process', connections);
  return { connections, webSocket, inProcess };
}

export async function measureIdle(kind: IdleKind, connections: number): Promise<IdleMeasure> {
  const mode: IdleServerMode = kind === 'bare-ws' ? 'bare-ws' : 'broker';
  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-bench-idle-'));
  const server = await IdleServer.start(mode, codexHome);
  const sockets: WebSocket[] = [];
  try {
    const homes = [codexHome, realpathSync(codexHome)];
    const check = (msg: unknown): string | undefined =>
      mode === 'broker'
        ? checkInitialize(msg, homes)
        : (msg as { id?: unknown } | null)?.id === INITIALIZE.id
          ? undefined
          : 'not the answer to initialize';
    const openSockets = (n: number) => openAll(server.url, n, check, sockets);

    // Warm-up: the first connections load code and grow pools that later ones reuse.
    if (kind === 'broker-in-process') await server.ask({ cmd: 'in-process', count: WARM_UP });
    else {
      await openSockets(WARM_UP);
      for (const ws of sockets.splice(0)) ws.terminate();
      await server.waitForOpen(0);
    }
    const before = await server.memory();

    const t0 = performance.now();
    if (kind === 'broker-in-process') {
      const reply = await server.ask({ cmd: 'in-process', count: connections });
      if (reply.type !== 'in-process' || reply.opened !== WARM_UP + connections)
        throw server.failure(
          `in-process: expected ${WARM_UP + connections} clients, got ${JSON.stringify(reply)}`,
        );
    } else {
      await openSockets(connections);
    }
    const openMs = performance.now() - t0;
    const afterReply = await server.memory();
    const expected = kind === 'broker-in-process' ? WARM_UP + connections : connections;
    if (afterReply.open !== expected)
      throw server.failure(`the server holds ${afterReply.open} connections, expected ${expected}`);
    const { usage: after } = afterReply;
    const heapUsedBytesEach = (after.heapUsed - before.usage.heapUsed) / connections;
    const rssBytesEach = (after.rss - before.usage.rss) / connections;
    const larger = rssBytesEach > heapUsedBytesEach ? 'rss' : 'heapUsed';
    return {
      kind,
      connections,
      openMs,
      before: before.usage,
      after,
      heapUsedBytesEach,
      rssBytesEach,
      bytesEach: Math.max(heapUsedBytesEach, rssBytesEach),
      larger,
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    server.kill();
    rmSync(codexHome, { recursive: true, force: true });
  }
}

/** Opens `n` sockets (OPENING_AT_ONCE at a time), each initialized and checked, into `into`. */
async function openAll(
  url: string,
  n: number,
  check: (msg: unknown) => string | undefined,
  into: WebSocket[],
): Promise<void> {
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      into.push(ws);
      ws.once('error', reject);
      ws.once('open', () => ws.send(JSON.stringify(INITIALIZE)));
      // A text frame arrives as one Buffer (ws's default binaryType, no fragmentation here).
      ws.once('message', (data: Buffer) => {
        let problem: string | undefined;
        try {
          problem = check(JSON.parse(data.toString('utf8')));
        } catch {
          problem = 'unparseable answer';
        }
        if (problem === undefined) resolve();
        else reject(new BenchError(`idle connection ${into.length}: ${problem}`));
      });
    });
  const lane = async (): Promise<void> => {
    while (next < n) {
      next++;
      await one();
    }
  };
  const timeoutMs = Math.max(60_000, n * 20);
  await withTimeout(
    Promise.all(Array.from({ length: Math.min(OPENING_AT_ONCE, n) }, lane)),
    timeoutMs,
    () => new BenchError(`opening ${n} WebSocket connections took over ${timeoutMs} ms`),
  );
}

/** The forked idle-server child and its one-command-at-a-time IPC. */
class IdleServer {
  private stderr = '';

  private constructor(
    private readonly proc: ChildProcess,
    readonly url: string,
  ) {
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-8192);
    });
  }

  static async start(mode: IdleServerMode, codexHome: string): Promise<IdleServer> {
    const proc = fork(serverScript, [mode, codexHome], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, CODEX_HOME: codexHome, GATEHOUSE_LOG: 'warn' },
    });
    track(proc);
    const ready = await IdleServer.next(proc, 'start');
    if (ready.type !== 'ready') throw new BenchError(`idle-server (${mode}): ${JSON.stringify(ready)}`);
    return new IdleServer(proc, ready.url);
  }

  /** The child's next IPC message; fails on its exit or after COMMAND_TIMEOUT_MS. */
  private static next(proc: ChildProcess, what: string): Promise<IdleReply> {
    let onMessage: (m: IdleReply) => void = () => {};
    let onExit: (code: number | null) => void = () => {};
    const reply = new Promise<IdleReply>((resolve, reject) => {
      onMessage = resolve;
      onExit = (code) => reject(new BenchError(`idle-server exited (code ${String(code)}) during ${what}`));
      proc.once('message', onMessage);
      proc.once('exit', onExit);
    });
    return withTimeout(
      reply,
      COMMAND_TIMEOUT_MS,
      () => new BenchError(`idle-server: no answer to ${what} within ${COMMAND_TIMEOUT_MS} ms`),
    ).finally(() => {
      proc.off('message', onMessage);
      proc.off('exit', onExit);
    });
  }

  async ask(command: IdleCommand): Promise<IdleReply> {
    const reply = IdleServer.next(this.proc, command.cmd);
    this.proc.send(command);
    const answer = await reply.catch((e: Error) => {
      throw this.failure(e.message);
    });
    if (answer.type === 'error') throw this.failure(answer.message);
    return answer;
  }

  async memory(): Promise<{ usage: NodeJS.MemoryUsage; open: number }> {
    const reply = await this.ask({ cmd: 'memory' });
    if (reply.type !== 'memory') throw this.failure(`expected memory figures, got ${reply.type}`);
    return reply;
  }

  /** Waits until the server holds `count` connections (closes are asynchronous). */
  async waitForOpen(count: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if ((await this.memory()).open === count) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw this.failure(`still not ${count} open connections after 100 polls`);
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }

  failure(message: string): BenchError {
    const tail = this.stderr.trim();
    return new BenchError(`idle-server: ${message}${tail ? `\n--- child stderr (tail) ---\n${tail}` : ''}`);
  }
}

// ---------------------------------------------------------------------------------------------

export function printIdleReport(report: IdleReport, ceiling: IdleMeasure | undefined): void {
  const w = [46, 12, 12, 12, 10, 10];
  const note =
    report.connections < IDLE_TARGET_CONNECTIONS
      ? ` (the target's ${int(IDLE_TARGET_CONNECTIONS)}: fewer)`
      : '';
  console.log('');
  console.log(
    row(
      [
        `Idle connections: ${int(report.connections)} held${note}`,
        'heap each',
        'RSS each',
        'larger',
        'x bare',
        'open ms',
      ],
      w,
    ),
  );
  const line = (label: string, x: IdleMeasure, base?: IdleMeasure) =>
    console.log(
      row(
        [
          label,
          kb(x.heapUsedBytesEach),
          kb(x.rssBytesEach),
          `${kb(x.bytesEach)} ${x.larger === 'rss' ? 'RSS' : 'heap'}`,
          base ? ratio(x.bytesEach / base.bytesEach) : '',
          ms(x.openMs),
        ],
        w,
      ),
    );
  if (ceiling) line('  ceiling: bare ws server (no broker)', ceiling);
  line('  broker over WebSocket', report.webSocket, ceiling);
  line('  broker, in-process clients (no socket)', report.inProcess);
  console.log('  (after forced GC in the server process; deltas from a baseline taken after a warm-up)');
}
