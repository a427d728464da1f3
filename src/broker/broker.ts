/**
 * The broker: owns the actor system, the worker pool and every connection. Transports hand it
 * message texts; it classifies them, routes them to the connection actor as envelopes, and tells
 * the embedding host what happens through typed events.
 */
import { EventEmitter } from 'eventemitter3';
import type { Piscina } from 'piscina';
import { ActorSystem } from '../runtime/actor-system.js';
import type { ReplyTo } from '../runtime/envelope.js';
import {
  createWorkerPool,
  lazyPoolHost,
  workerPoolControl,
  type WorkerPoolControl,
} from '../runtime/worker-pool.js';
import { BrokerError, isBrokerError, toErrorData } from '../protocol/errors.js';
import { classifyMessage } from '../protocol/jsonrpc.js';
import {
  ServerRequests,
  type ServerNotificationMethod,
  type ServerRequestMethod,
} from '../protocol/methods/index.js';
import type { ParamsOf, ResultOf } from '../protocol/registry.js';
import { createLogger, type Logger } from '../util/logger.js';
import {
  DEFAULT_CODEX_KEYS,
  DEFAULT_SETTINGS,
  type CodexKeys,
  type GatehouseSettings,
} from '../config/config.js';
import type { LifecycleState, Session } from '../../actors/connection/connection.machine.js';
import {
  ClientRequest,
  connectionBehaviour,
  ConnectionMessage,
  type ConnectionDeps,
  type LifecycleEvent,
  type ServerNotifyBody,
  type ServerRequestBody,
} from '../../actors/connection/connection.actor.js';
import { wireBehaviour } from '../../actors/connection/wire.actor.js';
import { createHandlers, type CallMethod, type HandlerContext, type HandlerTable } from './handlers.js';
import type { BackendClient, BrokerServices } from './services.js';
import { postForm } from './backend-client.js';
import { trustedContext } from '../upstream/trust.js';
import { upstreamGetJson } from '../relay/upstream.js';
import { ClientRequests } from '../protocol/methods/index.js';
import type { Scope } from '../protocol/registry.js';
import { ScopeMessage, ScopeRequest, scopeQueueBehaviour } from '../../actors/scope/scope-queue.actor.js';
import {
  CREDENTIALS_ACTOR,
  CredentialsMessage,
  credentialsBehaviour,
} from '../../actors/account/credentials.actor.js';
import type { AuthSource, UpstreamAuth } from '../upstream/auth-source.js';
import { ANNOUNCE_STORED_LOGIN, AccountService } from '../account/account-service.js';
import { accountInternalHandlers } from '../account/handlers.js';
import { Relay } from '../relay/handlers.js';
import { DeviceKeyService } from '../device-key/device-key-service.js';
import {
  RemoteControlService,
  type RemoteControlStatusEvent,
} from '../remote-control/remote-control-service.js';
import { ServerInfo } from './server-info.js';
import { takeDiagnostics, type BrokerDiagnostics, type ListenerSource } from './diagnostics.js';
import type { Transport } from '../transport/transport.js';
import { InProcessClient, InProcessTransport } from '../transport/in-process-transport.js';
import { AnswerLedger, ledgerWireBehaviour, serverDrainingError, WIRE_ABANDON } from './admission.js';

export interface BrokerOptions {
  /** Absolute path reported as `codexHome`; the caller resolves it (see config.ts). */
  codexHome: string;
  settings?: Partial<GatehouseSettings>;
  /** The codex keys Gatehouse reads (`chatgpt_base_url`, forced login rules). */
  codex?: Partial<CodexKeys>;
  log?: Logger;
  /** Environment: the user agent (terminal, originator override) and `CODEX_CA_CERTIFICATE`. */
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
  /** Remote control's status changed; `reason` says why when it is `errored` (redacted). */
  remoteControlStatusChanged: (e: RemoteControlStatusEvent) => void;
}

