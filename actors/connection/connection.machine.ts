/**
 * The lifecycle of one client connection:
 *   uninitialized -> initialized -> authenticated -> attested -> closed
 * Each `rpc.request` event carries an already-decoded request; the guarded transitions below are
 * spec A.6 in order: (1) decode failure, (2) init gate, (3) experimental gate, (4) dispatch. Once
 * initialized, a request can no longer change the lifecycle, and `gateReadyRequest` is the whole of
 * that decision: the ready states apply it, and the connection actor applies it directly, without an
 * XState event (a macrostep per request was a quarter of the CPU time of an `account/read`).
 * Deadlines of server->client requests are delayed events, so tests move time with a
 * SimulatedClock. Effects (replies, dispatch, expiry) come in as the actor's input, so the machine
 * is built once and shared by every connection.
 */
import { assign, enqueueActions, setup } from 'xstate';
import type { DecodedRequest } from '../../src/protocol/request-decoder.js';
import type { RequestId } from '../../src/protocol/request-id.js';
import { isValidHeaderValue } from '../../src/protocol/header-value.js';
import {
  ALREADY_INITIALIZED_MESSAGE,
  NOT_INITIALIZED_MESSAGE,
  experimentalRequiredMessage,
} from '../../src/protocol/errors.js';

export type LifecycleState = 'uninitialized' | 'initialized' | 'authenticated' | 'attested' | 'closed';

/** What a successful `initialize` fixes for the connection's lifetime. */
export interface Session {
  clientName: string;
  clientVersion: string;
  experimentalApi: boolean;
  requestAttestation: boolean;
  optOutNotificationMethods: string[];
}

export type CallRequest = Extract<DecodedRequest, { kind: 'call' }>;
export type InitializeRequest = Extract<DecodedRequest, { kind: 'initialize' }>;

export type ConnectionEvent =
  | { type: 'rpc.request'; request: DecodedRequest }
  | { type: 'auth.authenticated' }
  | { type: 'auth.cleared' }
  | { type: 'attestation.answered' }
  | { type: 'serverRequest.sent'; key: string; timeoutMs: number }
  | { type: 'serverRequest.settled'; key: string }
  | { type: 'serverRequest.timedOut'; key: string }
  | { type: 'transport.closed' };

/** What the machine does to the outside world; each connection actor supplies its own. */
export interface ConnectionEffects {
  replyError(p: { id: RequestId; message: string }): void;
  replyInitialize(p: { request: InitializeRequest; session: Session }): void;
  dispatch(p: { request: CallRequest; session: Session }): void;
  expireServerRequest(p: { key: string }): void;
  closeConnection(): void;
}

export interface ConnectionContext {
  session: Session | null;
  effects: ConnectionEffects;
}

function requestOf(event: ConnectionEvent): DecodedRequest | undefined {
  return event.type === 'rpc.request' ? event.request : undefined;
}

