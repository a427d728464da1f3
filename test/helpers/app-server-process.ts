/**
 * Integration-test clients for the built CLI (`dist/src/cli/main.js app-server`).
 *
 * - `TestClient` spawns the real binary as a child process and speaks JSON lines over its stdio.
 *   It keeps the raw stdout text (so a test can check that stdout holds nothing but JSON lines,
 *   and see big ids digit for digit), every parsed message, and stderr.
 * - `WsTestClient` is a WebSocket client (package `ws`) for `--listen ws://...`.
 *
 * Every wait is bounded (`readTimeoutMs`, 5 s by default) and fails with what was received so far.
 * `dispose()` kills the child if it still runs and removes the temporary CODEX_HOME.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { parseDiagnosticsLine, type BrokerDiagnostics } from '../../src/broker/diagnostics.js';

/** The built CLI; `npm test` builds before running tests. */
export const CLI_PATH = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export const DEFAULT_READ_TIMEOUT_MS = 5_000;

export type RpcId = string | number;

export interface RpcError {
  code: number;
  message: string;
  data?: unknown;
}

/** One message written by the server, as parsed from its JSON text. */
export interface RpcMessage {
  id?: RpcId | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: RpcError;
  emittedAtMs?: number;
  [key: string]: unknown;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface InitializeOptions {
  id?: RpcId;
  name?: string;
  title?: string | null;
  version?: string;
  experimentalApi?: boolean;
  requestAttestation?: boolean;
  optOutNotificationMethods?: string[] | null;
  /** Replaces the whole `capabilities` member (takes precedence over the three flags above). */
  capabilities?: unknown;
  /** Leave the `remoteControl/status/changed` greeting in the inbox for the test to read. */
  keepGreeting?: boolean;
}

/** The notification every connection gets right after `initialize`. */
const GREETING = 'remoteControl/status/changed';

export function initializeParams(opts: InitializeOptions = {}): Record<string, unknown> {
  const clientInfo: Record<string, unknown> = {
    name: opts.name ?? 'gatehouse_test',
    version: opts.version ?? '0.0.1',
  };
  if (opts.title !== undefined) clientInfo.title = opts.title;
  const params: Record<string, unknown> = { clientInfo };
  if (opts.capabilities !== undefined) {
    params.capabilities = opts.capabilities;
  } else if (
    opts.experimentalApi !== undefined ||
    opts.requestAttestation !== undefined ||
    opts.optOutNotificationMethods !== undefined
  ) {
    const caps: Record<string, unknown> = {};
    if (opts.experimentalApi !== undefined) caps.experimentalApi = opts.experimentalApi;
    if (opts.requestAttestation !== undefined) caps.requestAttestation = opts.requestAttestation;
    if (opts.optOutNotificationMethods !== undefined)
      caps.optOutNotificationMethods = opts.optOutNotificationMethods;
    params.capabilities = caps;
  }
  return params;
}

export function isResponseTo(id: RpcId): (m: RpcMessage) => boolean {
  return (m) => m.method === undefined && m.id === id && ('result' in m || 'error' in m);
}

function describe(m: unknown): string {
  const text = JSON.stringify(m);
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

/** An ordered inbox of parsed messages with bounded, predicate-based reads (one reader at a time). */
class Inbox {
  private readonly queue: RpcMessage[] = [];
  private waiter: (() => void) | undefined;
  /** Everything ever received, in order (reads do not remove from here). */
  readonly all: RpcMessage[] = [];
  private failure: Error | undefined;

  constructor(private readonly context: () => string) {}

  /** Sees every message as it arrives, before any read (e.g. to answer server requests at once). */
  tap: ((m: RpcMessage) => void) | undefined;

  push(m: RpcMessage): void {
    this.tap?.(m);
    this.queue.push(m);
    this.all.push(m);
    this.wake();
  }

  /** No more messages will come (the process exited, the socket closed). */
  fail(error: Error): void {
    this.failure ??= error;
    this.wake();
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Takes messages in order until one matches; the skipped ones are returned too. */
  async readUntil(
    pred: (m: RpcMessage) => boolean,
    what: string,
    timeoutMs: number,
  ): Promise<{ match: RpcMessage; skipped: RpcMessage[] }> {
    const skipped: RpcMessage[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.queue.length > 0) {
        const m = this.queue.shift()!;
        if (pred(m)) return { match: m, skipped };
        skipped.push(m);
      }
      if (this.failure) {
        throw new Error(
          `${what}: ${this.failure.message}; skipped ${skipped.map(describe).join(', ') || 'nothing'}${this.context()}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.wait(left))) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; received meanwhile: ${skipped.map(describe).join(', ') || 'nothing'}${this.context()}`,
        );
      }
    }
  }

  async next(what: string, timeoutMs: number): Promise<RpcMessage> {
    return (await this.readUntil(() => true, what, timeoutMs)).match;
  }

  private wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(false);
      }, ms);
      this.waiter = () => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(true);
      };
    });
  }

  private wake(): void {
    this.waiter?.();
  }
}

