/**
 * Per-connection admission and the answer ledger. Every request read from a connection is entered
 * in its ledger and leaves it when its one answer is written, so the broker always knows which
 * ids still wait. That lets it bound the work one connection holds (past the bound a request is
 * answered -32001 at once) and, when a shutdown's grace period runs out, answer every request
 * still running with an explicit error instead of closing on it in silence.
 */
import type { Behaviour, Message } from '../runtime/actor.js';
import { REPLY, type ReplyMessage } from '../runtime/envelope.js';
import { ErrorCode, ProtocolError, type WireError } from '../protocol/errors.js';
import { encodeError } from '../protocol/jsonrpc.js';
import type { RequestId } from '../protocol/request-id.js';

/** What `data.reason` says in both shutdown errors, so a host tells them from other failures. */
export const SHUTTING_DOWN_REASON = 'serverShuttingDown';

/**
 * A request read after the drain began. codex's `server_draining_error` (-32600, its message); the
 * request was not started, so retrying it on a new server is safe.
 */
export function serverDrainingError(): ProtocolError {
  return new ProtocolError(ErrorCode.InvalidRequest, 'Server is draining; retry after reconnecting', {
    reason: SHUTTING_DOWN_REASON,
  });
}

/**
 * A request still running when the shutdown deadline passed. -32603, not -32600: it was started
 * and may have had effects, so the host cannot assume it did nothing. Never -32001, which means
 * "overloaded, retry" (shared/STYLE.md).
 */
export const SHUTDOWN_ABORTED_ERROR: WireError = {
  code: ErrorCode.Internal,
  message: 'Server shut down before the request finished',
  data: { reason: SHUTTING_DOWN_REASON },
};

/** Asks a connection's wire actor to answer what is still open and then write nothing more. */
export const WIRE_ABANDON = 'wire.abandon';

/** The request ids of one connection that are read and not yet answered. */
export class AnswerLedger {
  /**
   * How many requests are open per id (`ledgerKey`): a client may reuse an id while one is
   * running. A plain count per key, so recording a request allocates no object.
   */
  private open?: Map<string | number | bigint, number>;
  private total = 0;

  get size(): number {
    return this.total;
  }

  opened(id: RequestId): void {
    this.open ??= new Map();
    const key = ledgerKey(id);
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    this.total++;
  }

  /** False when the id was not open (already answered by `takeAll`). */
  answered(id: RequestId): boolean {
    const key = ledgerKey(id);
    const count = this.open?.get(key);
    if (count === undefined) return false;
    if (count === 1) this.open!.delete(key);
    else this.open!.set(key, count - 1);
    this.total--;
    return true;
  }

  /** Every open id, once per open request; the ledger is empty afterwards. */
  takeAll(): RequestId[] {
    const ids: RequestId[] = [];
    for (const [id, count] of this.open ?? []) for (let i = 0; i < count; i++) ids.push(id);
    this.open = undefined;
    this.total = 0;
    return ids;
  }
}

/**
 * A map key per id without building a string per request (this runs twice for each one): Map keys
 * keep the string "1" and the number 1 apart by type, and an id that comes back from an envelope
 * as a bigint within the safe range is the same key as the number it was (and is written the same).
 */
function ledgerKey(id: RequestId): string | number | bigint {
  if (typeof id !== 'bigint') return id;
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : id;
}

/**
 * Wraps a connection's wire actor: replies are checked off the ledger as they are written, and
 * `WIRE_ABANDON` answers every open request with `SHUTDOWN_ABORTED_ERROR`, after which the wire
 * writes nothing (a handler finishing later would be a second answer to the same request).
 * Going through the wire's mailbox keeps the order: replies queued before the abandon are written
 * as they are.
 */
export function ledgerWireBehaviour(
  ledger: AnswerLedger,
  inner: Behaviour,
  out: { send(text: string): void; abandoned(count: number): void },
): Behaviour {
  let sealed = false;
  return {
    receive(message: Message, ctx) {
      if (sealed) return undefined;
      if (message.type === WIRE_ABANDON) {
        const ids = ledger.takeAll();
        for (const id of ids) out.send(encodeError(id, SHUTDOWN_ABORTED_ERROR));
        sealed = true;
        out.abandoned(ids.length);
        return undefined;
      }
      if (message.type === REPLY) ledger.answered((message.body as ReplyMessage).correlation);
      return inner.receive(message, ctx);
    },
    stopped: () => inner.stopped?.(),
  };
}
