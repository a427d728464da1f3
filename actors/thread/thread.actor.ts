/**
 * One actor per thread (`thread/<id>`): it holds the conversation, the thread's subscribers and
 * its running turn. A turn streams the backend's events to the subscribers as `turn/started`,
 * `item/started`, `item/agentMessage/delta`, `item/completed` and `turn/completed`; its retries
 * and the fallback to HTTP are the turn machine's, the upstream calls the upstream actor's. The
 * mailbox is never held while a turn runs, so an interrupt gets through at once.
 *
 * A compaction (`thread/compact/start`) is a turn too, of its own kind: its request is the
 * conversation and a compaction trigger (compaction.ts), it streams no agent message, it announces
 * a `contextCompaction` item, and on success the conversation is replaced. Realtime starts
 * (`thread/realtime/start`) run beside turns (realtime.ts).
 *
 * One turn at a time: `turn/start` (or `thread/compact/start`) while a turn runs is refused with
 * -32600 (codex would fold the input into the running turn, which this relay does not do).
 * Replies come before the notifications they announce: the relay tells `turn.run` once the
 * `turn/start` (or `thread/compact/start`) reply is out, and `turn.settle` once the
 * `turn/interrupt` reply is out; `turn/completed` of an interrupted turn waits for that.
 */
import type { Static } from 'typebox';
import { createActor, type Actor, type ActorOptions } from 'xstate';
import type { Behaviour, Message } from '../../src/runtime/actor.js';
import type { ActorSystem } from '../../src/runtime/actor-system.js';
import { invalidRequest } from '../../src/protocol/errors.js';
import type { ServerNotificationMethod } from '../../src/protocol/methods/index.js';
import type { CodexErrorInfo } from '../../src/protocol/methods/thread.js';
import type { Logger } from '../../src/util/logger.js';
import type { AuthSource } from '../../src/upstream/auth-source.js';
import { UpstreamFailure, failureData, type FailureData } from '../../src/upstream/failure.js';
import type { ResponsesEvent } from '../../src/upstream/responses-stream.js';
import { currentAuth } from '../../src/upstream/unauthorized-retry.js';
import {
  assistantMessage,
  developerMessage,
  responsesBody,
  turnHeaders,
  userMessage,
  type ResponseItem,
} from '../../src/relay/outbound-headers.js';
import { uuidv7 } from '../../src/relay/ids.js';
import type { RealtimeCallAnswer } from '../../src/upstream/realtime-call.js';
import {
  UpstreamMessage,
  type RealtimeCallBody,
  type ResponsesEndBody,
  type ResponsesEventBody,
  type ResponsesStartBody,
} from '../upstream/upstream.actor.js';
import { compactedHistory, compactionInput } from './compaction.js';
import { runRealtimeStart, type RealtimeStartBody } from './realtime.js';
import { turnMachine, type Transport, type TurnEffects, type TurnOutcome } from './turn.machine.js';

export function threadAddress(threadId: string): string {
  return `thread/${threadId}`;
}

export const ThreadMessage = {
  /** ask: StartTurnBody -> TurnView (status inProgress). */
  startTurn: 'thread.turn.start',
  /** tell: { turnId }. The `turn/start` reply is out: the turn may begin. */
  runTurn: 'thread.turn.run',
  /** ask: { turnId } -> {} once the turn is stopped. */
  interrupt: 'thread.turn.interrupt',
  /** tell: { turnId }. The `turn/interrupt` reply is out: `turn/completed` may follow. */
  settle: 'thread.turn.settle',
  /** tell: { connectionId }. The connection is gone; without subscribers the thread stops. */
  unsubscribe: 'thread.unsubscribe',
  /** ask: { connectionId } -> TurnView (status inProgress) of a compaction turn; run it with `runTurn`. */
  startCompaction: 'thread.compaction.start',
  /** tell: RealtimeStartBody. The `thread/realtime/start` reply is out: start the session. */
  realtimeStart: 'thread.realtime.start',
} as const;

