/**
 * Configuration the way codex reads it: `$CODEX_HOME/config.toml`, then `-c key=value` overrides
 * whose values are TOML (a value that is not valid TOML is taken as a plain string, as codex does).
 * Keys codex knows and Gatehouse does not use are accepted and ignored, so a host's existing flags
 * keep working; keys under `gatehouse.` are ours and are checked strictly.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { ServerRequests } from '../protocol/methods/index.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface GatehouseSettings {
  /** Longest accepted inbound message in bytes; longer lines are dropped without being buffered. */
  maxLineBytes: number;
  /** Bound of every actor mailbox; past it a request gets -32001. */
  mailboxCapacity: number;
  /** How long SIGTERM waits for in-flight requests before exiting. */
  shutdownTimeoutMs: number;
  /** Deadline of `attestation/generate` answers. */
  attestationTimeoutMs: number;
  /** Deadline of `account/chatgptAuthTokens/refresh` answers. */
  chatgptAuthTokensRefreshTimeoutMs: number;
  /** Worker threads in the pool. */
  workerThreads: number;
  /** Port of the browser-login callback server on 127.0.0.1 (codex: 1455; 0 picks a free one). */
  loginCallbackPort: number;
  /** OAuth issuer of browser logins (codex: https://auth.openai.com). */
  loginIssuer: string;
  /** Retries of a failed Responses stream per transport (codex: 5 on WebSocket, then 5 on HTTP). */
  streamMaxRetries: number;
  /** First retry delay; each later one doubles, with jitter (codex: about 200 ms). */
  retryBaseDelayMs: number;
  /** Connect and response-header deadline of one upstream request. */
  upstreamRequestTimeoutMs: number;
  /** A Responses stream that sends nothing for this long is treated as dropped (codex: 300 s). */
  streamIdleTimeoutMs: number;
  /** The TPM for `hardware_tpm` device keys: `auto`, `off` or a TCTI (`device:…`, `swtpm:…`). */
  deviceKeyTpm: string;
  /** Deadline of one TPM command (and connection attempt); a TPM silent this long counts as gone. */
  deviceKeyTpmTimeoutMs: number;
  /** The PKCS#11 module for `os_protected_nonextractable` keys: `auto`, `off` or a path. */
  deviceKeyPkcs11Module: string;
  /** Label of Gatehouse's PKCS#11 token, initialised on first use when absent. */
  deviceKeyPkcs11Token: string;
  /** File with the token's PINs: `auto` (under CODEX_HOME) or a path. */
  deviceKeyPkcs11PinFile: string;
  /** First wait after a failed remote-control attempt; doubled per failure up to 7.5 times (codex: 4 s, 30 s). */
  remoteControlRetryBaseMs: number;
  /** Wait before retrying a failed token refresh when the backend gave no Retry-After (codex: 24-36 s). */
  remoteControlRefreshRetryMs: number;
  /** Remote clients served at once through the relay; past it an initialize gets -32001. */
  remoteControlMaxClients: number;
  /**
   * Output a connection may leave unread: past it the connection stops reading its input until
   * the client catches up; past four times it the connection is closed (see transport.ts).
   */
  maxPendingOutputBytes: number;
  /**
   * Requests one connection may have in flight (read and not yet answered, wherever they wait);
   * past it a request gets -32001 at once. A mailbox's worth by default: a burst in one write
   * is refused where the connection's own mailbox would have refused it anyway.
   */
  maxRequestsPerConnection: number;
}

export const DEFAULT_SETTINGS: GatehouseSettings = {
  maxLineBytes: 8 * 1024 * 1024,
  mailboxCapacity: 4096,
  shutdownTimeoutMs: 5_000,
  attestationTimeoutMs: ServerRequests['attestation/generate'].timeoutMs,
  chatgptAuthTokensRefreshTimeoutMs: ServerRequests['account/chatgptAuthTokens/refresh'].timeoutMs,
  workerThreads: 2,
  loginCallbackPort: 1455,
  loginIssuer: 'https://auth.openai.com',
  streamMaxRetries: 5,
  retryBaseDelayMs: 200,
  upstreamRequestTimeoutMs: 30_000,
  streamIdleTimeoutMs: 300_000,
  deviceKeyTpm: 'auto',
  deviceKeyTpmTimeoutMs: 30_000,
  deviceKeyPkcs11Module: 'auto',
  deviceKeyPkcs11Token: 'gatehouse',
  deviceKeyPkcs11PinFile: 'auto',
  remoteControlRetryBaseMs: 4_000,
  remoteControlRefreshRetryMs: 24_000,
  remoteControlMaxClients: 1_000,
  maxPendingOutputBytes: 8 * 1024 * 1024,
  maxRequestsPerConnection: 4_096,
};

