/**
 * Enrolling this server with the remote-control backend and refreshing its server token (spec
 * B.2): `POST …/server/enroll` and `POST …/server/refresh`, both with the ChatGPT bearer, both
 * answering `{server_id, environment_id, remote_control_token, expires_at}`. Failures are
 * RemoteControlCallErrors worded as codex words them (they reach clients as JSON-RPC errors),
 * an undecodable answer's with serde_json's decode error (serde-json.ts) and a bad `expires_at`'s
 * with the time crate's reason (rfc3339.ts); a body quoted in one is redacted (body-preview.ts),
 * and no text ever holds a header.
 */
import { arch, platform } from 'node:process';
import { CODEX_COMPAT_VERSION } from '../broker/server-info.js';
import { retryAfterMs } from '../upstream/backoff.js';
import { disconnected, isUpstreamFailure } from '../upstream/failure.js';
import { openRequest, readText, type UpstreamAgents } from '../upstream/http-request.js';
import { previewBody, requestIdSuffix, statusText } from './body-preview.js';
import { parseRfc3339 } from './rfc3339.js';
import { decodeStruct } from './serde-json.js';

/** Enroll and refresh deadline, connect to last body byte (codex: 30 s). */
export const REMOTE_CONTROL_HTTP_TIMEOUT_MS = 30_000;

/** Larger answers are cut here, and then fail to decode. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

export interface ServerIdentity {
  /** The trimmed hostname. */
  name: string;
  installationId: string;
}

/** The ChatGPT login the calls are made for. */
export interface EnrollCredentials {
  bearer: string;
  accountId: string;
}

export interface ServerToken {
  serverId: string;
  environmentId: string;
  /** The remote-control token: the server WebSocket's bearer. A secret. */
  token: string;
  expiresAtMs: number;
}

interface CallOptions {
  url: URL;
  credentials: EnrollCredentials;
  /** The initialize `clientInfo.name` as codex turns it into an originator. */
  originator: string;
  userAgent: string;
  /** Default REMOTE_CONTROL_HTTP_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Pooled connections, and the TLS trust (`CODEX_CA_CERTIFICATE`) they were made with. */
  agents: UpstreamAgents;
  signal?: AbortSignal;
}

export interface EnrollOptions extends CallOptions {
  identity: ServerIdentity;
}

export interface RefreshOptions extends CallOptions {
  installationId: string;
  /** The enrollment being refreshed: the answer must carry the same ids. */
  serverId: string;
  environmentId: string;
}

export type RemoteControlCallErrorKind =
  /** The backend answered with a non-2xx status. */
  | 'status'
  /**
   * A 2xx answer that is not a usable server token: bad JSON, a missing field, a bad
   * `expires_at`, or a refresh answered for another enrollment.
   */
  | 'decode'
  | 'network'
  | 'timeout'
  | 'aborted';

