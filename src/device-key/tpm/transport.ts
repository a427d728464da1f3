/**
 * Carries raw TPM 2.0 commands to a TPM named by a TCTI string, one command at a time.
 *
 * Three targets, all speaking the plain command/response byte stream (no framing of their own):
 * swtpm's `--server type=tcp` and `type=unixio` sockets, and a kernel character device such as
 * /dev/tpmrm0 (one write per command, then reads until the response is complete).
 *
 * Every connection gets a generation number. Callers that cache TPM state (loaded object handles)
 * pass the generation they cached it under, so a command never silently lands on a newer
 * connection, where those handles mean nothing or something else.
 */
import { close as closeFd, open as openFd, read as readFd, write as writeFd } from 'node:fs';
import { createConnection, type Socket } from 'node:net';

export type TctiTarget =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'device'; path: string };

export const TCTI_FORMS =
  'device:/dev/tpmrm0 (a TPM character device), swtpm:host=127.0.0.1,port=2321 (swtpm over TCP) or swtpm:path=/run/swtpm.sock (swtpm over a UNIX socket)';

/** The TCTI string cannot be used; the message names the accepted forms. */
export class TctiError extends Error {
  constructor(tcti: string, why: string) {
    super(`invalid TPM TCTI ${JSON.stringify(tcti)}: ${why}; expected ${TCTI_FORMS}`);
    this.name = 'TctiError';
  }
}

/**
 * Parses the TCTI forms tpm2-tools accepts for these targets. `swtpm` defaults like tpm2-tss
 * (localhost, port 2321); `mssim` is refused because its sockets wrap every command in a
 * simulator-specific envelope this transport does not speak.
 */
export function parseTcti(tcti: string): TctiTarget {
  const colon = tcti.indexOf(':');
  const name = colon < 0 ? tcti : tcti.slice(0, colon);
  const conf = colon < 0 ? '' : tcti.slice(colon + 1);
  if (name === 'device') {
    if (!conf.startsWith('/')) throw new TctiError(tcti, 'the device needs an absolute path');
    return { kind: 'device', path: conf };
  }
  if (name !== 'swtpm') {
    const why =
      name === 'mssim' ? 'the mssim protocol is not supported' : `unknown TCTI ${JSON.stringify(name)}`;
    throw new TctiError(tcti, why);
  }
  const fields = new Map<string, string>();
  if (conf !== '') {
    for (const pair of conf.split(',')) {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? '' : pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (!['host', 'port', 'path'].includes(key) || value === '')
        throw new TctiError(tcti, `${JSON.stringify(pair)} is not host=…, port=… or path=…`);
      if (fields.has(key)) throw new TctiError(tcti, `${key} given twice`);
      fields.set(key, value);
    }
  }
  const path = fields.get('path');
  if (path !== undefined) {
    if (fields.size > 1) throw new TctiError(tcti, 'path cannot be combined with host or port');
    return { kind: 'unix', path };
  }
  const portText = fields.get('port') ?? '2321';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535))
    throw new TctiError(tcti, `port ${JSON.stringify(portText)} is not 1–65535`);
  return { kind: 'tcp', host: fields.get('host') ?? 'localhost', port };
}

export type TransportFailure =
  /** The TPM could not be reached (connect or open failed). */
  | 'unreachable'
  /** The connection broke, before or while a command was on it. */
  | 'dropped'
  /** The TPM did not answer in time; the connection was dropped so a late answer cannot be misread. */
  | 'timeout'
  /** The TPM sent bytes that are not a response. */
  | 'protocol'
  /** The transport was closed by its owner. */
  | 'closed';

