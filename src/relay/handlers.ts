/**
 * The Responses relay's requests: `thread/start`, `turn/start`, `turn/interrupt`,
 * `thread/compact/start` (a compaction turn) and `thread/realtime/start` (WebRTC call creation,
 * actors/thread/realtime.ts). Each thread is
 * an actor (`thread/<id>`) whose subscribers are the connection that started it and any that
 * started turns on it; its turns stream back to them. When a connection closes it stops being a
 * subscriber, and a thread left without subscribers stops, aborting its stream and closing its
 * socket. Threads live in memory only (Gatehouse keeps no rollouts): `thread/started` reports
 * them as ephemeral.
 */
import type { BrokerServices } from '../broker/services.js';
import type { HandlerContext, HandlerTable } from '../broker/handlers.js';
import { CODEX_COMPAT_VERSION } from '../broker/server-info.js';
import { invalidRequest } from '../protocol/errors.js';
import type { realtimeRequests } from '../protocol/methods/realtime.js';
import type { threadRequests } from '../protocol/methods/thread.js';
import {
  ThreadMessage,
  threadAddress,
  threadBehaviour,
  type StartTurnBody,
  type ThreadDeps,
  type TurnView,
} from '../../actors/thread/thread.actor.js';
import type { RealtimeStartBody } from '../../actors/thread/realtime.js';
import { canonicalUuid, uuidParseError, uuidv7 } from './ids.js';
import { DEFAULT_INSTRUCTIONS } from './outbound-headers.js';
import { ensureUpstreamActor } from './upstream.js';

export const DEFAULT_MODEL = 'gpt-5.1-codex';
const MODEL_PROVIDER = 'openai';

type RelayHandlers = Pick<HandlerTable, keyof typeof threadRequests | keyof typeof realtimeRequests>;

export interface RelayOptions {
  /** Tests: a SimulatedClock for the turn machines' retry delays, and the jitter source. */
  clock?: ThreadDeps['clock'];
  random?: () => number;
}

export class Relay {
  /** Thread ids by subscribed connection, to unsubscribe a connection that closes. */
  private readonly threadsOf = new Map<string, Set<string>>();
  private readonly upstream: string;

  constructor(
    private readonly services: BrokerServices,
    private readonly options: RelayOptions = {},
  ) {
    this.upstream = ensureUpstreamActor(services);
  }

  handlers(): RelayHandlers {
    return {
      'thread/start': (params, ctx) => this.startThread(params, ctx),
      'turn/start': (params, ctx) => this.startTurn(params, ctx),
      'turn/interrupt': async (params, ctx) => {
        const address = this.threadOf(params.threadId);
        const answer = await this.services.system.ask<Record<string, never>>(
          address,
          ThreadMessage.interrupt,
          {
            turnId: params.turnId,
          },
        );
        // codex answers the interrupt, then sends `turn/completed`.
        ctx.after(() => this.tellThread(address, ThreadMessage.settle, { turnId: params.turnId }));
        return answer;
      },
      'thread/compact/start': async (params, ctx) => {
        const address = this.threadOf(params.threadId);
        const turn = await this.services.system.ask<TurnView>(address, ThreadMessage.startCompaction, {
          connectionId: ctx.connectionId,
        });
        this.subscribe(ctx.connectionId, threadIdOf(address));
        // codex answers `{}`; the compaction turn's notifications follow.
        ctx.after(() => this.tellThread(address, ThreadMessage.runTurn, { turnId: turn.id }));
        return {};
      },
      'thread/realtime/start': (params, ctx) => {
        const address = this.threadOf(params.threadId);
        this.subscribe(ctx.connectionId, threadIdOf(address));
        const { threadId: _threadId, ...rest } = params;
        const body: RealtimeStartBody = { connectionId: ctx.connectionId, params: rest };
        // Answered `{}` at once, as codex does; the outcome comes as thread/realtime/* notifications.
        ctx.after(() => this.tellThread(address, ThreadMessage.realtimeStart, body));
        return {};
      },
    };
  }

  /** A connection went away: it no longer receives its threads' notifications. */
  connectionClosed(connectionId: string): void {
    const threads = this.threadsOf.get(connectionId);
    this.threadsOf.delete(connectionId);
    for (const threadId of threads ?? []) {
      this.tellThread(threadAddress(threadId), ThreadMessage.unsubscribe, { connectionId });
    }
  }

