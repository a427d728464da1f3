/**
 * A scope's request queue (codex's per-key request queues): requests of one scope, from every
 * connection, run one at a time in arrival order. A handler may leave work for after its reply
 * (`ctx.after`), such as the notifications that follow a login; that work still belongs to the
 * request, so the next request of the scope waits for it too. The reply itself is not held back:
 * the client gets its answer first, then the follow-up notifications, as spec C.2 orders them.
 */
import { later, type Behaviour, type Message } from '../../src/runtime/actor.js';
import { packAsTuple } from '../../src/codec/msgpack.js';
import { BrokerError } from '../../src/protocol/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Session } from '../connection/connection.machine.js';
import type { HandlerContext } from '../../src/broker/handlers.js';

export const ScopeMessage = { request: 'scope.request' } as const;

export interface ScopeRequestBody {
  method: string;
  params: unknown;
  connectionId: string;
  session: Session;
}

/**
 * A scope request built by the broker. Its envelope carries it as a tuple (see `packAsTuple`): on
 * every scoped request the member names, the session's five included, were most of its bytes and
 * of its encoding cost. The scope actor gets a `ScopeRequest` back.
 */
export class ScopeRequest implements ScopeRequestBody {
  constructor(
    readonly method: string,
    readonly params: unknown,
    readonly connectionId: string,
    readonly session: Session,
  ) {}
}

type ScopeRequestTuple = [string, unknown, string, [string, string, boolean, boolean, string[]]];

packAsTuple(
  0x10,
  ScopeRequest,
  ({ method, params, connectionId, session: s }): ScopeRequestTuple => [
    method,
    params,
    connectionId,
    [s.clientName, s.clientVersion, s.experimentalApi, s.requestAttestation, s.optOutNotificationMethods],
  ],
  ([method, params, connectionId, s]: ScopeRequestTuple): ScopeRequest =>
    new ScopeRequest(method, params, connectionId, {
      clientName: s[0],
      clientVersion: s[1],
      experimentalApi: s[2],
      requestAttestation: s[3],
      optOutNotificationMethods: s[4],
    }),
);

export type ScopedHandler = (params: unknown, ctx: HandlerContext) => unknown;

interface Queued {
  body: ScopeRequestBody;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export function scopeQueueBehaviour(options: {
  handlers: Record<string, ScopedHandler>;
  capacity: number;
  log: Logger;
}): Behaviour {
  // An explicit queue rather than a promise chain: a request costs one promise (its answer), and
  // the next one starts as soon as the previous request, follow-ups included, is done.
  let waiting: (Queued | undefined)[] = [];
  let head = 0;
  let queued = 0;
  let busy = false;
  let draining = false;

  function drain(): void {
    if (draining) return;
    draining = true;
    while (!busy && head < waiting.length) {
      const item = waiting[head]!;
      waiting[head++] = undefined;
      if (head === waiting.length) {
        waiting = [];
        head = 0;
      }
      busy = true;
      run(item);
    }
    draining = false;
  }

  function run(item: Queued): void {
    const { body } = item;
    const followUps: (() => Promise<void> | void)[] = [];
    const ctx: HandlerContext = {
      connectionId: body.connectionId,
      session: body.session,
      after: (work) => followUps.push(work),
    };
    const handler = options.handlers[body.method];
    let result: unknown;
    try {
      if (!handler) throw new TypeError(`no handler for ${body.method} in this scope`);
      result = handler(body.params, ctx);
    } catch (e) {
      settle(item, followUps, e, false);
      return;
    }
    if (isThenable(result)) {
      result.then(
        (value) => settle(item, followUps, value, true),
        (e: unknown) => settle(item, followUps, e, false),
      );
    } else {
      settle(item, followUps, result, true);
    }
  }

  function settle(
    item: Queued,
    followUps: (() => Promise<void> | void)[],
    outcome: unknown,
    ok: boolean,
  ): void {
    // Handlers throw ProtocolError / BrokerError (both Errors) or fail unexpectedly.
    if (ok) item.resolve(outcome);
    else item.reject(outcome instanceof Error ? outcome : new Error(String(outcome)));
    // Follow-ups run even after a failure: work already done (a cancelled login) must still be announced.
    if (followUps.length === 0) {
      finish();
      return;
    }
    // Replies travel by microtasks; a macrotask later the answer is in the connection's output.
    setImmediate(() => void runFollowUps(item.body.method, followUps).then(finish));
  }

  async function runFollowUps(method: string, followUps: (() => Promise<void> | void)[]): Promise<void> {
    for (const work of followUps) {
      try {
        await work();
      } catch (e) {
        options.log.error({ method, err: (e as Error).message }, 'follow-up of a request failed');
      }
    }
  }

  function finish(): void {
    queued--;
    busy = false;
    drain();
  }

  return {
    receive(message: Message) {
      if (message.type !== ScopeMessage.request)
        throw new TypeError(`scope queue cannot handle ${message.type}`);
      if (queued >= options.capacity) {
        throw new BrokerError('MAILBOX_FULL', `scope queue is full (${options.capacity})`);
      }
      queued++;
      const body = message.body as ScopeRequestBody;
      const answer = new Promise<unknown>((resolve, reject) => waiting.push({ body, resolve, reject }));
      drain();
      return later(answer);
    },
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
  );
}
