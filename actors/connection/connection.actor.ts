/**
 * The connection actor: drives the connection machine with what the client sends, runs handlers
 * for dispatched requests, and keeps the table of server->client requests waiting for an answer.
 */
import { createActor, type Actor, type ActorOptions } from 'xstate';
import { later, type Behaviour, type Message } from '../../src/runtime/actor.js';
import { packAsTuple } from '../../src/codec/msgpack.js';
import type { ActorSystem } from '../../src/runtime/actor-system.js';
import {
  BrokerError,
  invalidRequest,
  type ProtocolError,
  type WireError,
} from '../../src/protocol/errors.js';
import { decodeClientRequest } from '../../src/protocol/request-decoder.js';
import type { RequestId } from '../../src/protocol/request-id.js';
import { ServerRequests, type ServerRequestMethod } from '../../src/protocol/methods/index.js';
import { explainInvalid } from '../../src/protocol/registry.js';
import type { Logger } from '../../src/util/logger.js';
import {
  connectionMachine,
  gateReadyRequest,
  lifecycleOf,
  type ConnectionEffects,
  type LifecycleState,
  type Session,
} from './connection.machine.js';
import { WIRE_NOTIFY, WIRE_REQUEST, type WireNotification, type WireServerRequest } from './wire.actor.js';

/** Message types the connection actor accepts. */
export const ConnectionMessage = {
  clientRequest: 'client.request',
  clientResponse: 'client.response',
  clientError: 'client.error',
  clientNotification: 'client.notification',
  serverRequest: 'server.request',
  serverNotify: 'server.notify',
  lifecycle: 'lifecycle',
  transportClosed: 'transport.closed',
} as const;

export interface ClientRequestBody {
  id: RequestId;
  method: string;
  params: unknown;
  hasParams: boolean;
}

/** A client request as the broker sends it: its envelope carries it as a tuple (see `packAsTuple`). */
export class ClientRequest implements ClientRequestBody {
  constructor(
    readonly id: RequestId,
    readonly method: string,
    readonly params: unknown,
    readonly hasParams: boolean,
  ) {}
}

packAsTuple(
  0x11,
  ClientRequest,
  (r): [RequestId, string, unknown, boolean] => [r.id, r.method, r.params, r.hasParams],
  ([id, method, params, hasParams]: [RequestId, string, unknown, boolean]) =>
    new ClientRequest(id, method, params, hasParams),
);

export interface ServerRequestBody {
  method: ServerRequestMethod;
  params: unknown;
  /** Overrides the registry's per-method deadline (configuration, tests). */
  timeoutMs?: number;
}

export interface ServerNotifyBody {
  method: string;
  params: unknown;
  emittedAtMs: number;
}

export type LifecycleEvent = 'auth.authenticated' | 'auth.cleared' | 'attestation.answered';

export interface ConnectionDeps {
  connectionId: string;
  /** Address of this connection's wire actor. */
  wire: string;
  system: ActorSystem;
  log: Logger;
  /** The broker-wide counter of server->client request ids (one counter, from 0). */
  nextServerRequestId(): number;
  initializeResult(session: Session): unknown;
  /** Runs a dispatched request's handler. */
  dispatch(method: string, params: unknown, session: Session): Promise<unknown>;
  serverRequestTimeoutMs(method: ServerRequestMethod): number;
  onStateChange(state: LifecycleState, session: Session | null): void;
  /** A SimulatedClock in tests. */
  clock?: ActorOptions<typeof connectionMachine>['clock'];
}

