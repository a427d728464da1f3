/**
 * The broker: owns the actor system, the worker pool and every connection. Transports hand it
 * message texts; it classifies them, routes them to the connection actor as envelopes, and tells
 * the embedding host what happens through typed events.
 */
import { EventEmitter } from 'eventemitter3';
import type { Piscina } from 'piscina';
import { ActorSystem } from '../runtime/actor-system.js';
import { createWorkerPool, poolHost } from '../runtime/worker-pool.js';
import { BrokerError, isBrokerError, toErrorData } from '../protocol/errors.js';
import { classifyMessage } from '../protocol/jsonrpc.js';
import {
  ServerRequests,
  type ServerNotificationMethod,
  type ServerRequestMethod,
} from '../protocol/methods/index.js';
import type { ParamsOf, ResultOf } from '../protocol/registry.js';
import { createLogger, type Logger } from '../util/logger.js';
import { DEFAULT_SETTINGS, type GatehouseSettings } from '../config/config.js';
import type { LifecycleState, Session } from '../../actors/connection/connection.machine.js';
import {
  connectionBehaviour,
  ConnectionMessage,
  type ClientRequestBody,
  type ConnectionDeps,
  type LifecycleEvent,
  type ServerNotifyBody,
  type ServerRequestBody,
} from '../../actors/connection/connection.actor.js';
import { wireBehaviour } from '../../actors/connection/wire.actor.js';
import { handlers, type CallMethod, type HandlerContext } from './handlers.js';
import { ServerInfo } from './server-info.js';
import type { Transport } from '../transport/transport.js';
import { InProcessClient, InProcessTransport } from '../transport/in-process-transport.js';

export interface BrokerOptions {
  /** Absolute path reported as `codexHome`; the caller resolves it (see config.ts). */
  codexHome: string;
  settings?: Partial<GatehouseSettings>;
  log?: Logger;
  /** Environment used for the user agent (terminal, originator override). */
  env?: NodeJS.ProcessEnv;
  /** A SimulatedClock for connection machines in tests. */
  clock?: ConnectionDeps['clock'];
}

export interface BrokerEvents {
  connectionOpened: (e: { connectionId: string; transport: Transport['kind'] }) => void;
  connectionStateChanged: (e: { connectionId: string; state: LifecycleState }) => void;
  connectionClosed: (e: { connectionId: string }) => void;
  /** An actor failed beyond its restart budget and was stopped. */
  actorEscalated: (e: { address: string; error: string }) => void;
}

interface ConnectionRecord {
  id: string;
  transport: Transport;
  inFlight: number;
  state: LifecycleState;
}

export const CRYPTO_ACTOR = 'crypto';

export class Broker extends EventEmitter<BrokerEvents> {
  readonly system: ActorSystem;
  readonly settings: GatehouseSettings;
  readonly log: Logger;
  private readonly pool: Piscina;
  private readonly serverInfo: ServerInfo;
  private readonly connections = new Map<string, ConnectionRecord>();
  private nextConnection = 0;
  private nextServerRequestId = 0;
  private accepting = true;
  private closing?: Promise<void>;
  private idleWaiters: (() => void)[] = [];
  /** Per-method deadlines: the registry's defaults, with the configurable ones applied. */
  private readonly serverRequestTimeouts: Record<ServerRequestMethod, number>;

  constructor(private readonly options: BrokerOptions) {
    super();
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.log = options.log ?? createLogger();
    this.serverInfo = new ServerInfo(options.codexHome, options.env);
    this.serverRequestTimeouts = {
      'attestation/generate': this.settings.attestationTimeoutMs,
      'account/chatgptAuthTokens/refresh': this.settings.chatgptAuthTokensRefreshTimeoutMs,
    } satisfies Record<ServerRequestMethod, number>;
    this.system = new ActorSystem({
      log: this.log,
      defaultCapacity: this.settings.mailboxCapacity,
      onEscalation: (address, error) => this.onEscalation(address, error),
    });
    this.pool = createWorkerPool({ maxThreads: this.settings.workerThreads });
    this.system.spawnHost(CRYPTO_ACTOR, poolHost(this.pool, this.system.codec), {
      concurrency: this.settings.workerThreads * 4,
    });
  }