type NumericSetting = {
  [K in keyof GatehouseSettings]: GatehouseSettings[K] extends number ? K : never;
}[keyof GatehouseSettings];
type TextSetting = {
  [K in keyof GatehouseSettings]: GatehouseSettings[K] extends string ? K : never;
}[keyof GatehouseSettings];

/** `gatehouse.<key>` -> setting, with the accepted range or shape and a line for `--help`. */
const SETTING_KEYS: Record<
  string,
  (
    | { setting: NumericSetting; min: number; max: number }
    | { setting: TextSetting; pattern: RegExp; shape: string }
  ) & {
    help: string;
  }
> = {
  max_line_bytes: {
    setting: 'maxLineBytes',
    min: 1024,
    max: 1024 * 1024 * 1024,
    help: 'longest inbound message',
  },
  mailbox_capacity: {
    setting: 'mailboxCapacity',
    min: 1,
    max: 10_000_000,
    help: 'per-actor mailbox bound; past it -32001',
  },
  shutdown_timeout_ms: {
    setting: 'shutdownTimeoutMs',
    min: 0,
    max: 600_000,
    help: 'in-flight grace period on SIGTERM',
  },
  attestation_timeout_ms: {
    setting: 'attestationTimeoutMs',
    min: 1,
    max: 600_000,
    help: 'attestation/generate deadline',
  },
  chatgpt_auth_tokens_refresh_timeout_ms: {
    setting: 'chatgptAuthTokensRefreshTimeoutMs',
    min: 1,
    max: 3_600_000,
    help: 'account/chatgptAuthTokens/refresh deadline',
  },
  worker_threads: { setting: 'workerThreads', min: 1, max: 64, help: 'worker pool size' },
  login_callback_port: {
    setting: 'loginCallbackPort',
    min: 0,
    max: 65_535,
    help: 'browser-login callback port on 127.0.0.1 (0: any)',
  },
  login_issuer: {
    setting: 'loginIssuer',
    pattern: /^https?:\/\/[^\s/]+(\/[^\s]*)?$/,
    shape: 'an http(s) URL',
    help: 'OAuth issuer of browser logins',
  },
  stream_max_retries: {
    setting: 'streamMaxRetries',
    min: 0,
    max: 100,
    help: 'Responses stream retries per transport',
  },
  retry_base_delay_ms: {
    setting: 'retryBaseDelayMs',
    min: 0,
    max: 60_000,
    help: 'first retry delay; later ones double, with jitter',
  },
  upstream_request_timeout_ms: {
    setting: 'upstreamRequestTimeoutMs',
    min: 1,
    max: 600_000,
    help: 'connect and response-header deadline upstream',
  },
  stream_idle_timeout_ms: {
    setting: 'streamIdleTimeoutMs',
    min: 1,
    max: 3_600_000,
    help: 'silence after which a Responses stream counts as dropped',
  },
  device_key_tpm: {
    setting: 'deviceKeyTpm',
    pattern: /^(auto|off|device:\/\S+|swtpm:\S+)$/,
    shape: 'auto, off, or a TCTI such as "device:/dev/tpmrm0" or "swtpm:host=127.0.0.1,port=2321"',
    help: 'TPM for hardware_tpm keys (auto: $TPM2TOOLS_TCTI, then /dev/tpmrm0)',
  },
  device_key_tpm_timeout_ms: {
    setting: 'deviceKeyTpmTimeoutMs',
    min: 1,
    max: 600_000,
    help: 'deadline of one TPM command; a TPM silent this long fails the requests waiting for it',
  },
  device_key_pkcs11_module: {
    setting: 'deviceKeyPkcs11Module',
    pattern: /^(auto|off|\/\S+)$/,
    shape: 'auto, off, or the absolute path of a PKCS#11 module',
    help: 'PKCS#11 module for os_protected_nonextractable keys (auto: SoftHSM2)',
  },
  device_key_pkcs11_token: {
    setting: 'deviceKeyPkcs11Token',
    pattern: /^[\x20-\x7e]{1,32}$/,
    shape: 'a token label of 1 to 32 printable ASCII characters',
    help: 'PKCS#11 token label; initialised on first use when absent',
  },
  device_key_pkcs11_pin_file: {
    setting: 'deviceKeyPkcs11PinFile',
    pattern: /^(auto|\/\S+)$/,
    shape: 'auto or an absolute path',
    help: 'PKCS#11 PIN file (auto: CODEX_HOME/device-keys/pkcs11-pins.json, 0600)',
  },
  remote_control_retry_base_ms: {
    setting: 'remoteControlRetryBaseMs',
    min: 1,
    max: 30_000,
    help: 'first wait after a failed remote-control attempt; doubles up to 7.5 times this (30 s)',
  },
  remote_control_refresh_retry_ms: {
    setting: 'remoteControlRefreshRetryMs',
    min: 1,
    max: 600_000,
    help: 'wait before retrying a failed token refresh without Retry-After (plus up to 50% jitter)',
  },
  remote_control_max_clients: {
    setting: 'remoteControlMaxClients',
    min: 1,
    max: 1_000_000,
    help: 'remote clients served at once through the relay',
  },
  max_pending_output_bytes: {
    setting: 'maxPendingOutputBytes',
    // One stdin chunk (64 KiB) of small requests can have some 20 times its size in answers,
    // written after reading stopped; they must fit under the 4x at which the client is dropped.
    min: 1024 * 1024,
    max: 1024 * 1024 * 1024,
    help: 'unread output per connection before it stops reading input (closed at 4x)',
  },
  max_requests_per_connection: {
    setting: 'maxRequestsPerConnection',
    min: 1,
    max: 10_000_000,
    help: 'requests in flight per connection; past it -32001',
  },
};

