/**
 * The remote-control enrollment and token lifecycle of spec B.4, for the one
 * (websocket URL, account, client name) the broker serves:
 *
 *   disabled -> loading -> enrolling? -> attempt -> refreshing? -> connecting -> connected
 *                                          ^                                       |
 *                                          +---------- retrying (backoff) <--------+
 *
 * `attempt` is where a connection attempt looks at the token: valid for more than 300 s goes
 * straight to the handshake, inside the window refreshes proactively (a failed proactive refresh
 * still connects with the old token), missing or expired must refresh first. HTTP, SQLite and the
 * socket are effects given as input; time is the clock of the actor (a SimulatedClock in tests)
 * plus `now()` for token expiry, so every transition is testable without waiting.
 */
import { assign, enqueueActions, fromPromise, setup } from 'xstate';

/** The durable identity of an enrolled server (what the SQLite row holds besides the key). */
export interface EnrollmentIds {
  serverId: string;
  environmentId: string;
}

/** A short-lived server token: memory only. */
export interface CachedToken {
  value: string;
  expiresAtMs: number;
}

/**
 * How a step failed, which decides what happens next:
 * - `unauthorized`: 401/403 (enroll and refresh have run the account's refresh loop already);
 * - `notFound`: refresh 404, the server is unknown: forget it and enroll again at once;
 * - `serverGone`: handshake 404 "Remote app server not found": forget, enroll, then back off;
 * - `transient`: no status, timeout, 429, 5xx: retry later (`retryAfterMs` when the backend said);
 * - `fatal`: anything else (undecodable answer, SQLite, no ChatGPT auth): fails the step as is.
 */
export type FailureKind = 'unauthorized' | 'notFound' | 'serverGone' | 'transient' | 'fatal';

export class StepFailure extends Error {
  override name = 'StepFailure';
  constructor(
    readonly kind: FailureKind,
    /** Worded for a client (JSON-RPC error) and the log; never carries a token. */
    message: string,
    readonly options: {
      retryAfterMs?: number;
      /** The JSON-RPC code when the failure answers a request (an `enable`); -32603 when absent. */
      code?: number;
    } = {},
  ) {
    super(message);
  }

  get retryAfterMs(): number | undefined {
    return this.options.retryAfterMs;
  }

  get code(): number | undefined {
    return this.options.code;
  }
}

export type ConnectionStatus = 'disabled' | 'connecting' | 'connected' | 'errored';

export interface EnrollmentEffects {
  /** Wall-clock time in ms, compared with token expiries. */
  now(): number;
  /** In [0, 1): jitter of backoff and of the refresh retry time. */
  random(): number;
  /** Finds the enrollment key from the credentials in force, and any persisted enrollment. */
  load(): Promise<EnrollmentIds | null>;
  /**
   * Enrolls a new server and persists its row; the token it got comes back with it. The signal
   * of each step aborts when the machine leaves the step (disable): its result is then unwanted.
   */
  enroll(signal: AbortSignal): Promise<{ ids: EnrollmentIds; token: CachedToken }>;
  refresh(ids: EnrollmentIds, signal: AbortSignal): Promise<CachedToken>;
  /** Opens the backend socket; resolves once it is open and serving remote clients. */
  connect(ids: EnrollmentIds, token: CachedToken, signal: AbortSignal): Promise<void>;
  /** Deletes the persisted row (a 404 said the backend no longer knows the server). */
  forget(): void;
  /** Drops the backend socket, if any. */
  disconnect(): void;
  publish(status: ConnectionStatus, environmentId: string | null, reason: string | null): void;
  /** Answers the `enable` that is waiting for its enrollment, if any. */
  settleEnable(failure: StepFailure | null): void;
}

export interface EnrollmentTiming {
  /** A token expiring within this window is refreshed before the handshake (spec: 300 s). */
  refreshWindowMs: number;
  /** Backoff of failed attempts: base, doubled per failure, capped. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** With no Retry-After, a failed refresh is retried after this much, plus up to `refreshRetryJitterMs`. */
  refreshRetryMs: number;
  refreshRetryJitterMs: number;
}

/** codex 0.169.0 as observed (spec B.3): first retries after about 4 s, a 30 s cap, 24-36 s after a failed refresh. */
export const DEFAULT_TIMING: EnrollmentTiming = {
  refreshWindowMs: 300_000,
  retryBaseMs: 4_000,
  retryMaxMs: 30_000,
  refreshRetryMs: 24_000,
  refreshRetryJitterMs: 12_000,
};