interface ConnectionRecord {
  id: string;
  transport: Transport;
  inFlight: number;
  state: LifecycleState;
  /** Set once initialize succeeds. */
  session?: Session;
  /** Ids of the requests read and not yet answered (see admission.ts). */
  ledger: AnswerLedger;
  /** Requests refused with -32001 since the last log line about it (logged at most once a second). */
  refused: number;
  lastRefusalLogMs: number;
}

export const CRYPTO_ACTOR = 'crypto';

/**
 * How long closing one connection may take after the shutdown deadline: writing what is queued
 * and, on a WebSocket, the close handshake. A client that does not read by then loses the rest;
 * it keeps SIGTERM-to-exit within `shutdown_timeout_ms` plus this.
 */
export const TRANSPORT_CLOSE_MS = 1_000;

/** The actor serving each scope's queue. */
export function scopeAddress(scope: Scope): string {
  return `scope/${scope}`;
}

export class Broker extends EventEmitter<BrokerEvents> {
  readonly system: ActorSystem;
  readonly settings: GatehouseSettings;
  readonly codex: CodexKeys;
  readonly log: Logger;
  /** What request handlers may use; built once. */
  readonly services: BrokerServices;
  private readonly handlers: HandlerTable;
  private readonly account: AccountService;
  private readonly relay: Relay;
  /** The device-key methods and their key-store workers. */
  readonly deviceKeys: DeviceKeyService;
  /** Enrollment, the backend socket and its remote clients. */
  readonly remoteControl: RemoteControlService;
  /** Whether credentials are installed: new connections start out authenticated then. */
  private authenticated = false;
  /** Made on the first crypto task (start-up does not wait for worker threads). */
  private pool?: Piscina;
  /** The pool's thread count, and a crash of its threads (chaos tests; see worker-pool.ts). */
  readonly workerPool: WorkerPoolControl = workerPoolControl(() => this.pool);
  private readonly serverInfo: ServerInfo;
  private readonly connections = new Map<string, ConnectionRecord>();
  private nextConnection = 0;
  private nextServerRequestId = 0;
  /** Server requests sent and not yet settled (answered, failed, timed out or closed): diagnostics. */
  private pendingServerRequests = 0;
  private accepting = true;
  /** Set when the drain begins: requests read from then on get `serverDrainingError`. */
  private draining = false;
  private closing?: Promise<void>;
  private idleWaiters: (() => void)[] = [];
  /** Per-method deadlines: the registry's defaults, with the configurable ones applied. */
  private readonly serverRequestTimeouts: Record<ServerRequestMethod, number>;

  constructor(private readonly options: BrokerOptions) {
    super();
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.codex = { ...DEFAULT_CODEX_KEYS, ...options.codex };
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
    const pool = (): Piscina => (this.pool ??= createWorkerPool({ maxThreads: this.settings.workerThreads }));
    this.system.spawnHost(CRYPTO_ACTOR, lazyPoolHost(pool, this.system.codec), {
      concurrency: this.settings.workerThreads * 4,
    });
    this.services = this.createServices(options.env ?? process.env);
    this.account = new AccountService(this.services, (method, params) =>
      this.enqueueScoped('account-auth', method, params),
    );
    this.relay = new Relay(this.services);
    this.deviceKeys = new DeviceKeyService(this.services);
    this.remoteControl = new RemoteControlService(this.services, {
      connect: (transport) => void this.connect(transport),
      statusChanged: (e) => this.emit('remoteControlStatusChanged', e),
    });
    this.handlers = createHandlers(this.account, this.relay, this.deviceKeys, this.remoteControl);
    this.spawnAccountActors();
    this.spawnScopeQueue('remote-control', {});
    void this.enqueueScoped('account-auth', RESTORE_ACCOUNT, null).catch((e: unknown) =>
      this.log.error({ err: (e as Error).message }, 'could not restore the stored login'),
    );
  }