  private startThread(params: Parameters<RelayHandlers['thread/start']>[0], ctx: HandlerContext) {
    const { services } = this;
    const threadId = uuidv7();
    const model = params.model ?? DEFAULT_MODEL;
    const cwd = params.cwd ?? process.cwd();
    const { clientName, clientVersion } = ctx.session;
    const deps: ThreadDeps = {
      log: services.log,
      auth: services.auth,
      upstream: this.upstream,
      maxRetries: services.settings.streamMaxRetries,
      retryBaseDelayMs: services.settings.retryBaseDelayMs,
      notify: (connectionId, method, p) => services.notify(connectionId, method, p),
      onStopped: (id) => this.forget(id),
      ...(this.options.clock ? { clock: this.options.clock } : {}),
      ...(this.options.random ? { random: this.options.random } : {}),
    };
    services.system.spawn(
      threadAddress(threadId),
      () =>
        threadBehaviour(
          {
            threadId,
            model,
            baseInstructions: params.baseInstructions ?? DEFAULT_INSTRUCTIONS,
            developerInstructions: params.developerInstructions ?? null,
            subscriber: ctx.connectionId,
            userAgent: services.userAgent(clientName, clientVersion),
            originator: services.originator(clientName),
          },
          deps,
        ),
      // A thread's conversation cannot be rebuilt: a failure stops it rather than restarting it empty.
      { supervision: { strategy: 'escalate' } },
    );
    this.subscribe(ctx.connectionId, threadId);
    const now = Math.floor(Date.now() / 1000);
    const thread = {
      id: threadId,
      sessionId: threadId,
      forkedFromId: null,
      parentThreadId: null,
      preview: '',
      ephemeral: true,
      projectId: null,
      modelProvider: MODEL_PROVIDER,
      model,
      createdAt: now,
      updatedAt: now,
      status: { type: 'idle' as const },
      path: null,
      cwd,
      cliVersion: CODEX_COMPAT_VERSION,
      originator: services.originator(clientName),
      source: 'appServer' as const,
      name: null,
      agentNickname: null,
      agentRole: null,
      turns: [],
    };
    ctx.after(() => services.notify(ctx.connectionId, 'thread/started', { thread }).then(() => undefined));
    // Gatehouse runs no tools: approvals and sandbox are reported with fixed, inert values.
    return {
      thread,
      model,
      modelProvider: MODEL_PROVIDER,
      serviceTier: null,
      cwd,
      approvalPolicy: 'never' as const,
      approvalsReviewer: 'user' as const,
      sandbox: { type: 'readOnly' as const },
      reasoningEffort: null,
    };
  }

  private async startTurn(params: Parameters<RelayHandlers['turn/start']>[0], ctx: HandlerContext) {
    const address = this.threadOf(params.threadId);
    const texts: string[] = [];
    for (const input of params.input) {
      if (input.type !== 'text') {
        throw invalidRequest(`turn/start only supports text input; ${input.type} input is not supported`);
      }
      texts.push((input as { text: string }).text);
    }
    const body: StartTurnBody = {
      connectionId: ctx.connectionId,
      text: texts.join('\n'),
      model: params.model ?? null,
    };
    const turn = await this.services.system.ask<TurnView>(address, ThreadMessage.startTurn, body);
    this.subscribe(ctx.connectionId, threadIdOf(address));
    // The turn's notifications follow its reply.
    ctx.after(() => this.tellThread(address, ThreadMessage.runTurn, { turnId: turn.id }));
    return { turn };
  }

  /** The address of a live thread, or codex's -32600 for an id that is malformed or unknown. */
  private threadOf(threadId: string): string {
    const malformed = uuidParseError(threadId);
    if (malformed) throw invalidRequest(`invalid thread id: ${malformed}`);
    const id = canonicalUuid(threadId);
    const address = threadAddress(id);
    if (!this.services.system.has(address)) throw invalidRequest(`thread not found: ${id}`);
    return address;
  }

  private subscribe(connectionId: string, threadId: string): void {
    let threads = this.threadsOf.get(connectionId);
    if (!threads) this.threadsOf.set(connectionId, (threads = new Set()));
    threads.add(threadId);
  }

  private forget(threadId: string): void {
    for (const threads of this.threadsOf.values()) threads.delete(threadId);
  }

  private tellThread(address: string, type: string, body: unknown): void {
    try {
      this.services.system.tell(address, type, body, undefined, true);
    } catch {
      // The thread stopped in the meantime; there is nothing left to tell it.
    }
  }
}

function threadIdOf(address: string): string {
  return address.slice('thread/'.length);
}

/** The relay's handlers, for callers that do not need `connectionClosed`. */
export function relayHandlers(services: BrokerServices): RelayHandlers {
  return new Relay(services).handlers();
}