  get codexHome(): string {
    return this.options.codexHome;
  }

  /** Attaches a transport as a new client connection and returns its id. */
  connect(transport: Transport): string {
    if (!this.accepting) throw new BrokerError('SHUTTING_DOWN', 'the broker is shutting down');
    const id = String(++this.nextConnection);
    const record: ConnectionRecord = { id, transport, inFlight: 0, state: 'uninitialized' };
    this.connections.set(id, record);
    const wire = wireAddress(id);
    this.system.spawn(
      wire,
      () =>
        wireBehaviour({
          send: (text) => transport.send(text),
          replied: () => this.requestFinished(record),
        }),
      // What the wire actor holds is output already produced for accepted work; refusing it
      // would lose answers, so its mailbox is not bounded here.
      { capacity: Number.MAX_SAFE_INTEGER },
    );
    this.system.spawn(connectionAddress(id), () => connectionBehaviour(this.connectionDeps(record)), {
      // A connection's state cannot be rebuilt, so a failure closes the connection.
      supervision: { strategy: 'escalate' },
    });
    transport.start({ message: (text) => this.ingest(record, text), closed: () => this.disconnect(id) });
    this.emit('connectionOpened', { connectionId: id, transport: transport.kind });
    return id;
  }

  /** An in-process client connection for an embedding host. */
  connectInProcess(): InProcessClient {
    const transport = new InProcessTransport();
    const id = this.connect(transport);
    const client = new InProcessClient(id, transport);
    transport.client = client;
    return client;
  }

  connectionState(connectionId: string): LifecycleState | undefined {
    return this.connections.get(connectionId)?.state;
  }

  /** Sends a server->client request and resolves with the client's validated answer. */
  request<M extends ServerRequestMethod>(
    connectionId: string,
    method: M,
    params: ParamsOf<(typeof ServerRequests)[M]>,
    options: { timeoutMs?: number } = {},
  ): Promise<ResultOf<(typeof ServerRequests)[M]>> {
    const body: ServerRequestBody = { method, params, ...options };
    return this.system.ask(connectionAddress(connectionId), ConnectionMessage.serverRequest, body);
  }

  /** Sends a notification; resolves false when the connection opted out or is not initialized. */
  notify(connectionId: string, method: ServerNotificationMethod, params: unknown): Promise<boolean> {
    const body: ServerNotifyBody = { method, params, emittedAtMs: Date.now() };
    return this.system.ask(connectionAddress(connectionId), ConnectionMessage.serverNotify, body);
  }

  /** Moves a connection's lifecycle (authenticated, attested); used by the auth and attestation actors. */
  lifecycle(connectionId: string, event: LifecycleEvent): Promise<LifecycleState> {
    return this.system.ask(connectionAddress(connectionId), ConnectionMessage.lifecycle, event);
  }

  /** Asks the worker-hosted crypto actor. */
  crypto<T>(type: string, body: unknown): Promise<T> {
    return this.system.ask<T>(CRYPTO_ACTOR, type, body);
  }

  /** Requests accepted and not yet answered, over all connections. */
  get inFlight(): number {
    let n = 0;
    for (const c of this.connections.values()) n += c.inFlight;
    return n;
  }

  /**
   * Graceful stop: refuse new connections and input, let in-flight requests finish (up to
   * `deadlineMs`), then close every connection and the pool. Idempotent.
   */
  close(deadlineMs = this.settings.shutdownTimeoutMs): Promise<void> {
    this.closing ??= this.shutdown(deadlineMs);
    return this.closing;
  }

