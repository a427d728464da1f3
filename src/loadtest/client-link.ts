/**
 * How a simulated client reaches its broker: one JSON-RPC message at a time, whatever carries it.
 * A stdio child (one `gatehouse app-server` process per client, as a host spawning codex has), a
 * WebSocket (the app-server's `--listen`, or the local backend's remote-control client endpoint),
 * or an in-process connection to a broker embedded in this process.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import type { WebSocket as WsSocket } from 'ws';
import type { Broker } from '../broker/broker.js';

export type Message = Record<string, unknown>;

export interface ClientLink {
  send(message: Message): void;
  /** Set by the client's RPC layer; called once per message received. */
  onMessage: (message: Message) => void;
  /** Called for text that is not a JSON-RPC message (the broker broke the protocol). */
  onInvalid: (text: string) => void;
  /** Called once when the link is gone, whichever side ended it. */
  onClose: (reason: string) => void;
  close(): void;
}

const ignore = () => undefined;

export class StdioChildLink implements ClientLink {
  onMessage: (message: Message) => void = ignore;
  onInvalid: (text: string) => void = ignore;
  onClose: (reason: string) => void = ignore;
  readonly pid: number;
  /** Settles when the child has exited, with why. */
  readonly exited: Promise<string>;
  private readonly child: ChildProcessWithoutNullStreams;
  private partial = '';
  private stderr = '';
  private stderrPartial = '';
  /** Called with each whole stderr line (the soak reads the broker's diagnostics lines here). */
  onStderrLine: (line: string) => void = ignore;

  constructor(args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.child.pid ?? 0;
    const decoder = new StringDecoder('utf8');
    this.child.stdout.on('data', (chunk: Buffer) => this.lines(decoder.write(chunk)));
    // Only the tail is kept: it explains a child that died.
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-8192);
      const lines = (this.stderrPartial + chunk).split('\n');
      this.stderrPartial = lines.pop()!;
      for (const line of lines) this.onStderrLine(line);
    });
    // A closed pipe surfaces as an 'error' on stdin; the exit below is what reports it.
    this.child.stdin.on('error', ignore);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        const tail = this.stderr.trim().split('\n').slice(-3).join(' | ');
        const why = `the app-server child ended (${signal ? `signal ${signal}` : `exit code ${code}`})${tail ? `: ${tail}` : ''}`;
        this.onClose(why);
        resolve(why);
      });
    });
  }

  /** The first capture of `pattern` in the child's stderr, waiting up to `timeoutMs`. */
  async stderrMatch(pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = pattern.exec(this.stderr)?.[1];
      if (found !== undefined) return found;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(
          `the app-server child did not print ${pattern} within ${timeoutMs} ms: ${this.stderr.slice(-500)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  send(message: Message): void {
    if (this.child.stdin.writable) this.child.stdin.write(`${JSON.stringify(message)}\n`);
  }

  /** Closes stdin, as a client going away does: the app-server finishes and exits 0. */
  close(): void {
    this.child.stdin.end();
  }

  /**
   * Ends the child the way its host would, closing stdin (the stdio server's end) or with SIGTERM
   * (a `--listen` server ignores stdin), and waits for the exit; SIGKILL after 5 s.
   */
  async stop(how: 'stdin' | 'SIGTERM' = 'stdin'): Promise<void> {
    if (how === 'stdin') this.close();
    else this.child.kill('SIGTERM');
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(kill);
  }

  private lines(text: string): void {
    const buffered = this.partial + text;
    let start = 0;
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n', start)) {
      if (nl > start) deliver(this, buffered.slice(start, nl));
      start = nl + 1;
    }
    this.partial = buffered.slice(start);
  }
}

/** Parses one message; text that is not a JSON object is a protocol violation, reported as such. */
function deliver(link: ClientLink, text: string): void {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    message = undefined;
  }
  if (message !== null && typeof message === 'object' && !Array.isArray(message)) {
    link.onMessage(message as Message);
  } else {
    link.onInvalid(text.length > 200 ? `${text.slice(0, 200)}...` : text);
  }
}

export class WebSocketLink implements ClientLink {
  onMessage: (message: Message) => void = ignore;
  onInvalid: (text: string) => void = ignore;
  onClose: (reason: string) => void = ignore;

  private constructor(private readonly socket: WsSocket) {
    socket.on('message', (data: Buffer) => deliver(this, data.toString('utf8')));
    socket.once('close', (code, reason) =>
      this.onClose(`the WebSocket closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`),
    );
    socket.on('error', ignore);
  }

  /** Opens the socket; `ca` trusts the local backend's certificate authority (wss URLs). */
  static async open(url: string, ca?: Buffer): Promise<WebSocketLink> {
    const { WebSocket } = await import('ws');
    const socket = new WebSocket(url, { ...(ca ? { ca } : {}), perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
      socket.once('unexpected-response', (_req, res) =>
        reject(new Error(`WebSocket handshake to ${url.split('?')[0]} refused: HTTP ${res.statusCode}`)),
      );
    });
    return new WebSocketLink(socket);
  }

  send(message: Message): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(message));
  }

  close(): void {
    this.socket.close(1000);
  }
}

export class InProcessLink implements ClientLink {
  onMessage: (message: Message) => void = ignore;
  onInvalid: (text: string) => void = ignore;
  onClose: (reason: string) => void = ignore;
  private readonly client;

  constructor(broker: Broker) {
    this.client = broker.connectInProcess();
    this.client.on('message', (m) => this.onMessage(m));
    this.client.once('close', () => this.onClose('the in-process connection closed'));
  }

  send(message: Message): void {
    this.client.send(message);
  }

  close(): void {
    this.client.close();
  }
}
