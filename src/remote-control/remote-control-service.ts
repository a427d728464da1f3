/**
 * Remote control on the broker side (spec B): the three requests, the status every connection
 * hears, and the effects of the enrollment machine (actors/remote-control/enrollment.machine.ts):
 * the backend calls, the SQLite row and the relay socket whose remote clients become broker
 * connections like any other.
 *
 * The enrollment is keyed by (websocket URL, ChatGPT account, client name): the client name is
 * the `clientInfo.name` of the first local client to initialize, as codex's app-server takes the
 * name of its own client. Tokens stay in the machine's memory; only ids reach SQLite, and every
 * text that leaves here (errors, logs, statuses) is built from redacted backend previews.
 */
import { randomUUID } from 'node:crypto';
import { createActor, type Actor } from 'xstate';
import type { BrokerServices } from '../broker/services.js';
import type { HandlerTable } from '../broker/handlers.js';
import { ErrorCode, ProtocolError } from '../protocol/errors.js';
import type { RemoteControlStatus } from '../protocol/methods/remote-control.js';
import type { Session } from '../../actors/connection/connection.machine.js';
import {
  DEFAULT_TIMING,
  enrollmentMachine,
  type CachedToken,
  type ConnectionStatus,
  type EnrollmentEffects,
  type EnrollmentIds,
  StepFailure,
} from '../../actors/remote-control/enrollment.machine.js';
import type { Transport } from '../transport/transport.js';
import { UpstreamAgents } from '../upstream/http-request.js';
import type { UpstreamAuth } from '../upstream/auth-source.js';
import {
  ClientTracker,
  REMOTE_CLIENT_IDLE_TIMEOUT_MS,
  REMOTE_CLIENT_SWEEP_INTERVAL_MS,
} from './client-tracker.js';
import { remoteControlEndpoints, type RemoteControlEndpoints } from './endpoints.js';
import { EnrollmentStore, EnrollmentStoreError, type EnrollmentKey } from './enrollment-store.js';
import { serverIdentity, serverName, type ServerIdentity } from './server-identity.js';
import { enrollServer, refreshServerToken, RemoteControlCallError, type ServerToken } from './server-api.js';
import type { RelayHandshakeError, RelaySocket } from './relay-socket.js';

export const NEEDS_CHATGPT = 'remote control requires ChatGPT authentication';
export const NO_API_KEY = 'remote control requires ChatGPT authentication; API key auth is not supported';

/** Backend calls and the handshake (spec B.3 constants). */
const CALL_TIMEOUT_MS = 30_000;
/** Outbound bytes a remote client may leave unacknowledged before its stream is closed. */
const MAX_UNACKED_BYTES = 64 * 1024 * 1024;

export interface RemoteControlStatusEvent {
  status: ConnectionStatus;
  environmentId: string | null;
  /** Why the status is `errored` (redacted); null otherwise. */
  reason: string | null;
}

export interface RemoteControlHooks {
  /** Attaches a remote client as a broker connection. */
  connect(transport: Transport): void;
  /** Tells the embedding host (a broker event). */
  statusChanged(event: RemoteControlStatusEvent): void;
}

export class RemoteControlService {
  private readonly actor: Actor<typeof enrollmentMachine>;
  private readonly tracker: ClientTracker;
  private readonly agents: UpstreamAgents;
  private status: RemoteControlStatusEvent = { status: 'disabled', environmentId: null, reason: null };
  private identityCache?: ServerIdentity;
  private store?: EnrollmentStore;
  private storeQueue: Promise<unknown> = Promise.resolve();
  /** The local client whose name keys the enrollment and whose name the backend sees. */
  private client?: { name: string; version: string };
  /** The key of the enrollment in use, once loaded. */
  private key?: EnrollmentKey;
  /** The account the last auth change saw, to tell a new account from a refreshed token. */
  private accountId: string | null = null;
  private socket?: RelaySocket;
  private enableWaiters: ((failure: StepFailure | null) => void)[] = [];
  private closed = false;