  private async shutdown(deadlineMs: number): Promise<void> {
    this.accepting = false;
    for (const c of this.connections.values()) c.transport.stopReading();
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
      await Promise.race([idle, deadline]);
      clearTimeout(timer);
      if (this.inFlight > 0)
        this.log.warn({ inFlight: this.inFlight }, 'shutdown deadline passed with requests in flight');
    }
    // Let the wire actors write what they hold before the transports close.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await Promise.all([...this.connections.values()].map((c) => c.transport.close()));
    for (const id of [...this.connections.keys()]) this.disconnect(id);
    this.system.stopAll();
    await this.pool.destroy();
  }

  private connectionDeps(record: ConnectionRecord): ConnectionDeps {
    const deps: ConnectionDeps = {
      connectionId: record.id,
      wire: wireAddress(record.id),
      system: this.system,
      log: this.log,
      nextServerRequestId: () => this.nextServerRequestId++,
      initializeResult: (s: Session) => this.serverInfo.initializeResult(s.clientName, s.clientVersion),
      dispatch: (method, params, session) => {
        const ctx: HandlerContext = { connectionId: record.id, session };
        const handler = handlers[method as CallMethod] as (p: unknown, c: HandlerContext) => unknown;
        // Synchronous throws become rejections, so every handler error is an error reply.
        return Promise.resolve().then(() => handler(params, ctx));
      },
      serverRequestTimeoutMs: (method) => this.serverRequestTimeouts[method],
      onStateChange: (state) => {
        record.state = state;
        this.emit('connectionStateChanged', { connectionId: record.id, state });
      },
    };
    if (this.options.clock) deps.clock = this.options.clock;
    return deps;
  }

  /** Classifies one inbound text and routes it; never throws, never replies to what spec A.4 ignores. */
  private ingest(record: ConnectionRecord, text: string): void {
    const message = classifyMessage(text);
    const address = connectionAddress(record.id);
    switch (message.kind) {
      case 'invalid':
        this.log.error({ connection: record.id }, `Failed to deserialize JSONRPCMessage: ${message.reason}`);
        return;
      case 'notification':
        this.system.tell(
          address,
          ConnectionMessage.clientNotification,
          { method: message.method },
          undefined,
          true,
        );
        return;
      case 'response':
        this.system.tell(
          address,
          ConnectionMessage.clientResponse,
          { id: message.id, result: message.result },
          undefined,
          true,
        );
        return;
      case 'error':
        this.system.tell(
          address,
          ConnectionMessage.clientError,
          { id: message.id, error: message.error },
          undefined,
          true,
        );
        return;
      case 'request': {
        const replyTo = { address: wireAddress(record.id), correlation: message.id };
        const body: ClientRequestBody = {
          id: message.id,
          method: message.method,
          params: message.params,
          hasParams: message.hasParams,
        };
        record.inFlight++;
        try {
          this.system.tell(address, ConnectionMessage.clientRequest, body, replyTo);
        } catch (e) {
          if (!isBrokerError(e, 'MAILBOX_FULL')) throw e;
          this.log.warn(
            { connection: record.id, method: message.method },
            'connection mailbox full: request refused',
          );
          this.system.deliverReply(replyTo, { ok: false, error: toErrorData(e) });
        }
        return;
      }
    }
  }

  private requestFinished(record: ConnectionRecord): void {
    record.inFlight = Math.max(0, record.inFlight - 1);
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private disconnect(id: string): void {
    const record = this.connections.get(id);
    if (!record) return;
    this.connections.delete(id);
    record.inFlight = 0;
    this.system.stop(connectionAddress(id));
    this.system.stop(wireAddress(id));
    this.emit('connectionClosed', { connectionId: id });
    if (this.inFlight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private onEscalation(address: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.log.error({ actor: address, err: message }, 'actor escalated');
    this.emit('actorEscalated', { address, error: message });
    const connection = /^connection\/(.+)$/.exec(address)?.[1];
    const record = connection ? this.connections.get(connection) : undefined;
    if (record) {
      void record.transport.close();
      this.disconnect(record.id);
    }
  }
}

export function connectionAddress(id: string): string {
  return `connection/${id}`;
}

export function wireAddress(id: string): string {
  return `wire/${id}`;
}

export function createBroker(options: BrokerOptions): Broker {
  return new Broker(options);
}