  private createServices(env: NodeJS.ProcessEnv): BrokerServices {
    const system = this.system;
    const auth: AuthSource = {
      current: () => system.ask<UpstreamAuth | null>(CREDENTIALS_ACTOR, CredentialsMessage.current, null),
      unauthorized: (failed) =>
        system.ask<UpstreamAuth>(CREDENTIALS_ACTOR, CredentialsMessage.unauthorized, {
          generation: failed.generation,
        }),
    };
    const secureContext = trustedContext(env);
    const backend: BackendClient = {
      // One 401 loop and one TLS trust: credentialed calls go through the upstream actor.
      getJson: (path, options) => upstreamGetJson(services, path, options),
      postForm: (url, form, options) => postForm(url, form, { ...options, secureContext }),
    };
    const services: BrokerServices = {
      system,
      log: this.log,
      settings: this.settings,
      codex: this.codex,
      codexHome: this.options.codexHome,
      env,
      secureContext,
      auth,
      backend,
      notify: (connectionId, method, params) => this.notify(connectionId, method, params),
      request: (connectionId, method, params) => this.request(connectionId, method, params),
      broadcast: (method, params) => this.broadcast(method, params),
      setAuthenticated: (on) => this.setAuthenticated(on),
      session: (connectionId) => {
        const record = this.connections.get(connectionId);
        return record?.state === 'closed' ? undefined : record?.session;
      },
      lifecycle: (connectionId, event) => this.lifecycle(connectionId, event),
      crypto: (type, body) => this.crypto(type, body),
      userAgent: (name, version) => this.serverInfo.userAgent(name, version),
      originator: (name) => this.serverInfo.originator(name),
    };
    return services;
  }

  private spawnAccountActors(): void {
    this.system.spawn(CREDENTIALS_ACTOR, () =>
      credentialsBehaviour({
        log: this.log,
        forcedWorkspaceIds: this.codex.forcedChatgptWorkspaceIds,
        refreshTimeoutMs: this.settings.chatgptAuthTokensRefreshTimeoutMs,
        askHost: (connectionId, previousAccountId) =>
          this.request(connectionId, 'account/chatgptAuthTokens/refresh', {
            reason: 'unauthorized',
            previousAccountId,
          }),
        refreshManaged: (current) => this.account.refreshManaged(current),
      }),
    );
    this.spawnScopeQueue('account-auth', {
      ...accountInternalHandlers(this.account),
      [RESTORE_ACCOUNT]: () => this.account.restore(),
    });
  }

  /** The actor serving a scope's requests in arrival order, plus broker-internal work on it. */
  private spawnScopeQueue(
    scope: Scope,
    internal: Record<string, (p: unknown, c: HandlerContext) => unknown>,
  ): void {
    const scoped = Object.fromEntries(
      Object.entries(ClientRequests)
        .filter(([, def]) => 'scope' in def && def.scope === scope)
        .map(([method]) => [
          method,
          this.handlers[method as CallMethod] as (p: unknown, c: HandlerContext) => unknown,
        ]),
    );
    this.system.spawn(scopeAddress(scope), () =>
      scopeQueueBehaviour({
        handlers: { ...scoped, ...internal },
        capacity: this.settings.mailboxCapacity,
        log: this.log,
      }),
    );
  }

  /** Puts broker-internal work on a scope's queue (no client request behind it). */
  private enqueueScoped(scope: Scope, method: string, params: unknown): Promise<unknown> {
    const body = new ScopeRequest(method, params, '', INTERNAL_SESSION);
    return this.system.ask(scopeAddress(scope), ScopeMessage.request, body);
  }

  /** Sends a notification to every connection; one that is gone is simply skipped. */
  async broadcast(method: ServerNotificationMethod, params: unknown): Promise<void> {
    await Promise.all(
      [...this.connections.keys()].map((id) => this.notify(id, method, params).catch(() => false)),
    );
  }

