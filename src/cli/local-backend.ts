/**
 * `gatehouse local-backend`: runs the local backend until SIGTERM or SIGINT. Stdout carries one
 * JSON line with the addresses a parent process needs; logs go to stderr.
 */
import { startLocalBackend } from '../backend/local-backend.js';

export { assertLoopbackHost } from '../backend/local-backend.js';
export {
  DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC,
  MAX_REMOTE_CONTROL_TOKEN_TTL_SEC,
} from '../backend/remote-control.js';
import { createLogger } from '../util/logger.js';

export interface LocalBackendCliOptions {
  port: number;
  host: string;
  stateDir?: string;
  responseDelayMs: number;
  /** Lifetime of remote-control tokens (default 3600 s). */
  remoteControlTokenTtlSec?: number;
}

/** The line printed on stdout once the backend listens. */
export interface LocalBackendAnnouncement {
  url: string;
  chatgptBaseUrl: string;
  issuer: string;
  /** Path of the CA certificate (PEM): the value of CODEX_CA_CERTIFICATE. */
  caCertificate: string;
}

export async function runLocalBackend(options: LocalBackendCliOptions): Promise<number> {
  const log = createLogger();
  // Listen for signals first: a parent may signal as soon as it has read the line below.
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const backend = await startLocalBackend({
    port: options.port,
    host: options.host,
    ...(options.stateDir !== undefined ? { stateDir: options.stateDir } : {}),
    responseDelayMs: options.responseDelayMs,
    ...(options.remoteControlTokenTtlSec !== undefined
      ? { remoteControlTokenTtlSec: options.remoteControlTokenTtlSec }
      : {}),
    log,
  });
  const announcement: LocalBackendAnnouncement = {
    url: backend.url,
    chatgptBaseUrl: backend.chatgptBaseUrl,
    issuer: backend.issuer,
    caCertificate: backend.caCertPath,
  };
  process.stdout.write(`${JSON.stringify(announcement)}\n`);

  const signal = await stopped;
  log.info({ signal }, 'local backend stopping');
  await backend.close();
  return 0;
}

/** Parses a whole number option, with a message naming the option. */
export function integerOption(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) > max) {
    throw new Error(`${name} must be an integer from 0 to ${max}, not "${raw}"`);
  }
  return Number(raw);
}
