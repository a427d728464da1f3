/**
 * A scope's request queue (codex's per-key request queues): requests of one scope, from every
 * connection, run one at a time in arrival order. A handler may leave work for after its reply
 * (`ctx.after`), such as the notifications that follow a login; that work still belongs to the
 * request, so the next request of the scope waits for it too. The reply itself is not held back:
 * the client gets its answer first, then the follow-up notifications, as spec C.2 orders them.
 */
import { later, type Behaviour, type Message } from '../../src/runtime/actor.js';
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

export type ScopedHandler = (params: unknown, ctx: HandlerContext) => unknown;

export function scopeQueueBehaviour(options: {
  handlers: Record<string, ScopedHandler>;
  capacity: number;
  log: Logger;
}): Behaviour {
  let tail: Promise<void> = Promise.resolve();
  let queued = 0;

  async function run(body: ScopeRequestBody, reply: (settle: () => unknown) => void): Promise<void> {
    const followUps: (() => Promise<void> | void)[] = [];
    const ctx: HandlerContext = {
      connectionId: body.connectionId,
      session: body.session,
      after: (work) => followUps.push(work),
    };
    const handler = options.handlers[body.method];
    let result: unknown;
    let failure: unknown;
    let failed = false;
    try {
      if (!handler) throw new TypeError(`no handler for ${body.method} in this scope`);
      result = await handler(body.params, ctx);
    } catch (e) {
      failed = true;
      failure = e;
    }
    reply(() => {
      if (failed) throw failure;
      return result;
    });
    // Follow-ups run even after a failure: work already done (a cancelled login) must still be announced.
    if (followUps.length === 0) return;
    // Replies travel by microtasks; a macrotask later the answer is in the connection's output.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const work of followUps) {
      try {
        await work();
      } catch (e) {
        options.log.error(
          { method: body.method, err: (e as Error).message },
          'follow-up of a request failed',
        );
      }
    }
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
      const answer = new Promise<unknown>((resolve, reject) => {
        tail = tail.then(() =>
          run(body, (settle) => {
            try {
              resolve(settle());
            } catch (e) {
              // Handlers throw ProtocolError / BrokerError (both Errors) or fail unexpectedly.
              reject(e instanceof Error ? e : new Error(String(e)));
            }
          }).finally(() => queued--),
        );
      });
      return later(answer);
    },
  };
}