  constructor(
    private readonly services: BrokerServices,
    private readonly hooks: RemoteControlHooks,
  ) {
    const settings = services.settings;
    this.agents = new UpstreamAgents(services.secureContext);
    this.tracker = new ClientTracker({
      connect: (transport) => hooks.connect(transport),
      log: services.log,
      maxClients: settings.remoteControlMaxClients,
      maxUnackedBytes: MAX_UNACKED_BYTES,
      idleTimeoutMs: REMOTE_CLIENT_IDLE_TIMEOUT_MS,
      sweepIntervalMs: REMOTE_CLIENT_SWEEP_INTERVAL_MS,
    });
    this.actor = createActor(enrollmentMachine, {
      input: {
        effects: this.effects(),
        timing: {
          retryBaseMs: settings.remoteControlRetryBaseMs,
          retryMaxMs: Math.min(DEFAULT_TIMING.retryMaxMs, settings.remoteControlRetryBaseMs * 7.5),
          refreshRetryMs: settings.remoteControlRefreshRetryMs,
          refreshRetryJitterMs: settings.remoteControlRefreshRetryMs / 2,
        },
      },
    });
    this.actor.start();
  }

  handlers(): Pick<
    HandlerTable,
    'remoteControl/status/read' | 'remoteControl/enable' | 'remoteControl/disable'
  > {
    return {
      'remoteControl/status/read': () => this.statusObject(),
      'remoteControl/enable': (params) => this.enable(params?.ephemeral ?? false),
      'remoteControl/disable': (params) => this.disable(params?.ephemeral ?? false),
    };
  }

  /** A connection finished `initialize`: it hears the status; the first local one names the app-server. */
  async connectionInitialized(
    connectionId: string,
    session: Session,
    transport: Transport['kind'],
  ): Promise<void> {
    await this.services.notify(connectionId, 'remoteControl/status/changed', this.statusObject());
    if (transport === 'remote-control' || this.client) return;
    this.client = { name: session.clientName, version: session.clientVersion };
    await this.restore();
  }

  /** The credentials changed (login, refresh, logout): a different account means a different enrollment. */
  async authChanged(): Promise<void> {
    const auth = await this.services.auth.current();
    const accountId = auth?.mode === 'apikey' ? null : (auth?.accountId ?? null);
    if (accountId === this.accountId) return;
    this.accountId = accountId;
    if (this.actor.getSnapshot().value !== 'disabled') this.actor.send({ type: 'account.changed' });
    else await this.restore();
  }

  /** Stops everything: socket, remote clients, timers, the database. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.actor.stop();
    const stopping = new StepFailure('fatal', 'the broker is shutting down');
    for (const resolve of this.enableWaiters.splice(0)) resolve(stopping);
    this.dropSocket();
    this.tracker.closeAll();
    this.agents.destroy();
    this.store?.close();
  }

  private async enable(ephemeral: boolean): Promise<RemoteControlStatus> {
    const failure = await new Promise<StepFailure | null>((resolve) => {
      this.enableWaiters.push(resolve);
      this.actor.send({ type: 'enable' });
    });
    if (failure) throw new ProtocolError(failure.code ?? ErrorCode.Internal, failure.message);
    if (!ephemeral && this.key) {
      const key = this.key;
      try {
        await this.withStore((store) => store.setEnabled(key, true));
      } catch (e) {
        // An enable that cannot be remembered is not half done: it is undone and reported.
        this.actor.send({ type: 'disable' });
        throw new ProtocolError(ErrorCode.Internal, (e as Error).message);
      }
    }
    return this.statusObject();
  }

  private async disable(ephemeral: boolean): Promise<RemoteControlStatus> {
    this.actor.send({ type: 'disable' });
    this.tracker.closeAll();
    const key = this.key;
    if (!ephemeral && key) {
      await this.withStore((store) => store.setEnabled(key, false)).catch((e: unknown) => {
        throw new ProtocolError(ErrorCode.Internal, (e as Error).message);
      });
    }
    return this.statusObject();
  }

  /** Reconnects without an `enable` when the persisted preference says so and auth allows it. */
  private async restore(): Promise<void> {
    if (this.closed || !this.client || this.actor.getSnapshot().value !== 'disabled') return;
    const auth = await this.services.auth.current().catch(() => null);
    if (!auth || auth.mode === 'apikey' || !auth.accountId) return;
    try {
      const key = this.keyFor(auth.accountId);
      if ((await this.withStore((store) => store.get(key)))?.enabled !== true) return;
    } catch (e) {
      this.services.log.warn(
        { err: (e as Error).message },
        'remote control: cannot read the saved preference',
      );
      return;
    }
    this.services.log.info('remote control: enabled in a previous run; reconnecting');
    this.actor.send({ type: 'enable' });
  }