/** Compactions retry less than turns (codex's MAX_REMOTE_COMPACTION_V2_STREAM_RETRIES). */
const MAX_COMPACTION_RETRIES = 2;

/** codex's prefix of a failed compaction's error text. */
export const COMPACTION_ERROR_PREFIX = 'Error running remote compact task';

export interface StartTurnBody {
  connectionId: string;
  /** The text inputs of `turn/start`, joined by the relay. */
  text: string;
  /** `turn/start.model`: for this turn and the following ones. */
  model: string | null;
}

/** A `Turn` as the protocol shows it (items are never loaded in notifications, as in codex). */
export interface TurnView {
  id: string;
  items: never[];
  itemsView: 'notLoaded';
  status: 'inProgress' | TurnOutcome;
  error: TurnErrorView | null;
  startedAt: number | null;
  completedAt: number | null;
  durationMs: number | null;
}

export interface TurnErrorView {
  message: string;
  codexErrorInfo: Static<typeof CodexErrorInfo> | null;
  additionalDetails: string | null;
}

export interface ThreadInit {
  threadId: string;
  model: string;
  baseInstructions: string;
  developerInstructions: string | null;
  /** The connection that started the thread. */
  subscriber: string;
  userAgent: string;
  originator: string;
}

export interface ThreadDeps {
  log: Logger;
  auth: AuthSource;
  /** Address of the upstream actor. */
  upstream: string;
  maxRetries: number;
  retryBaseDelayMs: number;
  notify(connectionId: string, method: ServerNotificationMethod, params: unknown): Promise<boolean>;
  /** The thread stopped (no subscribers left); the relay forgets it. */
  onStopped?(threadId: string): void;
  clock?: ActorOptions<typeof turnMachine>['clock'];
  random?: () => number;
}

interface AgentItem {
  id: string;
  text: string;
}

interface ActiveTurn {
  id: string;
  /** A user turn, or a compaction (`thread/compact/start`). */
  kind: 'turn' | 'compaction';
  text: string;
  startedAtMs: number;
  /** The `turn/start` reply is out. */
  released: boolean;
  /** An interrupt arrived before the machine ran. */
  interruptRequested: boolean;
  /** `turn/completed` waits for the `turn/interrupt` reply. */
  holdCompletion: boolean;
  machine?: Actor<typeof turnMachine>;
  /** The upstream attempt under way, and what it is for. */
  streamId?: string;
  streamKind?: 'prewarm' | 'attempt';
  /** Agent messages of the attempt under way, by upstream item id. */
  items: Map<string, AgentItem>;
  completedItems: AgentItem[];
  /** A compaction's completed output items (of the attempt under way). */
  outputs: ResponseItem[];
  /** The `contextCompaction` item a compaction announces. */
  compactionItemId?: string;
  completion?: { outcome: TurnOutcome; failure: FailureData | null; atMs: number };
}