export const connectionMachine = setup({
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- XState reads its types from this assertion
  types: {} as { context: ConnectionContext; events: ConnectionEvent; input: { effects: ConnectionEffects } },
  actions: {
    replyError: ({ context }, p: { id: RequestId; message: string }) => context.effects.replyError(p),
    replyInitialize: ({ context }, p: { request: InitializeRequest; session: Session }) =>
      context.effects.replyInitialize(p),
    dispatch: ({ context }, p: { request: CallRequest; session: Session }) => context.effects.dispatch(p),
    gateReady: ({ context, event }) => {
      const session = context.session!;
      const outcome = gateReadyRequest(requestOf(event)!, session);
      if (outcome.kind === 'error') context.effects.replyError(outcome);
      else context.effects.dispatch({ request: outcome.request, session });
    },
    expireServerRequest: ({ context }, p: { key: string }) => context.effects.expireServerRequest(p),
    closeConnection: ({ context }) => context.effects.closeConnection(),
  },
  guards: {
    isUndecodable: ({ event }) => requestOf(event)?.kind === 'invalid',
    isInitialize: ({ event }) => requestOf(event)?.kind === 'initialize',
    isAcceptableInitialize: ({ event }) => {
      const r = requestOf(event);
      return r?.kind === 'initialize' && isValidHeaderValue(r.params.clientInfo.name);
    },
  },
}).createMachine({
  id: 'connection',
  initial: 'uninitialized',
  context: ({ input }) => ({ session: null, effects: input.effects }),
  on: {
    'serverRequest.sent': {
      actions: enqueueActions(({ enqueue, event }) => {
        enqueue.raise(
          { type: 'serverRequest.timedOut', key: event.key },
          { delay: event.timeoutMs, id: event.key },
        );
      }),
    },
    'serverRequest.settled': {
      actions: enqueueActions(({ enqueue, event }) => enqueue.cancel(event.key)),
    },
    'serverRequest.timedOut': {
      actions: { type: 'expireServerRequest', params: ({ event }) => ({ key: event.key }) },
    },
    'transport.closed': '.closed',
  },
  states: {
    uninitialized: {
      on: {
        'rpc.request': [
          {
            guard: 'isUndecodable',
            actions: { type: 'replyError', params: ({ event }) => undecodable(event.request) },
          },
          {
            guard: 'isAcceptableInitialize',
            target: 'initialized',
            actions: [
              assign({ session: ({ event }) => sessionOf(event.request as InitializeRequest) }),
              {
                type: 'replyInitialize',
                params: ({ context, event }) => ({
                  request: event.request as InitializeRequest,
                  session: context.session!,
                }),
              },
            ],
          },
          {
            guard: 'isInitialize',
            actions: {
              type: 'replyError',
              params: ({ event }) => {
                const r = event.request as InitializeRequest;
                return {
                  id: r.id,
                  message: `Invalid clientInfo.name: '${r.params.clientInfo.name}'. Must be a valid HTTP header value.`,
                };
              },
            },
          },
          {
            actions: {
              type: 'replyError',
              params: ({ event }) => ({ id: event.request.id, message: NOT_INITIALIZED_MESSAGE }),
            },
          },
        ],
      },
    },
    initialized: {
      on: { 'rpc.request': { actions: 'gateReady' }, 'auth.authenticated': 'authenticated' },
    },
    authenticated: {
      on: {
        'rpc.request': { actions: 'gateReady' },
        'auth.cleared': 'initialized',
        'attestation.answered': 'attested',
      },
    },
    attested: {
      on: { 'rpc.request': { actions: 'gateReady' }, 'auth.cleared': 'initialized' },
    },
    closed: { type: 'final', entry: 'closeConnection' },
  },
});

/** What an initialized connection does with a request. */
export type ReadyOutcome =
  { kind: 'error'; id: RequestId; message: string } | { kind: 'dispatch'; request: CallRequest };

/**
 * Spec A.6 for a request once initialized, in order: decode failure, `Already initialized`, the
 * experimental gate, then dispatch. The same in initialized, authenticated and attested.
 */
export function gateReadyRequest(request: DecodedRequest, session: Session): ReadyOutcome {
  if (request.kind === 'invalid') return { kind: 'error', ...undecodable(request) };
  if (request.kind === 'initialize') {
    return { kind: 'error', id: request.id, message: ALREADY_INITIALIZED_MESSAGE };
  }
  if (request.experimental !== undefined && !session.experimentalApi) {
    return { kind: 'error', id: request.id, message: experimentalRequiredMessage(request.experimental) };
  }
  return { kind: 'dispatch', request };
}

function undecodable(request: DecodedRequest): { id: RequestId; message: string } {
  return { id: request.id, message: (request as Extract<DecodedRequest, { kind: 'invalid' }>).message };
}

function sessionOf(request: InitializeRequest): Session {
  const { clientInfo, capabilities } = request.params;
  return {
    clientName: clientInfo.name,
    clientVersion: clientInfo.version,
    experimentalApi: capabilities?.experimentalApi ?? false,
    requestAttestation: capabilities?.requestAttestation ?? false,
    optOutNotificationMethods: capabilities?.optOutNotificationMethods ?? [],
  };
}

export function lifecycleOf(value: unknown): LifecycleState {
  return value as LifecycleState;
}