  private statusObject(): RemoteControlStatus {
    const identity = this.identity();
    return {
      status: this.status.status,
      serverName: identity.serverName,
      installationId: identity.installationId,
      environmentId: this.status.environmentId,
    };
  }

  private identity(): ServerIdentity {
    if (!this.identityCache) {
      try {
        this.identityCache = serverIdentity(this.services.codexHome);
      } catch (e) {
        // An unwritable CODEX_HOME must not break the status every connection is greeted with.
        this.services.log.warn(
          { err: (e as Error).message },
          'remote control: cannot keep installation_id; using one for this run only',
        );
        this.identityCache = { serverName: serverName(), installationId: randomUUID() };
      }
    }
    return this.identityCache;
  }

  private endpoints(): RemoteControlEndpoints {
    return remoteControlEndpoints(this.services.codex.chatgptBaseUrl);
  }

  private keyFor(accountId: string): EnrollmentKey {
    return {
      websocketUrl: this.endpoints().websocketUrl.href,
      accountId,
      clientName: this.client!.name,
    };
  }

  /**
   * The enrollment table, opened on first use: SQLite is loaded only by brokers that use remote
   * control. Operations run one after another, in the order they were asked for.
   */
  private withStore<T>(step: (store: EnrollmentStore) => T): Promise<T> {
    const run = this.storeQueue.then(async () =>
      step((this.store ??= await openEnrollmentStore(this.services.codexHome))),
    );
    this.storeQueue = run.catch(() => undefined);
    return run;
  }

  /** The ChatGPT credentials enrollment needs, or the failure an enable answers with. */
  private async chatgptAuth(): Promise<UpstreamAuth & { accountId: string }> {
    const auth = await this.services.auth.current();
    if (auth?.mode === 'apikey') throw failure('fatal', NO_API_KEY, ErrorCode.InvalidRequest);
    if (!auth?.accountId) throw failure('fatal', NEEDS_CHATGPT, ErrorCode.InvalidRequest);
    return auth as UpstreamAuth & { accountId: string };
  }

  private publish(status: ConnectionStatus, environmentId: string | null, reason: string | null): void {
    const previous = this.status;
    this.status = { status, environmentId, reason };
    if (status === 'errored' && reason && reason !== previous.reason) {
      this.services.log.warn({ reason }, 'remote control: attempt failed');
    }
    if (previous.status === status && previous.environmentId === environmentId) return;
    this.services.log.info({ status, environmentId }, 'remote control status');
    this.hooks.statusChanged(this.status);
    void this.services.broadcast('remoteControl/status/changed', this.statusObject());
  }