export interface SpawnOptions {
  /** Arguments after `app-server` (e.g. `['-c', 'gatehouse.max_line_bytes=1024']`). */
  args?: string[];
  /** Use this CODEX_HOME instead of a fresh temporary directory (it is not removed). */
  codexHome?: string;
  /** GATEHOUSE_LOG; `debug` by default so tests can assert log lines. */
  logLevel?: string;
  /** Extra environment (merged over the inherited one). */
  env?: Record<string, string | undefined>;
  readTimeoutMs?: number;
  /** Arguments that replace `app-server ...` entirely (e.g. `['app-server', '--help']`). */
  rawArgs?: string[];
}

const live = new Set<TestClient>();

/** What both test clients share: request ids, sending requests, and reading their answers. */
abstract class RpcPeer {
  protected nextId = 1_000;
  protected abstract readonly inbox: Inbox;
  abstract readonly readTimeoutMs: number;

  /** Sends one serialized message over the peer's transport (a line, a frame). */
  protected abstract sendMessageText(text: string): Promise<void>;

  /** Calls `fn` with every message as it arrives (still queued for reads); undefined stops it. */
  onMessage(fn: ((m: RpcMessage) => void) | undefined): void {
    this.inbox.tap = fn;
  }

  /** Answers a server->client request (`{id, result}` or `{id, error}`). */
  async answer(id: RpcId, outcome: { result: unknown } | { error: RpcError }): Promise<void> {
    await this.sendMessageText(JSON.stringify({ id, ...outcome }));
  }

  /** Writes a request without waiting for the answer; returns its id. */
  async sendRequest(method: string, params?: unknown, id: RpcId = this.nextId++): Promise<RpcId> {
    await this.sendMessageText(
      JSON.stringify(params === undefined ? { id, method } : { id, method, params }),
    );
    return id;
  }

  /** Sends a request and returns its response or error message. */
  async request(method: string, params?: unknown, id?: RpcId): Promise<RpcMessage> {
    const sent = await this.sendRequest(method, params, id);
    return this.readUntilResponse(sent);
  }

  /**
   * Sends `initialize` and returns the reply (response or error). Every initialized connection is
   * then greeted with `remoteControl/status/changed` (spec B.1); that greeting is read here, so a
   * test sees what follows it, unless `keepGreeting` is set or the client opted out of it. It
   * stays in `messages` either way.
   */
  async initialize(opts: InitializeOptions = {}): Promise<RpcMessage> {
    const reply = await this.request('initialize', initializeParams(opts), opts.id);
    const caps = (opts.capabilities ?? { optOutNotificationMethods: opts.optOutNotificationMethods }) as {
      optOutNotificationMethods?: unknown;
    } | null;
    const optOut = caps?.optOutNotificationMethods;
    const optedOut = Array.isArray(optOut) && optOut.includes(GREETING);
    if (reply.result !== undefined && !opts.keepGreeting && !optedOut) {
      await this.inbox.readUntil(
        (m) => m.method === GREETING,
        'the remote-control status greeting',
        this.readTimeoutMs,
      );
    }
    return reply;
  }