interface Pending {
  method: ServerRequestMethod;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

type Outcome =
  | { kind: 'error'; error: ProtocolError }
  | { kind: 'result'; value: unknown }
  | { kind: 'dispatched'; promise: Promise<unknown> };

export function connectionBehaviour(deps: ConnectionDeps): Behaviour {
  const { system, log, wire } = deps;
  // Server->client requests waiting for an answer; made on first use (most connections never get one).
  let pending: Map<number, Pending> | undefined;
  let outcome: Outcome | undefined;
  let lastState: LifecycleState = 'uninitialized';

  // The machine decides; these effects record its decision for `receive` to return.
  const effects: ConnectionEffects = {
    replyError: ({ message }) => {
      outcome = { kind: 'error', error: invalidRequest(message) };
    },
    replyInitialize: ({ session }) => {
      outcome = { kind: 'result', value: deps.initializeResult(session) };
    },
    dispatch: ({ request, session }) => {
      outcome = { kind: 'dispatched', promise: deps.dispatch(request.method, request.params, session) };
    },
    expireServerRequest: ({ key }) => {
      const id = Number(key);
      const p = pending?.get(id);
      if (!p) return;
      pending!.delete(id);
      log.warn({ connection: deps.connectionId, id, method: p.method }, 'server request timed out');
      p.reject(new BrokerError('REQUEST_TIMEOUT', `${p.method} was not answered in time`));
    },
    closeConnection: () => {
      if (!pending) return;
      for (const [, p] of pending) p.reject(new BrokerError('CONNECTION_CLOSED', 'connection closed'));
      pending.clear();
    },
  };
  const machine: Actor<typeof connectionMachine> = createActor(connectionMachine, {
    input: { effects },
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  machine.subscribe((snapshot) => {
    const state = lifecycleOf(snapshot.value);
    if (state !== lastState) {
      lastState = state;
      deps.onStateChange(state, snapshot.context.session);
    }
  });
  machine.start();

  const session = (): Session | null => machine.getSnapshot().context.session;

  function handleRequest(body: ClientRequestBody): unknown {
    const request = decodeClientRequest(body);
    if (isReady(lastState)) {
      // Past initialize a request cannot change the lifecycle: the ready states' own gate decides,
      // without an XState event.
      const s = session()!;
      const gate = gateReadyRequest(request, s);
      if (gate.kind === 'error') throw invalidRequest(gate.message);
      return later(deps.dispatch(gate.request.method, gate.request.params, s).then(resultJson));
    }
    outcome = undefined;
    machine.send({ type: 'rpc.request', request });
    const o = outcome as Outcome | undefined;
    if (!o) throw new BrokerError('CONNECTION_CLOSED', 'connection closed');
    if (o.kind === 'error') throw o.error;
    if (o.kind === 'result') return resultJson(o.value);
    return later(o.promise.then(resultJson));
  }

  function sendServerRequest(body: ServerRequestBody): unknown {
    const s = session();
    if (!s) throw new BrokerError('NOT_INITIALIZED', 'the connection has not completed initialize');
    if (lastState === 'closed') throw new BrokerError('CONNECTION_CLOSED', 'connection closed');
    const id = deps.nextServerRequestId();
    const promise = new Promise<unknown>((resolve, reject) => {
      (pending ??= new Map()).set(id, { method: body.method, resolve, reject });
    });
    const request: WireServerRequest = { id, method: body.method, params: body.params ?? {} };
    system.tell(wire, WIRE_REQUEST, request);
    machine.send({
      type: 'serverRequest.sent',
      key: String(id),
      timeoutMs: body.timeoutMs ?? deps.serverRequestTimeoutMs(body.method),
    });
    return later(promise);
  }

  function settle(id: RequestId, outcomeOf: (p: Pending) => void): void {
    const p = typeof id === 'number' ? pending?.get(id) : undefined;
    if (!p) {
      log.warn({ connection: deps.connectionId }, `could not find callback for ${describeId(id)}`);
      return;
    }
    pending!.delete(id as number);
    machine.send({ type: 'serverRequest.settled', key: String(id) });
    outcomeOf(p);
  }

  return {
    receive(message: Message) {
      switch (message.type) {
        case ConnectionMessage.clientRequest:
          return handleRequest(message.body as ClientRequestBody);
        case ConnectionMessage.clientResponse: {
          const { id, result } = message.body as { id: RequestId; result: unknown };
          settle(id, (p) => {
            const error = explainInvalid(ServerRequests[p.method].result, result);
            if (error) {
              p.reject(new BrokerError('CLIENT_ERROR', `malformed ${p.method} response: ${error}`));
            } else {
              p.resolve(result);
            }
          });
          return;
        }
        case ConnectionMessage.clientError: {
          const { id, error } = message.body as { id: RequestId; error: WireError };
          settle(id, (p) =>
            p.reject(new BrokerError('CLIENT_ERROR', `${p.method} failed with code ${error.code}`, error)),
          );
          return;
        }
        case ConnectionMessage.clientNotification:
          log.info(
            { connection: deps.connectionId, method: (message.body as { method: string }).method },
            '<- notification',
          );
          return;
        case ConnectionMessage.serverRequest:
          return sendServerRequest(message.body as ServerRequestBody);
        case ConnectionMessage.serverNotify: {
          const n = message.body as ServerNotifyBody;
          const s = session();
          // Notifications go only to initialized connections that did not opt out of them.
          if (!s || lastState === 'closed' || s.optOutNotificationMethods.includes(n.method)) return false;
          const out: WireNotification = { method: n.method, params: n.params, emittedAtMs: n.emittedAtMs };
          system.tell(wire, WIRE_NOTIFY, out);
          return true;
        }
        case ConnectionMessage.lifecycle:
          machine.send({ type: message.body as LifecycleEvent });
          return lastState;
        case ConnectionMessage.transportClosed:
          machine.send({ type: 'transport.closed' });
          return;
        default:
          throw new TypeError(`connection actor cannot handle ${message.type}`);
      }
    },
    stopped() {
      machine.send({ type: 'transport.closed' });
      machine.stop();
    },
  };
}

function isReady(state: LifecycleState): boolean {
  return state === 'initialized' || state === 'authenticated' || state === 'attested';
}

/**
 * A client request's reply reaches the wire actor as the result's JSON text: the wire writes it
 * as is, and one string is far cheaper to put in an envelope than the result's object tree.
 */
function resultJson(value: unknown): string {
  return JSON.stringify(value ?? null);
}

/** codex's log wording for an answer nobody waits for: `Integer(12345)` / `String("x")`. */
function describeId(id: RequestId): string {
  return typeof id === 'string' ? `String(${JSON.stringify(id)})` : `Integer(${String(id)})`;
}