export class RemoteControlCallError extends Error {
  override name = 'RemoteControlCallError';
  constructor(
    message: string,
    readonly kind: RemoteControlCallErrorKind,
    /** The HTTP status, when an answer came. */
    readonly status?: number,
    /** The backend's `Retry-After` (seconds or HTTP date), on a status failure. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** A refresh 404 means the enrollment is gone: enroll again. */
  get notFound(): boolean {
    return this.kind === 'status' && this.status === 404;
  }

  /** 401/403: the ChatGPT login needs recovering before another try. */
  get unauthorized(): boolean {
    return this.kind === 'status' && (this.status === 401 || this.status === 403);
  }

  /** What spec B.3 calls transient: no answer, a timeout, 429 or 5xx. */
  get transient(): boolean {
    if (this.kind === 'network' || this.kind === 'timeout') return true;
    return this.kind === 'status' && this.status !== undefined && (this.status === 429 || this.status >= 500);
  }
}

export async function enrollServer(options: EnrollOptions): Promise<ServerToken> {
  const { identity } = options;
  const body = {
    name: identity.name,
    os: rustOs(),
    arch: rustArch(),
    app_server_version: CODEX_COMPAT_VERSION,
    installation_id: identity.installationId,
  };
  const answer = await post(options, identity.installationId, body, 'enroll', 'server enrollment');
  return serverToken(answer, options.url);
}

export async function refreshServerToken(options: RefreshOptions): Promise<ServerToken> {
  const body = { server_id: options.serverId, installation_id: options.installationId };
  const answer = await post(options, options.installationId, body, 'refresh', 'server refresh');
  if (answer.server_id !== options.serverId || answer.environment_id !== options.environmentId) {
    throw new RemoteControlCallError(
      'remote control server refresh returned mismatched enrollment: ' +
        `expected server_id=${options.serverId}, environment_id=${options.environmentId}; ` +
        `got server_id=${answer.server_id}, environment_id=${answer.environment_id}`,
      'decode',
      200,
    );
  }
  return serverToken(answer, options.url);
}

const TOKEN_RESPONSE = {
  name: 'EnrollRemoteServerResponse',
  fields: {
    server_id: 'string',
    environment_id: 'string',
    remote_control_token: 'string',
    expires_at: 'string',
  },
} as const;

interface TokenResponse {
  server_id: string;
  environment_id: string;
  remote_control_token: string;
  expires_at: string;
}

/**
 * One call, as far as a decoded answer. `action` and `what` fill codex's texts:
 * `failed to <action> remote control server at …`, `remote control <what> failed at …`.
 */
async function post(
  options: CallOptions,
  installationId: string,
  body: object,
  action: string,
  what: string,
): Promise<TokenResponse> {
  const { url, credentials } = options;
  const timeoutMs = options.timeoutMs ?? REMOTE_CONTROL_HTTP_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const headers = {
    originator: options.originator,
    'user-agent': options.userAgent,
    authorization: `Bearer ${credentials.bearer}`,
    'chatgpt-account-id': credentials.accountId,
    'x-codex-installation-id': installationId,
    'content-type': 'application/json',
  };
  const request = { method: 'POST' as const, headers, body: JSON.stringify(body), timeoutMs };
  const response = await openRequest(
    url,
    options.signal ? { ...request, signal: options.signal } : request,
    options.agents,
  ).catch((e: unknown) => {
    throw callFailure(e, `failed to ${action} remote control server at \`${url.href}\``);
  });
  const text = await readText(response.body, MAX_RESPONSE_BYTES, Math.max(1, deadline - Date.now())).catch(
    (e: unknown) => {
      throw callFailure(e, `failed to read remote control ${what} response from \`${url.href}\``);
    },
  );
  const { status } = response;
  const quoted = () =>
    `HTTP ${statusText(status)}, ${requestIdSuffix(response.headers)}, body: ${previewBody(text, [credentials.bearer])}`;
  if (status < 200 || status > 299) {
    throw new RemoteControlCallError(
      `remote control ${what} failed at \`${url.href}\`: ${quoted()}`,
      'status',
      status,
      retryAfterMs(response.headers),
    );
  }
  const decoded = decodeStruct(Buffer.from(text, 'utf8'), TOKEN_RESPONSE);
  if (!decoded.ok) {
    throw new RemoteControlCallError(
      `failed to parse remote control ${what} response from \`${url.href}\`: ${quoted()}, decode error: ${decoded.error}`,
      'decode',
      status,
    );
  }
  return decoded.value as unknown as TokenResponse;
}

function serverToken(answer: TokenResponse, url: URL): ServerToken {
  const expires = parseRfc3339(answer.expires_at);
  if (typeof expires === 'string') {
    const shown = answer.expires_at.length > 64 ? `${answer.expires_at.slice(0, 64)}...` : answer.expires_at;
    throw new RemoteControlCallError(
      `failed to parse remote control server token expiry from \`${url.href}\`: ` +
        `expires_at ${JSON.stringify(shown)}: ${expires}`,
      'decode',
      200,
    );
  }
  return {
    serverId: answer.server_id,
    environmentId: answer.environment_id,
    token: answer.remote_control_token,
    expiresAtMs: expires,
  };
}

/** A failure before an answer was read, as a call error; the text is `<context>: <why>`. */
function callFailure(e: unknown, context: string): RemoteControlCallError {
  if (isUpstreamFailure(e, 'timeout'))
    return new RemoteControlCallError(`${context}: request timed out`, 'timeout');
  if (isUpstreamFailure(e, 'aborted'))
    return new RemoteControlCallError(`${context}: request aborted`, 'aborted');
  // The request layer words network failures for streams; only the cause belongs here.
  const message = e instanceof Error ? e.message : String(e);
  const prefix = disconnected('');
  const why = message.startsWith(prefix) ? message.slice(prefix.length) : message;
  return new RemoteControlCallError(`${context}: ${why}`, 'network');
}

/** Rust's `std::env::consts::OS` for the platforms Gatehouse runs on. */
function rustOs(): string {
  return platform === 'darwin' ? 'macos' : platform === 'win32' ? 'windows' : platform;
}

/** Rust's `std::env::consts::ARCH`: x86_64, aarch64. */
function rustArch(): string {
  return arch === 'x64' ? 'x86_64' : arch === 'arm64' ? 'aarch64' : arch === 'ia32' ? 'x86' : arch;
}