/** The settings as `--help` lists them, one per line with its default. */
export function settingsHelp(): string {
  const width = Math.max(...Object.keys(SETTING_KEYS).map((k) => k.length)) + 3;
  return Object.entries(SETTING_KEYS)
    .map(([key, spec]) => `  ${key.padEnd(width)}${spec.help} (default ${DEFAULT_SETTINGS[spec.setting]})`)
    .join('\n');
}

/** Top-level codex keys Gatehouse reads; everything else codex knows is accepted and ignored. */
export const USED_CODEX_KEYS = [
  'chatgpt_base_url',
  'openai_base_url',
  'forced_login_method',
  'forced_chatgpt_workspace_id',
] as const;

/** The codex keys Gatehouse reads (`USED_CODEX_KEYS`), parsed and checked. */
export interface CodexKeys {
  /** Base of every backend URL, without a trailing slash (codex: https://chatgpt.com/backend-api). */
  chatgptBaseUrl: string;
  /** Base of the Responses API under API-key auth (codex: https://api.openai.com/v1). */
  openaiBaseUrl: string;
  forcedLoginMethod: 'chatgpt' | 'api' | null;
  /** The allowed workspaces; null when unrestricted. */
  forcedChatgptWorkspaceIds: string[] | null;
}

export const DEFAULT_CODEX_KEYS: CodexKeys = {
  chatgptBaseUrl: 'https://chatgpt.com/backend-api',
  openaiBaseUrl: 'https://api.openai.com/v1',
  forcedLoginMethod: null,
  forcedChatgptWorkspaceIds: null,
};

export interface Config {
  codexHome: string;
  settings: GatehouseSettings;
  codex: CodexKeys;
  /** The merged TOML table (config.toml, then overrides), for the codex keys later features read. */
  table: Record<string, unknown>;
  /** Keys that were accepted but are not used by Gatehouse (logged at debug by the caller). */
  ignoredKeys: string[];
}

export function resolveCodexHome(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.CODEX_HOME;
  if (configured) {
    const path = isAbsolute(configured) ? configured : resolve(configured);
    if (!existsSync(path)) {
      throw new ConfigError(
        `CODEX_HOME points to ${JSON.stringify(configured)}, but that path does not exist`,
      );
    }
    return path;
  }
  const path = join(homedir(), '.codex');
  mkdirSync(path, { recursive: true, mode: 0o700 });
  return path;
}