  /** All messages received so far, in order. */
  get messages(): readonly RpcMessage[] {
    return this.inbox.all;
  }

  /** Reads (and consumes) messages until one matches `pred`. */
  async readUntil(
    pred: (m: RpcMessage) => boolean,
    what: string,
    timeoutMs = this.readTimeoutMs,
  ): Promise<RpcMessage> {
    return (await this.inbox.readUntil(pred, what, timeoutMs)).match;
  }

  /** Reads (and consumes) messages until the response or error for `id`. */
  async readUntilResponse(id: RpcId, timeoutMs = this.readTimeoutMs): Promise<RpcMessage> {
    return (await this.inbox.readUntil(isResponseTo(id), `the answer to id ${JSON.stringify(id)}`, timeoutMs))
      .match;
  }
}

/** The built CLI as a child process, spoken to over stdio. */
export class TestClient extends RpcPeer {
  readonly child: ChildProcessWithoutNullStreams;
  readonly codexHome: string;
  readonly readTimeoutMs: number;
  /** Every byte the server wrote to stdout, decoded as UTF-8. */
  stdoutText = '';
  /** Every byte the server wrote to stderr. */
  stderrText = '';
  /** Stdout lines that were not valid JSON objects (should stay empty). */
  readonly badStdoutLines: string[] = [];
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | undefined;
  private readonly ownsHome: boolean;
  protected readonly inbox: Inbox;
  private readonly rawLines = new WeakMap<RpcMessage, string>();
  private partial = '';
  private stderrWaiters = new Set<() => void>();

  private constructor(opts: SpawnOptions) {
    super();
    this.ownsHome = opts.codexHome === undefined;
    this.codexHome = opts.codexHome ?? mkdtempSync(join(tmpdir(), 'gatehouse-it-'));
    this.readTimeoutMs = opts.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    const args = opts.rawArgs ?? ['app-server', ...(opts.args ?? [])];
    this.child = spawn(process.execPath, [CLI_PATH, ...args], {
      env: {
        ...process.env,
        CODEX_HOME: this.codexHome,
        GATEHOUSE_LOG: opts.logLevel ?? 'debug',
        ...opts.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.inbox = new Inbox(() => this.context());
    const out = new StringDecoder('utf8');
    const err = new StringDecoder('utf8');
    this.child.stdout.on('data', (chunk: Buffer) => this.onStdout(out.write(chunk)));
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderrText += err.write(chunk);
      for (const w of this.stderrWaiters) w();
    });
    // The child may exit while we still write; EPIPE is then expected, not a test crash.
    this.child.stdin.on('error', () => {});
    this.exited = new Promise<ExitStatus>((resolve) => {
      this.child.once('close', (code, signal) => {
        this.onStdout(out.end());
        this.stderrText += err.end();
        // Stdout must end with a newline: a trailing fragment is not a valid JSON line.
        if (this.partial !== '') this.badStdoutLines.push(`(unterminated) ${this.partial}`);
        this.exitStatus = { code, signal };
        this.inbox.fail(new Error(`the server exited (code ${code}, signal ${signal})`));
        for (const w of this.stderrWaiters) w();
        live.delete(this);
        resolve(this.exitStatus);
      });
    });
    live.add(this);
  }

  static spawn(opts: SpawnOptions = {}): TestClient {
    return new TestClient(opts);
  }

  /** Kills every client that is still running (for a file-level `after`). */
  static async disposeAll(): Promise<void> {
    await Promise.all([...live].map((c) => c.dispose()));
  }

  get exitStatusNow(): ExitStatus | undefined {
    return this.exitStatus;
  }

  /** The exact stdout line a message was parsed from. */
  rawLine(m: RpcMessage): string {
    const raw = this.rawLines.get(m);
    if (raw === undefined) throw new Error('not a message received by this client');
    return raw;
  }

  /** Stdout split into complete lines (a trailing newline-less fragment is excluded). */
  get stdoutLines(): string[] {
    const lines = this.stdoutText.split('\n');
    lines.pop();
    return lines;
  }

  /** Stderr lines parsed as pino JSON records (non-JSON lines are skipped). */
  get logRecords(): Record<string, unknown>[] {
    const records: Record<string, unknown>[] = [];
    for (const line of this.stderrText.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log record
      }
    }
    return records;
  }