  private effects(): EnrollmentEffects {
    return {
      now: () => Date.now(),
      random: () => Math.random(),
      load: async () => {
        const auth = await this.chatgptAuth();
        const key = this.keyFor(auth.accountId);
        const row = await guardStore(this.withStore((store) => store.get(key)));
        this.key = key;
        this.accountId = auth.accountId;
        return row ? { serverId: row.serverId, environmentId: row.environmentId } : null;
      },
      enroll: (signal) => this.enrollNow(signal),
      refresh: (ids, signal) => this.refreshNow(ids, signal),
      connect: (ids, token, signal) => this.connectNow(ids, token, signal),
      forget: () => {
        const key = this.key;
        if (!key) return;
        // Queued ahead of the enrollment that follows, which replaces the row anyway.
        this.withStore((store) => store.delete(key)).catch((e: unknown) =>
          this.services.log.warn(
            { err: (e as Error).message },
            'remote control: cannot delete the enrollment',
          ),
        );
      },
      disconnect: () => this.dropSocket(),
      publish: (status, environmentId, reason) => this.publish(status, environmentId, reason),
      settleEnable: (failure) => {
        for (const resolve of this.enableWaiters.splice(0)) resolve(failure);
      },
    };
  }

  /** What the backend sees of the client: `originator` and `user-agent` headers. */
  private clientHeaders(): { originator: string; userAgent: string } {
    const client = this.client ?? { name: 'codex_app_server', version: '0' };
    return {
      originator: this.services.originator(client.name),
      userAgent: this.services.userAgent(client.name, client.version),
    };
  }

  private async enrollNow(signal: AbortSignal): Promise<{ ids: EnrollmentIds; token: CachedToken }> {
    const key = this.key!;
    const identity = this.identity();
    const got = await this.withAuthRecovery((auth) =>
      enrollServer({
        url: this.endpoints().enrollUrl,
        credentials: { bearer: auth.bearer, accountId: auth.accountId },
        identity: { name: identity.serverName, installationId: identity.installationId },
        ...this.clientHeaders(),
        timeoutMs: CALL_TIMEOUT_MS,
        agents: this.agents,
        signal,
      }),
    );
    await guardStore(
      this.withStore((store) =>
        store.put(key, {
          serverId: got.serverId,
          environmentId: got.environmentId,
          serverName: identity.serverName,
        }),
      ),
    );
    this.services.log.info(
      { serverId: got.serverId, environmentId: got.environmentId },
      'remote control: enrolled',
    );
    return { ids: { serverId: got.serverId, environmentId: got.environmentId }, token: tokenOf(got) };
  }

  private async refreshNow(ids: EnrollmentIds, signal: AbortSignal): Promise<CachedToken> {
    const auth = await this.chatgptAuth();
    try {
      const got = await refreshServerToken({
        url: this.endpoints().refreshUrl,
        credentials: { bearer: auth.bearer, accountId: auth.accountId },
        serverId: ids.serverId,
        environmentId: ids.environmentId,
        installationId: this.identity().installationId,
        ...this.clientHeaders(),
        timeoutMs: CALL_TIMEOUT_MS,
        agents: this.agents,
        signal,
      });
      return tokenOf(got);
    } catch (e) {
      const f = callFailure(e);
      // The next attempt refreshes with whatever the account's refresh loop gets now.
      if (f.kind === 'unauthorized') await this.services.auth.unauthorized(auth).catch(() => undefined);
      throw f;
    }
  }