/** Parses one `-c key=value` override into a dotted key and its TOML value. */
export function parseOverride(raw: string): [string, unknown] {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new ConfigError(`Invalid override (missing '='): ${raw}`);
  const key = raw.slice(0, eq).trim();
  const text = raw.slice(eq + 1).trim();
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(key)) throw new ConfigError(`Invalid override key: ${key}`);
  try {
    return [key, parseToml(`value = ${text}`).value];
  } catch {
    // codex: a value that does not parse as TOML is a string literal.
    return [key, text.replace(/^['"]|['"]$/g, '')];
  }
}

export function loadConfig(options: { env?: NodeJS.ProcessEnv; overrides?: string[] } = {}): Config {
  const env = options.env ?? process.env;
  const codexHome = resolveCodexHome(env);
  const table = readConfigToml(join(codexHome, 'config.toml'));
  for (const raw of options.overrides ?? []) {
    const [key, value] = parseOverride(raw);
    setDotted(table, key, value);
  }
  const settings = { ...DEFAULT_SETTINGS };
  const ignoredKeys: string[] = [];
  for (const [key, value] of Object.entries(table)) {
    if (key === 'gatehouse') applyGatehouseTable(settings, value);
    else if (!(USED_CODEX_KEYS as readonly string[]).includes(key)) ignoredKeys.push(key);
  }
  return { codexHome, settings, codex: readCodexKeys(table), table, ignoredKeys };
}

function baseUrl(table: Record<string, unknown>, key: string): string | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !URL.canParse(value) || !/^https?:/.test(value)) {
    throw new ConfigError(`${key} must be an http(s) URL, such as "https://127.0.0.1:8443/backend-api"`);
  }
  return value.replace(/\/+$/, '');
}

function readCodexKeys(table: Record<string, unknown>): CodexKeys {
  const keys = { ...DEFAULT_CODEX_KEYS };
  keys.chatgptBaseUrl = baseUrl(table, 'chatgpt_base_url') ?? keys.chatgptBaseUrl;
  keys.openaiBaseUrl = baseUrl(table, 'openai_base_url') ?? keys.openaiBaseUrl;
  const method = table.forced_login_method;
  if (method !== undefined) {
    if (method !== 'chatgpt' && method !== 'api') {
      throw new ConfigError('forced_login_method must be "chatgpt" or "api"');
    }
    keys.forcedLoginMethod = method;
  }
  const workspaces = table.forced_chatgpt_workspace_id;
  if (workspaces !== undefined) {
    const list = typeof workspaces === 'string' ? [workspaces] : workspaces;
    if (!Array.isArray(list) || !list.every((w): w is string => typeof w === 'string' && w.trim() !== '')) {
      throw new ConfigError('forced_chatgpt_workspace_id must be a workspace id or a list of them');
    }
    // codex refuses "a,b": a list is written as a TOML array.
    if (typeof workspaces === 'string' && workspaces.includes(',')) {
      throw new ConfigError(
        'forced_chatgpt_workspace_id must be a single workspace id; write several as a list: ["ws-a", "ws-b"]',
      );
    }
    keys.forcedChatgptWorkspaceIds = list.map((w) => w.trim());
  }
  return keys;
}

function readConfigToml(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return parseToml(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid TOML: ${(e as Error).message}`);
  }
}

function setDotted(table: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = table;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
}

function applyGatehouseTable(settings: GatehouseSettings, table: unknown): void {
  if (typeof table !== 'object' || table === null || Array.isArray(table)) {
    throw new ConfigError('gatehouse must be a table of settings');
  }
  for (const [key, value] of Object.entries(table)) {
    const spec = SETTING_KEYS[key];
    if (!spec) {
      throw new ConfigError(
        `unknown setting gatehouse.${key} (known: ${Object.keys(SETTING_KEYS).join(', ')})`,
      );
    }
    if ('pattern' in spec) {
      if (typeof value !== 'string' || !spec.pattern.test(value)) {
        throw new ConfigError(`gatehouse.${key} must be ${spec.shape}`);
      }
      settings[spec.setting] = value;
      continue;
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value < spec.min || value > spec.max) {
      throw new ConfigError(`gatehouse.${key} must be an integer from ${spec.min} to ${spec.max}`);
    }
    settings[spec.setting] = value;
  }
}
