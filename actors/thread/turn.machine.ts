/**
 * The retry policy of one turn (spec C.8 step 4), as a machine so that its delays run on the
 * actor clock (a SimulatedClock in tests):
 *
 *   prewarming -> attempting <-> backoff            (WebSocket, up to maxRetries retries)
 *                  | retries used up on WebSocket: one-way fallback to HTTP, retries reset
 *                  v
 *                attempting <-> backoff             (HTTP, up to maxRetries retries)
 *                  -> completed | failed | interrupted
 *
 * The prewarm opens the thread's WebSocket before the first attempt (a no-op when it is open);
 * its failure is not announced and not counted, as in codex. Each retry is announced (`retrying`)
 * before its delay: the backend's Retry-After when it sent one, else the jittered backoff.
 * Failures that another attempt cannot fix end the turn at once.
 */
import { assign, setup } from 'xstate';
import { backoffDelayMs } from '../../src/upstream/backoff.js';
import type { FailureData } from '../../src/upstream/failure.js';

export type Transport = 'ws' | 'http';
export type TurnOutcome = 'completed' | 'failed' | 'interrupted';

/** What the machine does to the outside world; the thread actor supplies them. */
export interface TurnEffects {
  /** Make sure the WebSocket is open; answer with `prewarm.done`, whatever happened. */
  prewarm(): void;
  /** Start one attempt; answer with `attempt.succeeded` or `attempt.failed`. */
  attempt(transport: Transport): void;
  /** Stop the attempt under way, if any. */
  abort(): void;
  /** Retry number `retry` of `max` on `transport` comes after `delayMs`. */
  retrying(p: {
    retry: number;
    max: number;
    delayMs: number;
    transport: Transport;
    failure: FailureData;
  }): void;
  /** WebSocket retries are used up: HTTP from now on, for the rest of the thread. */
  fallingBack(p: { failure: FailureData }): void;
  finish(p: { outcome: TurnOutcome; failure: FailureData | null }): void;
}

export interface TurnInput {
  effects: TurnEffects;
  /** The transport the turn starts on. */
  transport: Transport;
  /** Whether WebSocket failures may fall back to HTTP (not under API-key auth, already HTTP). */
  fallback: boolean;
  maxRetries: number;
  baseDelayMs: number;
  random?: () => number;
}

export type TurnEvent =
  | { type: 'prewarm.done' }
  | { type: 'attempt.succeeded' }
  | { type: 'attempt.failed'; failure: FailureData }
  | { type: 'interrupt' };

interface TurnContext {
  effects: TurnEffects;
  transport: Transport;
  fallback: boolean;
  maxRetries: number;
  baseDelayMs: number;
  random: () => number;
  /** Retries used on the current transport. */
  retries: number;
  delayMs: number;
  failure: FailureData | null;
}

const failureOf = (event: TurnEvent): FailureData =>
  (event as Extract<TurnEvent, { type: 'attempt.failed' }>).failure;

export const turnMachine = setup({
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- XState reads its types from this assertion
  types: {} as { context: TurnContext; events: TurnEvent; input: TurnInput },
  guards: {
    startsOnWebSocket: ({ context }) => context.transport === 'ws',
    canRetry: ({ context, event }) => failureOf(event).retryable && context.retries < context.maxRetries,
    canFallBack: ({ context, event }) =>
      failureOf(event).retryable && context.transport === 'ws' && context.fallback,
  },
  delays: {
    retryDelay: ({ context }) => context.delayMs,
  },
  actions: {
    prewarm: ({ context }) => context.effects.prewarm(),
    attempt: ({ context }) => context.effects.attempt(context.transport),
    abort: ({ context }) => context.effects.abort(),
    scheduleRetry: assign(({ context, event }) => {
      const failure = failureOf(event);
      return {
        retries: context.retries + 1,
        failure,
        delayMs: failure.retryAfterMs ?? backoffDelayMs(context.baseDelayMs, context.retries, context.random),
      };
    }),
    announceRetry: ({ context }) =>
      context.effects.retrying({
        retry: context.retries,
        max: context.maxRetries,
        delayMs: context.delayMs,
        transport: context.transport,
        failure: context.failure!,
      }),
    fallBack: assign(({ event }) => ({ transport: 'http' as const, retries: 0, failure: failureOf(event) })),
    announceFallback: ({ context }) => context.effects.fallingBack({ failure: context.failure! }),
    recordFailure: assign(({ event }) => ({ failure: failureOf(event) })),
  },
}).createMachine({
  id: 'turn',
  initial: 'starting',
  context: ({ input }) => ({
    effects: input.effects,
    transport: input.transport,
    fallback: input.fallback,
    maxRetries: input.maxRetries,
    baseDelayMs: input.baseDelayMs,
    random: input.random ?? Math.random,
    retries: 0,
    delayMs: 0,
    failure: null,
  }),
  on: { interrupt: '.interrupted' },
  states: {
    starting: {
      always: [{ guard: 'startsOnWebSocket', target: 'prewarming' }, { target: 'attempting' }],
    },
    prewarming: {
      entry: 'prewarm',
      on: { 'prewarm.done': 'attempting' },
    },
    attempting: {
      entry: 'attempt',
      on: {
        'attempt.succeeded': 'completed',
        'attempt.failed': [
          { guard: 'canRetry', target: 'backoff', actions: ['scheduleRetry', 'announceRetry'] },
          {
            guard: 'canFallBack',
            target: 'attempting',
            reenter: true,
            actions: ['fallBack', 'announceFallback'],
          },
          { target: 'failed', actions: 'recordFailure' },
        ],
      },
    },
    backoff: {
      after: { retryDelay: 'attempting' },
    },
    completed: {
      type: 'final',
      entry: ({ context }) => context.effects.finish({ outcome: 'completed', failure: null }),
    },
    failed: {
      type: 'final',
      entry: ({ context }) => context.effects.finish({ outcome: 'failed', failure: context.failure }),
    },
    interrupted: {
      type: 'final',
      entry: ['abort', ({ context }) => context.effects.finish({ outcome: 'interrupted', failure: null })],
    },
  },
});