export type EnrollmentEvent =
  | { type: 'enable' }
  | { type: 'disable' }
  /** The account in force changed (login, logout, another workspace): start over. */
  | { type: 'account.changed' }
  | { type: 'socket.closed'; reason: string };

export interface EnrollmentContext {
  effects: EnrollmentEffects;
  timing: EnrollmentTiming;
  ids: EnrollmentIds | null;
  token: CachedToken | null;
  /** Set after a failed refresh: no refresh before this time. */
  nextRefreshAtMs: number | null;
  /** An `enable` waits for this enrollment to be found or made. */
  enabling: boolean;
  /** Consecutive failed attempts, for the backoff. */
  failures: number;
  /** Why the last step failed; shown with `errored`. */
  reason: string | null;
  /** The current attempt already failed; an enrollment made during it is followed by a backoff. */
  attemptFailed: boolean;
  /** The wait before the next attempt, decided when the attempt ended. */
  retryDelayMs: number;
  /** The current attempt refreshes a token that is still valid (a failure then still connects). */
  proactive: boolean;
}

export interface EnrollmentInput {
  effects: EnrollmentEffects;
  timing?: Partial<EnrollmentTiming>;
}

function asFailure(error: unknown): StepFailure {
  if (error instanceof StepFailure) return error;
  return new StepFailure('fatal', error instanceof Error ? error.message : String(error));
}

/** The delay before attempt number `failures + 1`. */
export function retryDelayMs(timing: EnrollmentTiming, failures: number, random: number): number {
  const base = Math.min(timing.retryMaxMs, timing.retryBaseMs * 2 ** Math.max(0, failures - 1));
  // Between 0.75 and 1.1 of the base: many servers failing together do not retry together.
  return Math.round(Math.min(timing.retryMaxMs, base * (0.75 + random * 0.35)));
}

function kindOf(error: unknown): FailureKind {
  return asFailure(error).kind;
}

function tokenState(context: EnrollmentContext): 'valid' | 'window' | 'expired' {
  const token = context.token;
  const now = context.effects.now();
  if (!token || token.expiresAtMs <= now) return 'expired';
  return token.expiresAtMs <= now + context.timing.refreshWindowMs ? 'window' : 'valid';
}

/** An attempt shows `connecting`, except that a retry after a failure stays `errored` until it succeeds. */
function attemptStatus(context: EnrollmentContext): ConnectionStatus {
  return context.failures > 0 ? 'errored' : 'connecting';
}

function refreshDeferred(context: EnrollmentContext): boolean {
  return context.nextRefreshAtMs !== null && context.nextRefreshAtMs > context.effects.now();
}