export function threadBehaviour(init: ThreadInit, deps: ThreadDeps): Behaviour {
  const { threadId } = init;
  const subscribers: string[] = [init.subscriber];
  const history: ResponseItem[] = init.developerInstructions
    ? [developerMessage(init.developerInstructions)]
    : [];
  let model = init.model;
  /** Sticky for the thread: once fallen back to HTTP, a thread stays on HTTP (as codex does). */
  let transport: Transport = 'ws';
  let turn: ActiveTurn | undefined;
  let streams = 0;
  let stopping = false;
  let system: ActorSystem | undefined;
  let self = '';

  function notify(method: ServerNotificationMethod, params: unknown): void {
    for (const connectionId of subscribers) {
      // In order per connection: each call enqueues at once. A connection that is gone is dropped.
      deps.notify(connectionId, method, params).catch(() => {
        try {
          system?.tell(self, ThreadMessage.unsubscribe, { connectionId });
        } catch {
          // the thread itself is stopping
        }
      });
    }
  }

  /** Tells the upstream actor; `quiet` for clean-up, when the broker may be stopping it too. */
  function tellUpstream(type: string, body: unknown, quiet = false): void {
    try {
      system?.tell(deps.upstream, type, body, undefined, true);
    } catch (e) {
      if (quiet) return;
      deps.log.warn({ thread: threadId, err: (e as Error).message }, 'upstream actor unreachable');
      if (type === UpstreamMessage.responsesStart) {
        const streamId = (body as ResponsesStartBody).streamId;
        const failure = new UpstreamFailure('the upstream client is not running', 'network', {
          retryable: false,
        });
        queueMicrotask(() => onEnd({ streamId, ok: false, failure: failure.toData() }));
      }
    }
  }

  const view = (t: ActiveTurn, status: TurnView['status'], extra: Partial<TurnView> = {}): TurnView => ({
    id: t.id,
    items: [],
    itemsView: 'notLoaded',
    status,
    error: null,
    startedAt: null,
    completedAt: null,
    durationMs: null,
    ...extra,
  });

  function startTurn(body: StartTurnBody): TurnView {
    return begin(body.connectionId, 'turn', body.text, body.model);
  }

  function begin(connectionId: string, kind: ActiveTurn['kind'], text: string, newModel: string | null) {
    if (turn) {
      throw invalidRequest(
        `a turn is already running on thread ${threadId}: interrupt it or wait for turn/completed`,
      );
    }
    subscribe(connectionId);
    if (newModel) model = newModel;
    turn = {
      id: uuidv7(),
      kind,
      text,
      startedAtMs: Date.now(),
      released: false,
      interruptRequested: false,
      holdCompletion: false,
      items: new Map(),
      completedItems: [],
      outputs: [],
    };
    return view(turn, 'inProgress');
  }

  function subscribe(connectionId: string): void {
    if (!subscribers.includes(connectionId)) subscribers.push(connectionId);
  }

  async function runTurn(turnId: string): Promise<void> {
    const t = turn;
    if (!t || t.id !== turnId || t.released) return;
    t.released = true;
    t.startedAtMs = Date.now();
    notify('turn/started', { threadId, turn: view(t, 'inProgress', { startedAt: seconds(t.startedAtMs) }) });
    if (t.kind === 'compaction') {
      t.compactionItemId = uuidv7();
      notify('item/started', {
        item: { type: 'contextCompaction', id: t.compactionItemId },
        threadId,
        turnId: t.id,
        startedAtMs: Date.now(),
      });
    }
    let mode: 'apikey' | 'chatgpt';
    try {
      mode = (await currentAuth(deps.auth)).mode === 'apikey' ? 'apikey' : 'chatgpt';
    } catch (e) {
      finish(t, { outcome: 'failed', failure: failureData(e) });
      return;
    }
    if (turn !== t) return;
    if (t.interruptRequested) {
      finish(t, { outcome: 'interrupted', failure: null });
      return;
    }
    const startOn: Transport = mode === 'apikey' ? 'http' : transport;
    t.machine = createActor(turnMachine, {
      input: {
        effects: effectsFor(t),
        transport: startOn,
        fallback: startOn === 'ws',
        maxRetries:
          t.kind === 'compaction' ? Math.min(deps.maxRetries, MAX_COMPACTION_RETRIES) : deps.maxRetries,
        baseDelayMs: deps.retryBaseDelayMs,
        ...(deps.random ? { random: deps.random } : {}),
      },
      ...(deps.clock ? { clock: deps.clock } : {}),
    });
    t.machine.start();
  }

  function effectsFor(t: ActiveTurn): TurnEffects {
    const start = (kind: 'prewarm' | 'attempt', on: Transport) => {
      t.streamId = `${threadId}/${++streams}`;
      t.streamKind = kind;
      t.items = new Map();
      t.completedItems = [];
      t.outputs = [];
      const identity = {
        threadId,
        turnId: t.id,
        model,
        userAgent: init.userAgent,
        originator: init.originator,
      };
      const request =
        kind === 'prewarm'
          ? null
          : responsesBody({
              threadId,
              model,
              instructions: init.baseInstructions,
              input: t.kind === 'compaction' ? compactionInput(history) : [...history, userMessage(t.text)],
            });
      const body: ResponsesStartBody = {
        streamId: t.streamId,
        replyTo: self,
        threadId,
        connectionIds: [...subscribers],
        transport: on,
        headers: turnHeaders(identity),
        request,
      };
      tellUpstream(UpstreamMessage.responsesStart, body);
    };
    return {
      prewarm: () => start('prewarm', 'ws'),
      attempt: (on) => start('attempt', on),
      abort: () => {
        if (t.streamId) tellUpstream(UpstreamMessage.responsesAbort, { streamId: t.streamId });
        t.streamId = undefined;
      },
      retrying: ({ retry, max, failure }) =>
        notify('error', {
          error: {
            message: `Reconnecting... ${retry}/${max}`,
            codexErrorInfo: errorInfo(failure),
            additionalDetails: failure.message,
          },
          willRetry: true,
          threadId,
          turnId: t.id,
        }),
      fallingBack: ({ failure }) => {
        transport = 'http';
        tellUpstream(UpstreamMessage.responsesRelease, { threadId });
        notify('warning', {
          message: `Falling back from WebSockets to HTTPS transport. ${failure.message}`,
          threadId,
        });
      },
      finish: (p) => finish(t, p),
    };
  }

  function finish(t: ActiveTurn, result: { outcome: TurnOutcome; failure: FailureData | null }): void {
    if (t.completion) return;
    t.streamId = undefined;
    const p = t.kind === 'compaction' ? finishCompaction(t, result) : result;
    t.completion = { ...p, atMs: Date.now() };
    if (t.kind === 'turn') {
      history.push(userMessage(t.text));
      if (p.outcome === 'completed')
        for (const item of t.completedItems) history.push(assistantMessage(item.text));
    }
    if (p.outcome === 'failed' && p.failure) {
      deps.log.info(
        { thread: threadId, turn: t.id, kind: p.failure.kind, status: p.failure.status },
        'turn failed',
      );
      notify('error', { error: turnError(p.failure), willRetry: false, threadId, turnId: t.id });
    }
    if (!t.holdCompletion) complete(t);
  }

  /**
   * A compaction's end: on success the conversation is replaced and the `contextCompaction` item
   * completes; a response without a usable summary fails it; failures carry codex's prefix.
   */
  function finishCompaction(
    t: ActiveTurn,
    p: { outcome: TurnOutcome; failure: FailureData | null },
  ): { outcome: TurnOutcome; failure: FailureData | null } {
    let { outcome, failure } = p;
    if (outcome === 'completed') {
      const compacted = compactedHistory(history, t.outputs, init.developerInstructions);
      if (compacted.ok) {
        history.splice(0, history.length, ...compacted.history);
        notify('item/completed', {
          item: { type: 'contextCompaction', id: t.compactionItemId ?? uuidv7() },
          threadId,
          turnId: t.id,
          completedAtMs: Date.now(),
        });
      } else {
        outcome = 'failed';
        failure = {
          message: compacted.message,
          kind: 'response',
          status: null,
          retryable: false,
          retryAfterMs: null,
        };
      }
    }
    if (outcome === 'failed' && failure) {
      failure = { ...failure, message: `${COMPACTION_ERROR_PREFIX}: ${failure.message}` };
    }
    return { outcome, failure };
  }

  /** Sends `turn/completed` and frees the thread for the next turn. */
  function complete(t: ActiveTurn): void {
    const c = t.completion;
    if (!c || turn !== t) return;
    // The machine is in a final state already: it has stopped itself and its timers.
    turn = undefined;
    notify('turn/completed', {
      threadId,
      turn: view(t, c.outcome, {
        error: c.failure && c.outcome === 'failed' ? turnError(c.failure) : null,
        startedAt: seconds(t.startedAtMs),
        completedAt: seconds(c.atMs),
        durationMs: c.atMs - t.startedAtMs,
      }),
    });
  }

  function interrupt(turnId: string): unknown {
    // codex's "startup interrupt": nothing to stop, answered at once.
    if (turnId === '') return {};
    const t = turn;
    if (!t || t.completion) throw invalidRequest('no active turn to interrupt');
    if (t.id !== turnId) throw invalidRequest(`expected active turn id ${turnId} but found ${t.id}`);
    t.holdCompletion = true;
    if (t.machine) t.machine.send({ type: 'interrupt' });
    else t.interruptRequested = true;
    return {};
  }

  function settle(turnId: string): void {
    const t = turn;
    if (!t || t.id !== turnId) return;
    t.holdCompletion = false;
    complete(t);
  }

  // --- upstream events -------------------------------------------------------------------------

  function onEvent({ streamId, event }: ResponsesEventBody): void {
    const t = turn;
    if (!t || t.streamId !== streamId || t.streamKind !== 'attempt') return;
    handleEvent(t, event);
  }

  function handleEvent(t: ActiveTurn, event: ResponsesEvent): void {
    if (t.kind === 'compaction') {
      // A compaction streams nothing to clients: only its completed output items matter.
      const done = event.item;
      if (event.type === 'response.output_item.done' && typeof done === 'object' && done !== null) {
        t.outputs.push(done as ResponseItem);
      }
      return;
    }
    const startItem = (upstreamId: string | undefined): AgentItem => {
      const item: AgentItem = { id: upstreamId ?? uuidv7(), text: '' };
      t.items.set(item.id, item);
      notify('item/started', {
        item: { type: 'agentMessage', id: item.id, text: '' },
        threadId,
        turnId: t.id,
        startedAtMs: Date.now(),
      });
      return item;
    };
    const outputItem = event.item as { type?: unknown; id?: unknown; content?: unknown } | undefined;
    const itemId = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    switch (event.type) {
      case 'response.output_item.added':
        if (outputItem?.type === 'message') startItem(itemId(outputItem.id));
        return;
      case 'response.output_text.delta': {
        if (typeof event.delta !== 'string') return;
        const id = itemId(event.item_id);
        const item = (id && t.items.get(id)) || startItem(id);
        item.text += event.delta;
        notify('item/agentMessage/delta', { threadId, turnId: t.id, itemId: item.id, delta: event.delta });
        return;
      }
      case 'response.output_item.done': {
        if (outputItem?.type !== 'message') return;
        const id = itemId(outputItem.id);
        const item = (id && t.items.get(id)) || startItem(id);
        const text = outputText(outputItem.content);
        if (text !== undefined) item.text = text;
        t.items.delete(item.id);
        t.completedItems.push(item);
        notify('item/completed', {
          item: { type: 'agentMessage', id: item.id, text: item.text },
          threadId,
          turnId: t.id,
          completedAtMs: Date.now(),
        });
        return;
      }
      default:
        return; // reasoning, usage and the rest are not relayed
    }
  }

  function onEnd(body: ResponsesEndBody): void {
    const t = turn;
    if (!t || t.streamId !== body.streamId || !t.machine) return;
    const kind = t.streamKind;
    t.streamId = undefined;
    if (kind === 'prewarm') {
      if (!body.ok) deps.log.debug({ thread: threadId, err: body.failure.kind }, 'prewarm failed');
      t.machine.send({ type: 'prewarm.done' });
    } else if (body.ok) {
      t.machine.send({ type: 'attempt.succeeded' });
    } else {
      t.machine.send({ type: 'attempt.failed', failure: body.failure });
    }
  }

  // --- subscribers and shutdown ------------------------------------------------------------------

  function startRealtime(body: RealtimeStartBody): void {
    subscribe(body.connectionId);
    const s = system;
    void runRealtimeStart(body.params, {
      threadId,
      auth: deps.auth,
      userAgent: init.userAgent,
      originator: init.originator,
      connectionIds: () => [...subscribers],
      notify,
      createCall: (call: RealtimeCallBody) => {
        if (!s) return Promise.reject(new Error('the thread is not running'));
        return s.ask<RealtimeCallAnswer>(deps.upstream, UpstreamMessage.realtimeCall, call);
      },
    }).catch((e: unknown) =>
      deps.log.warn({ thread: threadId, err: (e as Error).message }, 'realtime start failed'),
    );
  }

  function unsubscribe(connectionId: string): void {
    const index = subscribers.indexOf(connectionId);
    if (index >= 0) subscribers.splice(index, 1);
    if (subscribers.length > 0 || stopping) return;
    // Nobody to stream to: stop the turn and the thread, and let go of the socket.
    stopping = true;
    const s = system;
    queueMicrotask(() => s?.stop(self));
  }

  function release(): void {
    const t = turn;
    turn = undefined;
    if (t) {
      t.machine?.stop();
      if (t.streamId) tellUpstream(UpstreamMessage.responsesAbort, { streamId: t.streamId }, true);
    }
    tellUpstream(UpstreamMessage.responsesRelease, { threadId }, true);
  }

  return {
    receive(message: Message, ctx) {
      system = ctx.system;
      self = ctx.self;
      switch (message.type) {
        case ThreadMessage.startTurn:
          return startTurn(message.body as StartTurnBody);
        case ThreadMessage.startCompaction:
          return begin((message.body as { connectionId: string }).connectionId, 'compaction', '', null);
        case ThreadMessage.realtimeStart:
          return startRealtime(message.body as RealtimeStartBody);
        case ThreadMessage.runTurn:
          return runTurn((message.body as { turnId: string }).turnId);
        case ThreadMessage.interrupt:
          return interrupt((message.body as { turnId: string }).turnId);
        case ThreadMessage.settle:
          return settle((message.body as { turnId: string }).turnId);
        case ThreadMessage.unsubscribe:
          return unsubscribe((message.body as { connectionId: string }).connectionId);
        case UpstreamMessage.responsesEvent:
          return onEvent(message.body as ResponsesEventBody);
        case UpstreamMessage.responsesEnd:
          return onEnd(message.body as ResponsesEndBody);
        default:
          throw new TypeError(`thread actor cannot handle ${message.type}`);
      }
    },
    stopped() {
      release();
      deps.onStopped?.(threadId);
    },
  };
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/** The text of a completed `message` output item, when it has `output_text` parts. */
function outputText(content: unknown): string | undefined {
  if (!Array.isArray(content)) return undefined;
  const parts = content
    .filter((c): c is { type: string; text: string } => {
      const part = c as { type?: unknown; text?: unknown } | null;
      return part?.type === 'output_text' && typeof part.text === 'string';
    })
    .map((c) => c.text);
  return parts.length > 0 ? parts.join('') : undefined;
}

function turnError(failure: FailureData): TurnErrorView {
  return { message: failure.message, codexErrorInfo: errorInfo(failure), additionalDetails: null };
}

/** codex's machine-readable error category for a failed attempt. */
export function errorInfo(failure: FailureData): Static<typeof CodexErrorInfo> | null {
  if (failure.kind === 'refresh' || failure.kind === 'unauthenticated' || failure.status === 401) {
    return 'unauthorized';
  }
  switch (failure.kind) {
    case 'status':
    case 'network':
    case 'timeout':
      return { responseStreamConnectionFailed: { httpStatusCode: failure.status } };
    case 'disconnected':
      return { responseStreamDisconnected: { httpStatusCode: failure.status } };
    case 'response':
      return 'other';
    default:
      return null;
  }
}