  /** Writes raw text or bytes to stdin, resolving once the write is flushed to the pipe. */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.child.stdin.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Writes one message (any JSON value) as a line. */
  send(message: unknown): Promise<void> {
    return this.write(`${JSON.stringify(message)}\n`);
  }

  protected sendMessageText(text: string): Promise<void> {
    return this.write(`${text}\n`);
  }

  /** The next message, whatever it is. */
  next(timeoutMs = this.readTimeoutMs): Promise<RpcMessage> {
    return this.inbox.next('the next message', timeoutMs);
  }

  /** Reads (and consumes) messages until a notification with this method. */
  async readUntilNotification(method: string, timeoutMs = this.readTimeoutMs): Promise<RpcMessage> {
    const pred = (m: RpcMessage) => m.method === method && !('id' in m);
    return (await this.inbox.readUntil(pred, `notification ${method}`, timeoutMs)).match;
  }

  /** Fails if anything at all (even a partial line) appears on stdout within `ms`. */
  async expectNoOutput(ms = 200): Promise<void> {
    const before = this.stdoutText.length;
    const pendingBefore = this.inbox.pending;
    if (pendingBefore > 0) {
      throw new Error(
        `unread messages before expectNoOutput: ${this.stdoutText.slice(-500)}${this.context()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.stdoutText.length !== before) {
      throw new Error(
        `unexpected stdout output: ${JSON.stringify(this.stdoutText.slice(before))}${this.context()}`,
      );
    }
  }

  /**
   * Signals SIGUSR2 and returns the broker's next diagnostics line (src/broker/diagnostics.ts),
   * taken after a full GC when the child runs with `NODE_OPTIONS=--expose-gc`.
   */
  async diagnostics(timeoutMs = 10_000): Promise<BrokerDiagnostics> {
    const seq = (this.stderrText.match(/"msg":"broker diagnostics"/g)?.length ?? 0) + 1;
    this.child.kill('SIGUSR2');
    const pattern = new RegExp(`^.*"msg":"broker diagnostics","seq":${seq},.*$`, 'm');
    const line = (await this.waitForStderr(pattern, timeoutMs)) as RegExpMatchArray;
    const parsed = parseDiagnosticsLine(line[0]);
    if (!parsed) throw new Error(`not a diagnostics line: ${line[0]}`);
    return parsed.diagnostics;
  }

  /** Waits until stderr matches; returns the match. */
  async waitForStderr(
    pattern: RegExp | string,
    timeoutMs = this.readTimeoutMs,
  ): Promise<RegExpMatchArray | string> {
    const test = (): RegExpMatchArray | string | null =>
      typeof pattern === 'string'
        ? this.stderrText.includes(pattern)
          ? pattern
          : null
        : this.stderrText.match(pattern);
    const found = test();
    if (found) return found;
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = test();
        if (m) {
          done();
          resolve(m);
        } else if (this.exitStatus) {
          done();
          reject(new Error(`stderr never matched ${String(pattern)} before exit${this.context()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for stderr ${String(pattern)}${this.context()}`),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.stderrWaiters.delete(check);
      };
      this.stderrWaiters.add(check);
    });
  }

  /** With `--listen ws://...`: the URL from the `listening on ...` log line. */
  async listenUrl(timeoutMs = this.readTimeoutMs): Promise<string> {
    const m = await this.waitForStderr(/"msg":"listening on (ws:\/\/[^"]+)"/, timeoutMs);
    return (m as RegExpMatchArray)[1]!;
  }

  closeStdin(): void {
    this.child.stdin.end();
  }

  /** Waits for the process to exit, bounded. */
  async waitExit(timeoutMs = this.readTimeoutMs): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the server did not exit within ${timeoutMs} ms${this.context()}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** Kills the child if it still runs and removes the temporary CODEX_HOME. Idempotent. */
  async dispose(): Promise<void> {
    if (!this.exitStatus) {
      this.child.kill('SIGKILL');
      await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, 2_000))]);
    }
    live.delete(this);
    if (this.ownsHome) rmSync(this.codexHome, { recursive: true, force: true });
  }

  private onStdout(text: string): void {
    if (text === '') return;
    this.stdoutText += text;
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop()!;
    for (const line of parts) {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        this.badStdoutLines.push(line);
        continue;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        this.badStdoutLines.push(line);
        continue;
      }
      const m = value as RpcMessage;
      this.rawLines.set(m, line);
      this.inbox.push(m);
    }
  }

  private context(): string {
    const tail = this.stderrText.length > 1_500 ? `...${this.stderrText.slice(-1_500)}` : this.stderrText;
    return `\n--- stderr ---\n${tail}`;
  }
}