export const enrollmentMachine = setup({
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- XState reads its types from this assertion
  types: {} as { context: EnrollmentContext; events: EnrollmentEvent; input: EnrollmentInput },
  actors: {
    load: fromPromise<EnrollmentIds | null, EnrollmentEffects>(({ input }) => input.load()),
    enroll: fromPromise<{ ids: EnrollmentIds; token: CachedToken }, EnrollmentEffects>(({ input, signal }) =>
      input.enroll(signal),
    ),
    refresh: fromPromise<CachedToken, { effects: EnrollmentEffects; ids: EnrollmentIds }>(
      ({ input, signal }) => input.effects.refresh(input.ids, signal),
    ),
    connect: fromPromise<void, { effects: EnrollmentEffects; ids: EnrollmentIds; token: CachedToken }>(
      ({ input, signal }) => input.effects.connect(input.ids, input.token, signal),
    ),
  },
  actions: {
    publish: ({ context }, { status }: { status: ConnectionStatus }) =>
      context.effects.publish(
        status,
        status === 'disabled' ? null : (context.ids?.environmentId ?? null),
        status === 'errored' ? context.reason : null,
      ),
    settleEnable: enqueueActions(({ context, enqueue }, { failure }: { failure: StepFailure | null }) => {
      if (!context.enabling) return;
      context.effects.settleEnable(failure);
      enqueue.assign({ enabling: false });
    }),
    forget: ({ context }) => context.effects.forget(),
    disconnect: ({ context }) => context.effects.disconnect(),
    /** Ends a failed attempt: count it, note why, and decide how long to wait. */
    failAttempt: assign(({ context }, { failure }: { failure: StepFailure }) => {
      const failures = context.failures + 1;
      let delay = retryDelayMs(context.timing, failures, context.effects.random());
      if (failure.retryAfterMs !== undefined) delay = Math.max(delay, failure.retryAfterMs);
      return { failures, reason: failure.message, retryDelayMs: delay, attemptFailed: true };
    }),
  },
  guards: {
    hasEnrollment: ({ context }) => context.ids !== null,
    tokenValid: ({ context }) => tokenState(context) === 'valid',
    tokenInWindowRefreshDeferred: ({ context }) =>
      tokenState(context) === 'window' && refreshDeferred(context),
    tokenInWindow: ({ context }) => tokenState(context) === 'window',
    refreshDeferred: ({ context }) => refreshDeferred(context),
    attemptFailed: ({ context }) => context.attemptFailed,
    enabling: ({ context }) => context.enabling,
    proactive: ({ context }) => context.proactive,
  },
  delays: {
    retryDelay: ({ context }) => context.retryDelayMs,
    untilRefreshAllowed: ({ context }) => Math.max(0, (context.nextRefreshAtMs ?? 0) - context.effects.now()),
  },
}).createMachine({
  id: 'remoteControlEnrollment',
  initial: 'disabled',
  context: ({ input }) => ({
    effects: input.effects,
    timing: { ...DEFAULT_TIMING, ...input.timing },
    ids: null,
    token: null,
    nextRefreshAtMs: null,
    failures: 0,
    reason: null,
    attemptFailed: false,
    enabling: false,
    retryDelayMs: 0,
    proactive: false,
  }),
  on: {
    // Already enabled: the answer is the status as it is.
    enable: { actions: [assign({ enabling: true }), { type: 'settleEnable', params: { failure: null } }] },
    // The token stays in memory (0.169.0): enabling again in this process reuses it.
    disable: { target: '.disabled', actions: 'disconnect' },
    'account.changed': {
      target: '.loading',
      actions: ['disconnect', assign({ ids: null, token: null, nextRefreshAtMs: null, failures: 0 })],
    },
  },
  states: {
    disabled: {
      entry: { type: 'publish', params: { status: 'disabled' } },
      on: {
        enable: { target: 'loading', actions: assign({ enabling: true }) },
        // Nothing to restart while disabled.
        'account.changed': { actions: assign({ ids: null, token: null, nextRefreshAtMs: null }) },
        disable: {},
      },
    },
    /** Which account and client this is, and whether the server is already enrolled. */
    loading: {
      entry: [
        assign({ failures: 0, attemptFailed: false }),
        { type: 'publish', params: { status: 'connecting' } },
      ],
      // The waiting enable is answered when this step ends.
      on: { enable: {} },
      invoke: {
        src: 'load',
        input: ({ context }) => context.effects,
        onDone: [
          {
            guard: ({ event }) => event.output !== null,
            target: 'attempt',
            actions: [
              assign(({ context, event }) => {
                const ids = event.output!;
                // A token cached for the same server is still good (enable after disable).
                const same = context.ids?.serverId === ids.serverId;
                return { ids, token: same ? context.token : null };
              }),
              { type: 'settleEnable', params: { failure: null } },
            ],
          },
          { target: 'enrolling' },
        ],
        onError: {
          target: 'disabled',
          actions: { type: 'settleEnable', params: ({ event }) => ({ failure: asFailure(event.error) }) },
        },
      },
    },
    enrolling: {
      on: { enable: {} },
      invoke: {
        src: 'enroll',
        input: ({ context }) => context.effects,
        onDone: [
          {
            guard: 'attemptFailed',
            target: 'retrying',
            actions: [
              assign(({ event }) => ({ ids: event.output.ids, token: event.output.token })),
              { type: 'settleEnable', params: { failure: null } },
            ],
          },
          {
            target: 'attempt',
            actions: [
              assign(({ event }) => ({ ids: event.output.ids, token: event.output.token })),
              { type: 'publish', params: ({ context }) => ({ status: attemptStatus(context) }) },
              { type: 'settleEnable', params: { failure: null } },
            ],
          },
        ],
        onError: [
          {
            // An enable is waiting: the error is its answer and nothing stays enabled.
            guard: 'enabling',
            target: 'disabled',
            actions: { type: 'settleEnable', params: ({ event }) => ({ failure: asFailure(event.error) }) },
          },
          {
            target: 'retrying',
            actions: { type: 'failAttempt', params: ({ event }) => ({ failure: asFailure(event.error) }) },
          },
        ],
      },
    },
    /** A connection attempt starts by looking at the token. */
    attempt: {
      entry: assign({ attemptFailed: false, proactive: false }),
      always: [{ guard: 'hasEnrollment', target: 'decide' }, { target: 'enrolling' }],
    },
    decide: {
      always: [
        { guard: 'tokenValid', target: 'connecting' },
        { guard: 'tokenInWindowRefreshDeferred', target: 'connecting' },
        { guard: 'tokenInWindow', target: 'refreshing', actions: assign({ proactive: true }) },
        { guard: 'refreshDeferred', target: 'waitingToRefresh' },
        { target: 'refreshing' },
      ],
    },
    /** A required refresh failed recently: no new refresh before `nextRefreshAtMs`. */
    waitingToRefresh: {
      entry: { type: 'publish', params: { status: 'errored' } },
      after: { untilRefreshAllowed: 'attempt' },
    },
    refreshing: {
      entry: { type: 'publish', params: ({ context }) => ({ status: attemptStatus(context) }) },
      invoke: {
        src: 'refresh',
        input: ({ context }) => ({ effects: context.effects, ids: context.ids! }),
        onDone: {
          target: 'connecting',
          actions: assign(({ event }) => ({ token: event.output, nextRefreshAtMs: null })),
        },
        onError: [
          {
            guard: ({ event }) => kindOf(event.error) === 'notFound',
            target: 'enrolling',
            actions: ['forget', assign({ ids: null, token: null, nextRefreshAtMs: null })],
          },
          {
            guard: ({ event }) => kindOf(event.error) === 'transient',
            target: 'afterTransientRefresh',
            actions: assign(({ context, event }) => {
              const failure = asFailure(event.error);
              const now = context.effects.now();
              const wait =
                failure.retryAfterMs ??
                context.timing.refreshRetryMs +
                  context.effects.random() * context.timing.refreshRetryJitterMs;
              return { nextRefreshAtMs: now + Math.round(wait), reason: failure.message };
            }),
          },
          {
            target: 'retrying',
            actions: { type: 'failAttempt', params: ({ event }) => ({ failure: asFailure(event.error) }) },
          },
        ],
      },
    },
    afterTransientRefresh: {
      always: [
        // The old token is still valid: connect with it (spec B.3, proactive failure).
        { guard: 'proactive', target: 'connecting' },
        {
          target: 'retrying',
          actions: {
            type: 'failAttempt',
            params: ({ context }) => ({ failure: new StepFailure('transient', context.reason ?? '') }),
          },
        },
      ],
    },
    connecting: {
      entry: { type: 'publish', params: ({ context }) => ({ status: attemptStatus(context) }) },
      invoke: {
        src: 'connect',
        input: ({ context }) => ({ effects: context.effects, ids: context.ids!, token: context.token! }),
        onDone: {
          target: 'connected',
          actions: assign({ failures: 0, reason: null }),
        },
        onError: [
          {
            // The token was refused: drop it (the row stays); the next attempt refreshes.
            guard: ({ event }) => kindOf(event.error) === 'unauthorized',
            target: 'retrying',
            actions: [
              assign({ token: null }),
              { type: 'failAttempt', params: ({ event }) => ({ failure: asFailure(event.error) }) },
            ],
          },
          {
            // The backend no longer knows the server: enroll again now, connect after the backoff.
            guard: ({ event }) => kindOf(event.error) === 'serverGone',
            target: 'enrolling',
            actions: [
              'forget',
              assign({ ids: null, token: null, nextRefreshAtMs: null }),
              { type: 'failAttempt', params: ({ event }) => ({ failure: asFailure(event.error) }) },
            ],
          },
          {
            target: 'retrying',
            actions: { type: 'failAttempt', params: ({ event }) => ({ failure: asFailure(event.error) }) },
          },
        ],
      },
    },
    connected: {
      entry: { type: 'publish', params: { status: 'connected' } },
      // Nothing is refreshed while the socket stays open; a lost socket starts a new attempt.
      on: {
        'socket.closed': {
          target: 'retrying',
          actions: assign(({ context, event }) => ({
            reason: event.reason,
            attemptFailed: false,
            retryDelayMs: retryDelayMs(context.timing, 1, context.effects.random()),
          })),
        },
      },
    },
    retrying: {
      entry: [
        'disconnect',
        {
          type: 'publish',
          params: ({ context }) => ({
            status: context.attemptFailed ? ('errored' as const) : ('connecting' as const),
          }),
        },
      ],
      after: { retryDelay: 'attempt' },
      // Asked again while waiting: try now.
      on: {
        enable: {
          target: 'attempt',
          actions: [
            assign({ failures: 0, enabling: true }),
            { type: 'settleEnable', params: { failure: null } },
          ],
        },
      },
    },
  },
});
