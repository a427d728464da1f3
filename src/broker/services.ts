/**
 * What request handlers may use of the broker. Handlers are built once per broker from these
 * services, so each area (accounts, the Responses relay) gets exactly what it needs and nothing
 * reaches into the broker's internals.
 */
import type { ActorSystem } from '../runtime/actor-system.js';
import type { CodexKeys, GatehouseSettings } from '../config/config.js';
import type {
  ServerNotificationMethod,
  ServerRequestMethod,
  ServerRequests,
} from '../protocol/methods/index.js';
import type { ParamsOf, ResultOf } from '../protocol/registry.js';
import type { Logger } from '../util/logger.js';
import type { AuthSource } from '../upstream/auth-source.js';
import type { SecureContext } from 'node:tls';
import type { LifecycleState, Session } from '../../actors/connection/connection.machine.js';
import type { LifecycleEvent } from '../../actors/connection/connection.actor.js';

/** Plain calls to the backend and the issuer, for the account side (no streaming). */
export interface BackendClient {
  /** GET `{chatgpt_base_url}{path}` with the current credentials and the 401 refresh loop. */
  getJson(path: string, options: { timeoutMs: number }): Promise<{ status: number; body: unknown }>;
  /** POSTs a form to an absolute URL (the issuer's token endpoint), without credentials. */
  postForm(
    url: string,
    form: Record<string, string>,
    options: { timeoutMs: number },
  ): Promise<{ status: number; body: unknown }>;
}

export interface BrokerServices {
  readonly system: ActorSystem;
  readonly log: Logger;
  readonly settings: GatehouseSettings;
  readonly codex: CodexKeys;
  readonly codexHome: string;
  /** The process environment (`CODEX_CA_CERTIFICATE`, terminal detection). */
  readonly env: NodeJS.ProcessEnv;
  /** Upstream TLS trust (`CODEX_CA_CERTIFICATE`), built once; undefined keeps Node's roots. */
  readonly secureContext: SecureContext | undefined;
  /** Credentials for the backend and the 401 refresh loop. */
  readonly auth: AuthSource;
  /** Non-streaming calls to the backend and the issuer. */
  readonly backend: BackendClient;
  notify(connectionId: string, method: ServerNotificationMethod, params: unknown): Promise<boolean>;
  /** Sends a notification to every initialized connection (account state is broker-wide). */
  broadcast(method: ServerNotificationMethod, params: unknown): Promise<void>;
  /** Moves every connection to `authenticated` (true) or back to `initialized` (false). */
  setAuthenticated(authenticated: boolean): Promise<void>;
  /** The session of an initialized connection (its capabilities); undefined otherwise. */
  session(connectionId: string): Session | undefined;
  /** Moves one connection's lifecycle (`attestation.answered` -> attested). */
  lifecycle(connectionId: string, event: LifecycleEvent): Promise<LifecycleState>;
  /** Asks the worker-pool crypto actor (hashing, attestation header encoding). */
  crypto<T>(type: string, body: unknown): Promise<T>;
  request<M extends ServerRequestMethod>(
    connectionId: string,
    method: M,
    params: ParamsOf<(typeof ServerRequests)[M]>,
  ): Promise<ResultOf<(typeof ServerRequests)[M]>>;
  /** The `user-agent` codex sends upstream for a client (the initialize `userAgent`). */
  userAgent(clientName: string, clientVersion: string): string;
  /** The `originator` header for a client. */
  originator(clientName: string): string;
}