  private async setAuthenticated(on: boolean): Promise<void> {
    this.authenticated = on;
    void this.remoteControl
      .authChanged()
      .catch((e: unknown) =>
        this.log.warn({ err: (e as Error).message }, 'remote control: could not follow the account change'),
      );
    await Promise.all(
      [...this.connections.values()]
        .filter((c) => c.state !== 'uninitialized' && c.state !== 'closed')
        .map((c) => this.lifecycle(c.id, on ? 'auth.authenticated' : 'auth.cleared').catch(() => undefined)),
    );
  }

  get codexHome(): string {
    return this.options.codexHome;
  }

  /** Attaches a transport as a new client connection and returns its id. */
  connect(transport: Transport): string {
    if (!this.accepting) throw new BrokerError('SHUTTING_DOWN', 'the broker is shutting down');
    const id = String(++this.nextConnection);
    const record: ConnectionRecord = {
      id,
      transport,
      inFlight: 0,
      state: 'uninitialized',
      ledger: new AnswerLedger(),
      refused: 0,
      lastRefusalLogMs: 0,
    };
    this.connections.set(id, record);
    const wire = wireAddress(id);
    const send = (text: string) => transport.send(text);
    this.system.spawn(
      wire,
      () =>
        ledgerWireBehaviour(
          record.ledger,
          wireBehaviour({ send, replied: () => this.requestFinished(record) }),
          {
            send,
            abandoned: (count) => {
              for (let i = 0; i < count; i++) this.requestFinished(record);
            },
          },
        ),
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
    const answer = this.system.ask<ResultOf<(typeof ServerRequests)[M]>>(
      connectionAddress(connectionId),
      ConnectionMessage.serverRequest,
      body,
    );
    this.pendingServerRequests++;
    const settled = () => void this.pendingServerRequests--;
    answer.then(settled, settled);
    return answer;
  }

  /**
   * Memory and the counts a leak shows in (see diagnostics.ts), after a full GC when Node runs
   * with --expose-gc. `extraEmitters` adds long-lived emitters the caller owns (a listener).
   */
  diagnostics(extraEmitters: Record<string, ListenerSource> = {}): Promise<BrokerDiagnostics> {
    return takeDiagnostics(() => ({
      connections: this.connections.size,
      inFlight: this.inFlight,
      pendingServerRequests: this.pendingServerRequests,
      actors: this.system.stats(),
      workerThreads: this.pool?.threads.length ?? 0,
      workerThreadsMax: this.settings.workerThreads,
      emitters: { broker: this, process, ...extraEmitters },
    }));
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
   * Graceful stop (shared/notes P6): refuse new connections, answer requests read from now on with
   * `serverDrainingError` (-32600, data.reason "serverShuttingDown"), let in-flight requests finish
   * for up to `deadlineMs`, answer those still running with `SHUTDOWN_ABORTED_ERROR` (-32603, same
   * reason), reject the server requests still waiting, then flush and close every connection (at
   * most `TRANSPORT_CLOSE_MS` more) and the pool. Idempotent.
   */
  close(deadlineMs = this.settings.shutdownTimeoutMs): Promise<void> {
    this.closing ??= this.shutdown(deadlineMs);
    return this.closing;
  }

  private async shutdown(deadlineMs: number): Promise<void> {
    this.accepting = false;
    // Input is still read during the grace period: a new request gets the draining error rather
    // than silence, and the client can still answer the server requests that in-flight work waits on.
    this.draining = true;
    this.account.close();
    this.remoteControl.close();
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
      await Promise.race([idle, deadline]);
      clearTimeout(timer);
    }
    for (const c of this.connections.values()) c.transport.stopReading();
    if (this.inFlight > 0) {
      this.log.warn(
        { inFlight: this.inFlight },
        'shutdown deadline passed: answering the requests still running with an error',
      );
      for (const c of this.connections.values()) {
        if (c.ledger.size === 0) continue;
        try {
          this.system.tell(wireAddress(c.id), WIRE_ABANDON, null, undefined, true);
        } catch {
          // The wire actor is gone (its connection failed): nobody is left to answer.
        }
      }
    }
    // Let the wire actors write what they hold before the transports close.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await Promise.all([...this.connections.values()].map((c) => this.closeTransport(c.transport)));
    // Stopping the connection actors rejects the server requests still waiting for an answer.
    for (const id of [...this.connections.keys()]) this.disconnect(id);
    this.system.stopAll();
    await Promise.all([this.deviceKeys.closed(), this.pool?.destroy()]);
  }

  /** Flushes and closes a transport, giving up after `TRANSPORT_CLOSE_MS` (a peer that never reads). */
  private async closeTransport(transport: Transport): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, TRANSPORT_CLOSE_MS + 100)));
    try {
      await Promise.race([transport.close(TRANSPORT_CLOSE_MS), bound]);
    } catch (e) {
      this.log.warn({ transport: transport.kind, err: (e as Error).message }, 'closing a connection failed');
    } finally {
      clearTimeout(timer);
    }
  }

  private connectionDeps(record: ConnectionRecord): ConnectionDeps {
    const deps: ConnectionDeps = {
      connectionId: record.id,
      wire: wireAddress(record.id),
      system: this.system,
      log: this.log,
      nextServerRequestId: () => this.nextServerRequestId++,
      initializeResult: (s: Session) => this.serverInfo.initializeResult(s.clientName, s.clientVersion),
      dispatch: (method, params, session) => this.dispatch(record.id, method as CallMethod, params, session),
      serverRequestTimeoutMs: (method) => this.serverRequestTimeouts[method],
      onStateChange: (state, session) => {
        const justInitialized = record.state === 'uninitialized' && state === 'initialized';
        record.state = state;
        if (session) record.session = session;
        this.emit('connectionStateChanged', { connectionId: record.id, state });
        // Credentials are broker-wide: a client that arrives after a login is authenticated too.
        if (state === 'initialized' && this.authenticated) {
          void this.lifecycle(record.id, 'auth.authenticated').catch(() => undefined);
        }
        if (justInitialized && session) {
          void this.remoteControl
            .connectionInitialized(record.id, session, record.transport.kind)
            .catch((e: unknown) =>
              this.log.warn({ err: (e as Error).message }, 'remote control: could not greet the connection'),
            );
        }
        if (justInitialized) {
          // Behind any login already queued, so the client hears about the credentials in force.
          void this.enqueueScoped('account-auth', ANNOUNCE_STORED_LOGIN, { connectionId: record.id }).catch(
            (e: unknown) =>
              this.log.warn({ err: (e as Error).message }, 'could not announce the stored login'),
          );
        }
      },
    };
    if (this.options.clock) deps.clock = this.options.clock;
    return deps;
  }

  /**
   * Runs a request's handler: on its scope's queue when the method has a scope, else at once.
   * Synchronous throws become rejections, so every handler error is an error reply.
   */
  private dispatch(
    connectionId: string,
    method: CallMethod,
    params: unknown,
    session: Session,
  ): Promise<unknown> {
    const def = ClientRequests[method];
    if ('scope' in def && def.scope) {
      const body = new ScopeRequest(method, params, connectionId, session);
      return this.system.ask(scopeAddress(def.scope), ScopeMessage.request, body);
    }
    const followUps: (() => Promise<void> | void)[] = [];
    const ctx: HandlerContext = { connectionId, session, after: (work) => followUps.push(work) };
    const handler = this.handlers[method] as (p: unknown, c: HandlerContext) => unknown;
    const answer = Promise.resolve().then(() => handler(params, ctx));
    void answer.then(
      () => {
        if (followUps.length === 0) return;
        // The reply reaches the wire by microtasks; follow-ups start a macrotask later.
        setImmediate(() => {
          for (const work of followUps) {
            void Promise.resolve()
              .then(work)
              .catch((e: unknown) =>
                this.log.error({ method, err: (e as Error).message }, 'follow-up failed'),
              );
          }
        });
      },
      () => undefined,
    );
    return answer;
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
        this.forward(record, ConnectionMessage.clientNotification, { method: message.method });
        return;
      case 'response':
        this.forward(record, ConnectionMessage.clientResponse, { id: message.id, result: message.result });
        return;
      case 'error':
        this.forward(record, ConnectionMessage.clientError, { id: message.id, error: message.error });
        return;
      case 'request': {
        const replyTo = { address: wireAddress(record.id), correlation: message.id };
        // Every request read gets exactly one answer through the wire, refused ones included.
        record.inFlight++;
        record.ledger.opened(message.id);
        if (this.draining) {
          this.system.deliverReply(replyTo, { ok: false, error: toErrorData(serverDrainingError()) });
          return;
        }
        // Dispatched requests wait on scope queues, the pool or the backend, outside the
        // connection's own mailbox, so that bound alone would not limit what one client holds.
        if (record.inFlight > this.settings.maxRequestsPerConnection) {
          this.refuseOverloaded(record, replyTo, message.method);
          return;
        }
        const body = new ClientRequest(message.id, message.method, message.params, message.hasParams);
        try {
          this.system.tell(address, ConnectionMessage.clientRequest, body, replyTo);
        } catch (e) {
          if (isBrokerError(e, 'MAILBOX_FULL')) {
            this.refuseOverloaded(record, replyTo, message.method);
            return;
          }
          // Not handed over (an envelope that will not encode, say): the request still gets its
          // one answer, a generic -32603 with the details in the log, and the connection lives on.
          this.log.error(
            { connection: record.id, method: message.method, err: (e as Error).message },
            'could not take a request',
          );
          this.system.deliverReply(replyTo, { ok: false, error: toErrorData(e) });
        }
        return;
      }
    }
  }

  /** Hands a client notification or answer to its connection actor; a failure is only logged. */
  private forward(record: ConnectionRecord, type: string, body: unknown): void {
    try {
      this.system.tell(connectionAddress(record.id), type, body, undefined, true);
    } catch (e) {
      this.log.error({ connection: record.id, type, err: (e as Error).message }, 'could not take a message');
    }
  }

  /** Answers -32001; logs the refusals of a connection at most once a second (a flood would flood stderr). */
  private refuseOverloaded(record: ConnectionRecord, replyTo: ReplyTo, method: string): void {
    record.refused++;
    const now = Date.now();
    if (now - record.lastRefusalLogMs >= 1_000) {
      this.log.warn(
        { connection: record.id, method, refused: record.refused, inFlight: record.inFlight },
        'connection over its bound: requests refused with -32001',
      );
      record.refused = 0;
      record.lastRefusalLogMs = now;
    }
    const error = new BrokerError('MAILBOX_FULL', `connection ${record.id} holds too many requests`);
    this.system.deliverReply(replyTo, { ok: false, error: toErrorData(error) });
  }

  private requestFinished(record: ConnectionRecord): void {
    record.inFlight = Math.max(0, record.inFlight - 1);
    // Waiters first: summing in-flight requests visits every connection.
    if (this.idleWaiters.length > 0 && this.inFlight === 0) {
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
    this.relay.connectionClosed(id);
    this.emit('connectionClosed', { connectionId: id });
    if (this.idleWaiters.length > 0 && this.inFlight === 0)
      for (const resolve of this.idleWaiters.splice(0)) resolve();
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

/** Internal work on the account queue at start-up: install what auth.json holds. */
const RESTORE_ACCOUNT = '$account/restore';

/** The session of broker-internal work on a scope queue, which no client sent. */
const INTERNAL_SESSION: Session = {
  clientName: 'gatehouse',
  clientVersion: '0',
  experimentalApi: true,
  requestAttestation: false,
  optOutNotificationMethods: [],
};

export function connectionAddress(id: string): string {
  return `connection/${id}`;
}

export function wireAddress(id: string): string {
  return `wire/${id}`;
}

export function createBroker(options: BrokerOptions): Broker {
  return new Broker(options);
}
