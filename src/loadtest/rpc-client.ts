/**
 * The JSON-RPC side of one simulated client: numbered requests matched to their answers, server
 * requests handed to the session, notifications waited for. Every wait is bounded, and a link
 * that goes away fails whatever is pending with the reason, so a session never hangs.
 */
import type { ClientLink, Message } from './client-link.js';

export interface RpcError {
  code: number | string;
  message: string;
}

export type Outcome = { ok: true; result: Record<string, unknown> } | { ok: false; error: RpcError };

interface Waiter {
  match: (m: Message) => boolean;
  found: (m: Message) => void;
  failed: (e: RpcError) => void;
}

export class RpcClient {
  /** Why the link ended; undefined while it is up. */
  closedBecause: string | undefined;
  /** Settles with the reason once the link is gone. */
  readonly closed: Promise<string>;
  private linkGone: (reason: string) => void = () => undefined;
  private nextId = 1;
  private readonly pending = new Map<number, (o: Outcome) => void>();
  private readonly waiters = new Set<Waiter>();

  constructor(
    private readonly link: ClientLink,
    /** Called for every request the server sends; the session decides whether to answer. */
    private readonly onServerRequest: (request: Message) => void,
    private readonly timeoutMs: number,
  ) {
    link.onMessage = (m) => this.received(m);
    link.onInvalid = (text) =>
      this.fail({ code: 'invalid-output', message: `not a JSON-RPC message: ${text}` });
    this.closed = new Promise((resolve) => (this.linkGone = resolve));
    link.onClose = (reason) => {
      this.closedBecause = reason;
      this.fail({ code: 'closed', message: reason });
      this.linkGone(reason);
    };
  }

  request(method: string, params?: unknown): Promise<Outcome> {
    if (this.closedBecause !== undefined) {
      return Promise.resolve({ ok: false, error: { code: 'closed', message: this.closedBecause } });
    }
    const id = this.nextId++;
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({
          ok: false,
          error: { code: 'timeout', message: `no answer to ${method} within ${this.timeoutMs} ms` },
        });
      }, this.timeoutMs);
      this.pending.set(id, (o) => {
        clearTimeout(timer);
        resolve(o);
      });
      this.link.send(params === undefined ? { id, method } : { id, method, params });
    });
  }

  answer(id: unknown, result: unknown): void {
    this.link.send({ id, result });
  }

  /** The next notification or server request that matches, read from now on. */
  waitFor(match: (m: Message) => boolean, what: string): Promise<Message> {
    return new Promise<Message>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        match,
        found: (m) => {
          done();
          resolve(m);
        },
        failed: (e) => {
          done();
          reject(new RpcFailure(e));
        },
      };
      const timer = setTimeout(
        () => waiter.failed({ code: 'timeout', message: `no ${what} within ${this.timeoutMs} ms` }),
        this.timeoutMs,
      );
      this.waiters.add(waiter);
    });
  }

  close(): void {
    this.link.close();
  }

  private received(m: Message): void {
    if (m.method === undefined) {
      const settle = typeof m.id === 'number' ? this.pending.get(m.id) : undefined;
      if (!settle) return;
      this.pending.delete(m.id as number);
      const error = m.error as { code?: unknown; message?: unknown } | undefined;
      settle(
        error
          ? { ok: false, error: { code: Number(error.code), message: String(error.message) } }
          : { ok: true, result: (m.result ?? {}) as Record<string, unknown> },
      );
      return;
    }
    if (m.id !== undefined) this.onServerRequest(m);
    for (const w of this.waiters) if (w.match(m)) w.found(m);
  }

  private fail(error: RpcError): void {
    for (const settle of this.pending.values()) settle({ ok: false, error });
    this.pending.clear();
    for (const w of [...this.waiters]) w.failed(error);
  }
}

/** A wait that ended without its message (timeout, link gone, broken output). */
export class RpcFailure extends Error {
  constructor(readonly error: RpcError) {
    super(error.message);
  }
}