export class TransportError extends Error {
  constructor(
    readonly kind: TransportFailure,
    message: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

export interface TpmTransport {
  /** The TCTI string this transport was opened with. */
  readonly tcti: string;
  /** Connects unless connected; resolves to the current connection's generation. */
  connect(): Promise<number>;
  /**
   * Sends one command and resolves to the complete response. Without `generation` a missing
   * connection is opened first; with it, the command fails ('dropped') unless that very
   * connection is still open.
   */
  transmit(command: Uint8Array, generation?: number): Promise<Buffer>;
  /** Closes the connection; later calls fail with 'closed'. */
  close(): Promise<void>;
}

export interface TransportOptions {
  /** Per command (and per connection attempt); a hung TPM fails after this long. */
  timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
const HEADER_SIZE = 10;
/** Far above any TPM's response buffer (4 KiB in practice); a bigger size field means garbage. */
const MAX_RESPONSE_SIZE = 0x10000;

/** Opens nothing yet: the first command connects. Throws TctiError for an unusable TCTI string. */
export function openTransport(tcti: string, options: TransportOptions = {}): TpmTransport {
  return new QueuedTransport(tcti, parseTcti(tcti), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
}

interface Connection {
  readonly alive: boolean;
  exchange(command: Uint8Array, timeoutMs: number): Promise<Buffer>;
  close(): void;
}

class QueuedTransport implements TpmTransport {
  private tail: Promise<unknown> = Promise.resolve();
  private connection: Connection | undefined;
  private generation = 0;
  private closed = false;

  constructor(
    readonly tcti: string,
    private readonly target: TctiTarget,
    private readonly timeoutMs: number,
  ) {}

  connect(): Promise<number> {
    return this.enqueue(async () => {
      await this.ensureConnection();
      return this.generation;
    });
  }

  transmit(command: Uint8Array, generation?: number): Promise<Buffer> {
    return this.enqueue(async () => {
      if (generation !== undefined && (generation !== this.generation || !this.connection?.alive))
        throw new TransportError('dropped', 'the connection to the TPM was lost');
      const connection = await this.ensureConnection();
      return connection.exchange(command, this.timeoutMs);
    });
  }

  close(): Promise<void> {
    this.closed = true;
    return this.enqueue(() => {
      this.connection?.close();
      this.connection = undefined;
      return Promise.resolve();
    });
  }

  /** Runs `task` after every earlier one has settled, whatever their outcome. */
  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async ensureConnection(): Promise<Connection> {
    if (this.closed) throw new TransportError('closed', 'the TPM connection is closed');
    if (this.connection?.alive) return this.connection;
    this.connection = undefined;
    const connection =
      this.target.kind === 'device'
        ? await DeviceConnection.open(this.target.path)
        : await SocketConnection.open(this.target, this.timeoutMs);
    this.connection = connection;
    this.generation++;
    return connection;
  }
}

/** The response's total size once its header is in, validated; undefined before that. */
function expectedSize(received: Buffer): number | undefined {
  if (received.length < HEADER_SIZE) return undefined;
  const size = received.readUInt32BE(2);
  if (size < HEADER_SIZE || size > MAX_RESPONSE_SIZE)
    throw new TransportError('protocol', `the TPM sent a response header claiming ${size} bytes`);
  return size;
}

interface Pending {
  resolve(response: Buffer): void;
  reject(error: TransportError): void;
}

class SocketConnection implements Connection {
  private pending: Pending | undefined;
  private received: Buffer = Buffer.alloc(0);
  private failure: TransportError | undefined;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.fail(new TransportError('dropped', error.message)));
    socket.on('close', () => this.fail(new TransportError('dropped', 'the TPM closed the connection')));
    // An idle connection must not keep the process alive; exchange() refs it while it waits.
    socket.unref();
  }

  static open(target: Exclude<TctiTarget, { kind: 'device' }>, timeoutMs: number): Promise<SocketConnection> {
    return new Promise((resolve, reject) => {
      const socket =
        target.kind === 'tcp'
          ? createConnection({ host: target.host, port: target.port, noDelay: true })
          : createConnection({ path: target.path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TransportError('unreachable', `no connection within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const onError = (error: Error) => {
        clearTimeout(timer);
        reject(new TransportError('unreachable', error.message));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new SocketConnection(socket));
      });
    });
  }

  get alive(): boolean {
    return this.failure === undefined;
  }

  exchange(command: Uint8Array, timeoutMs: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new TransportError('timeout', `no response within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const settle = () => {
        clearTimeout(timer);
        this.pending = undefined;
        this.socket.unref();
      };
      this.pending = {
        resolve: (response) => {
          settle();
          resolve(response);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      this.received = Buffer.alloc(0);
      this.socket.ref();
      this.socket.write(command);
    });
  }

  close(): void {
    this.fail(new TransportError('closed', 'the TPM connection is closed'));
  }

  private onData(chunk: Buffer): void {
    if (!this.pending) {
      this.fail(new TransportError('protocol', 'the TPM sent data nobody asked for'));
      return;
    }
    this.received = Buffer.concat([this.received, chunk]);
    let size: number | undefined;
    try {
      size = expectedSize(this.received);
    } catch (error) {
      this.fail(error as TransportError);
      return;
    }
    if (size === undefined || this.received.length < size) return;
    if (this.received.length > size) {
      this.fail(new TransportError('protocol', 'the TPM sent more bytes than its response holds'));
      return;
    }
    const response = this.received;
    this.received = Buffer.alloc(0);
    this.pending.resolve(response);
  }

  /** The first failure sticks: the socket is destroyed and the pending command rejected with it. */
  private fail(error: TransportError): void {
    if (!this.failure) {
      this.failure = error;
      this.socket.destroy();
    }
    this.pending?.reject(this.failure);
  }
}

/**
 * A TPM character device. Reads block a libuv pool thread until the TPM answers, which is how
 * the kernel driver is meant to be used; a timed-out read cannot be interrupted, so the
 * descriptor is closed and the thread is left to return with an error.
 */
class DeviceConnection implements Connection {
  private failure: TransportError | undefined;

  private constructor(private readonly fd: number) {}

  static open(path: string): Promise<DeviceConnection> {
    return new Promise((resolve, reject) => {
      openFd(path, 'r+', (error, fd) => {
        if (error) reject(new TransportError('unreachable', error.message));
        else resolve(new DeviceConnection(fd));
      });
    });
  }

  get alive(): boolean {
    return this.failure === undefined;
  }

  async exchange(command: Uint8Array, timeoutMs: number): Promise<Buffer> {
    if (this.failure) throw this.failure;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const failure = new TransportError('timeout', `no response within ${timeoutMs / 1000} s`);
        this.fail(failure);
        reject(failure);
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.writeThenRead(command), timeout]);
    } catch (error) {
      const failure =
        error instanceof TransportError ? error : new TransportError('dropped', (error as Error).message);
      this.fail(failure);
      throw this.failure ?? failure;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.fail(new TransportError('closed', 'the TPM connection is closed'));
  }

  private async writeThenRead(command: Uint8Array): Promise<Buffer> {
    const written = await new Promise<number>((resolve, reject) => {
      writeFd(this.fd, command, (error, n) => (error ? reject(error) : resolve(n)));
    });
    if (written !== command.length)
      throw new TransportError('dropped', `the device took ${written} of ${command.length} bytes`);
    let received = Buffer.alloc(0);
    for (;;) {
      const chunk = Buffer.alloc(4096);
      const n = await new Promise<number>((resolve, reject) => {
        readFd(this.fd, chunk, 0, chunk.length, null, (error, count) =>
          error ? reject(error) : resolve(count),
        );
      });
      if (n === 0) throw new TransportError('dropped', 'the device returned no response');
      received = Buffer.concat([received, chunk.subarray(0, n)]);
      const size = expectedSize(received);
      if (size === undefined || received.length < size) continue;
      if (received.length > size)
        throw new TransportError('protocol', 'the device returned more than a response');
      return received;
    }
  }

  private fail(error: TransportError): void {
    if (this.failure) return;
    this.failure = error;
    closeFd(this.fd, () => undefined);
  }
}