/** A WebSocket client for `app-server --listen ws://...`: one message per text frame. */
export class WsTestClient extends RpcPeer {
  /** Raw text of every frame received. */
  readonly frames: string[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  protected readonly inbox: Inbox;

  private constructor(
    readonly socket: WebSocket,
    readonly readTimeoutMs: number,
  ) {
    super();
    this.inbox = new Inbox(() => '');
    socket.on('message', (data, isBinary) => {
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      const text = buf.toString('utf8');
      this.frames.push(isBinary ? `<binary>${text}` : text);
      try {
        this.inbox.push(JSON.parse(text) as RpcMessage);
      } catch {
        this.inbox.push({ unparsable: text });
      }
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', (code, reason) => {
        this.inbox.fail(new Error(`the socket closed (${code})`));
        resolve({ code, reason: reason.toString() });
      });
    });
    socket.on('error', () => {});
  }

  static connect(url: string, readTimeoutMs = DEFAULT_READ_TIMEOUT_MS): Promise<WsTestClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { perMessageDeflate: false });
      const timer = setTimeout(() => {
        socket.terminate();
        reject(new Error(`could not connect to ${url} within ${readTimeoutMs} ms`));
      }, readTimeoutMs);
      socket.once('open', () => {
        clearTimeout(timer);
        resolve(new WsTestClient(socket, readTimeoutMs));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Sends one text frame. */
  sendText(text: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.send(text, { binary: false }, (err) => (err ? reject(err) : resolve())),
    );
  }

  protected sendMessageText(text: string): Promise<void> {
    return this.sendText(text);
  }

  next(timeoutMs = this.readTimeoutMs): Promise<RpcMessage> {
    return this.inbox.next('the next frame', timeoutMs);
  }

  /** Fails if any frame arrives within `ms`. */
  async expectNoMessage(ms = 200): Promise<void> {
    const before = this.frames.length;
    if (this.inbox.pending > 0) throw new Error(`unread frames: ${this.frames.slice(-3).join(' | ')}`);
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.frames.length !== before)
      throw new Error(`unexpected frames: ${this.frames.slice(before).join(' | ')}`);
  }

  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** Closes the socket (terminates it if the close handshake takes too long). */
  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    this.socket.close();
    const timer = setTimeout(() => this.socket.terminate(), 1_000);
    await this.closed;
    clearTimeout(timer);
  }
}