  private async connectNow(ids: EnrollmentIds, token: CachedToken, signal: AbortSignal): Promise<void> {
    const identity = this.identity();
    // Loaded on first use: ws stays off the start-up path of brokers that never enable remote control.
    const { openRelaySocket } = await import('./relay-socket.js');
    let socket: RelaySocket;
    try {
      socket = await openRelaySocket({
        url: this.endpoints().websocketUrl,
        token: token.value,
        installationId: identity.installationId,
        serverName: identity.serverName,
        serverId: ids.serverId,
        ...(this.tracker.cursor !== undefined ? { cursor: this.tracker.cursor } : {}),
        timeoutMs: CALL_TIMEOUT_MS,
        ...(this.services.secureContext ? { secureContext: this.services.secureContext } : {}),
        signal,
      });
    } catch (e) {
      throw handshakeFailure(e);
    }
    if (signal.aborted || this.closed) {
      socket.close();
      throw failure('fatal', 'remote control was disabled while connecting');
    }
    this.socket = socket;
    socket.onFrame((text) => this.tracker.receive(text));
    socket.onClose((reason) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.tracker.detach();
      this.services.log.info({ reason }, 'remote control: backend socket closed');
      this.actor.send({ type: 'socket.closed', reason });
    });
    this.tracker.attach((frame) => socket.send(frame));
  }

  private dropSocket(): void {
    const socket = this.socket;
    if (!socket) return;
    this.socket = undefined;
    this.tracker.detach();
    socket.close();
  }

  /**
   * Runs a backend call with ChatGPT credentials; on 401/403 asks the account's refresh loop for
   * new ones (for host-owned tokens, `account/chatgptAuthTokens/refresh` to the client) and tries
   * once more. When no new credentials come, the call's own failure stands.
   */
  private async withAuthRecovery<T>(
    call: (auth: UpstreamAuth & { accountId: string }) => Promise<T>,
  ): Promise<T> {
    const auth = await this.chatgptAuth();
    try {
      return await call(auth);
    } catch (e) {
      const first = callFailure(e);
      if (first.kind !== 'unauthorized') throw first;
      let fresh: UpstreamAuth;
      try {
        fresh = await this.services.auth.unauthorized(auth);
      } catch {
        throw first;
      }
      if (!fresh.accountId) throw first;
      try {
        return await call(fresh as UpstreamAuth & { accountId: string });
      } catch (e2) {
        throw callFailure(e2);
      }
    }
  }
}

function failure(
  kind: StepFailure['kind'],
  message: string,
  code?: number,
  retryAfterMs?: number,
): StepFailure {
  return new StepFailure(kind, message, {
    ...(code !== undefined ? { code } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

function tokenOf(got: ServerToken): CachedToken {
  return { value: got.token, expiresAtMs: got.expiresAtMs };
}

/** Store failures end the step with their own text (they name the file, never a token). */
async function guardStore<T>(step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (e) {
    throw failure('fatal', (e as Error).message);
  }
}

/** SQLite is imported here, on first use, so that a broker without remote control never loads it. */
async function openEnrollmentStore(codexHome: string): Promise<EnrollmentStore> {
  const { openStateDb, stateDbPath } = await import('../store/state-db.js');
  const path = stateDbPath(codexHome);
  try {
    // A short busy timeout: a database locked by another process fails a step, it does not stall the broker.
    return new EnrollmentStore(openStateDb(path, { busyTimeoutMs: 250 }));
  } catch (e) {
    throw new EnrollmentStoreError(
      `cannot open the remote control enrollments in ${path}: ${(e as Error).message}`,
    );
  }
}

/**
 * Enroll and refresh failures as the machine sees them. HTTP refusals answer an enable with
 * -32600, as codex does for the 401 it was seen with; anything else is -32603.
 */
function callFailure(e: unknown): StepFailure {
  if (!(e instanceof RemoteControlCallError)) {
    return failure('fatal', e instanceof Error ? e.message : String(e));
  }
  if (e.kind !== 'status') return failure(e.transient ? 'transient' : 'fatal', e.message);
  const code = ErrorCode.InvalidRequest;
  if (e.unauthorized) return failure('unauthorized', e.message, code);
  if (e.notFound) return failure('notFound', e.message, code);
  return failure(e.transient ? 'transient' : 'fatal', e.message, code, e.retryAfterMs);
}

function handshakeFailure(e: unknown): StepFailure {
  if (!(e instanceof Error) || !('kind' in e)) return failure('transient', String(e));
  const refused = e as RelayHandshakeError;
  switch (refused.kind) {
    case 'unauthorized':
      return failure('unauthorized', refused.message);
    case 'serverGone':
      return failure('serverGone', refused.message);
    default:
      return failure('transient', refused.message, undefined, refused.retryAfterMs);
  }
}
