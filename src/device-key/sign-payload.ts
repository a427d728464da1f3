/**
 * What `device/key/sign` accepts and exactly which bytes it signs (spec A.4.1, A.4.2). Only these
 * structured statements can be signed, never caller-chosen bytes: each rule below narrows what a
 * signature can be used for (whose token, which backend, which route, how long).
 */
import type { Static } from 'typebox';
import type {
  DeviceKeySignPayload,
  RemoteControlClientConnectionDeviceKeySignPayload,
  RemoteControlClientEnrollmentDeviceKeySignPayload,
} from '../protocol/methods/device-key.js';
import { invalidPayload } from './errors.js';
import { decodeBase64UrlStrict } from './key-id.js';

export type SignPayload = Static<typeof DeviceKeySignPayload>;
type ConnectionPayload = Static<typeof RemoteControlClientConnectionDeviceKeySignPayload>;
type EnrollmentPayload = Static<typeof RemoteControlClientEnrollmentDeviceKeySignPayload>;

export const SIGN_PAYLOAD_DOMAIN = 'codex-device-key-sign-payload/v1';

/** Longest validity a signed token or challenge may claim: 15 minutes. */
export const MAX_EXPIRY_WINDOW_SECONDS = 900;

const CONNECTION_PATHS = ['/api/codex/remote/control/client', '/wham/remote/control/client'];
const ENROLLMENT_PATHS = ['/api/codex/remote/control/client/enroll', '/wham/remote/control/client/enroll'];
const CONTROLLER_SCOPE = 'remote_control_controller_websocket';

/** Throws codex's `invalid device key payload` error for the first rule the payload breaks. */
export function validateSignPayload(payload: SignPayload, nowSeconds: number): void {
  if (payload.type === 'remoteControlClientConnection') validateConnection(payload, nowSeconds);
  else validateEnrollment(payload, nowSeconds);
}

function validateConnection(p: ConnectionPayload, now: number): void {
  checkNonce(p.nonce);
  checkOrigin(p.targetOrigin);
  checkPath(p.targetPath, CONNECTION_PATHS);
  nonEmpty(p.sessionId, 'sessionId');
  nonEmpty(p.accountUserId, 'accountUserId');
  nonEmpty(p.clientId, 'clientId');
  checkDigest(p.tokenSha256Base64url, 'tokenSha256Base64url');
  if (p.scopes.length !== 1 || p.scopes[0] !== CONTROLLER_SCOPE) {
    throw invalidPayload(`scopes must contain exactly ${CONTROLLER_SCOPE}`);
  }
  checkExpiry(p.tokenExpiresAt, now, 'remote-control token');
}

function validateEnrollment(p: EnrollmentPayload, now: number): void {
  checkNonce(p.nonce);
  nonEmpty(p.challengeId, 'challengeId');
  checkOrigin(p.targetOrigin);
  checkPath(p.targetPath, ENROLLMENT_PATHS);
  nonEmpty(p.accountUserId, 'accountUserId');
  nonEmpty(p.clientId, 'clientId');
  checkDigest(p.deviceIdentitySha256Base64url, 'deviceIdentitySha256Base64url');
  checkExpiry(p.challengeExpiresAt, now, 'enrollment challenge');
}

function checkNonce(nonce: string): void {
  if ((decodeBase64UrlStrict(nonce)?.length ?? 0) < 32) {
    throw invalidPayload('nonce must be at least 32 random bytes encoded as unpadded base64url');
  }
}

function checkDigest(value: string, field: string): void {
  if (decodeBase64UrlStrict(value)?.length !== 32) {
    throw invalidPayload(`${field} must be a SHA-256 digest encoded as unpadded base64url`);
  }
}

function nonEmpty(value: string, field: string): void {
  if (value.length === 0) throw invalidPayload(`${field} must not be empty`);
}

function checkPath(path: string, allowed: readonly string[]): void {
  if (!allowed.includes(path)) {
    throw invalidPayload("targetPath must match the signed payload type's remote-control endpoint");
  }
}

function checkExpiry(expiresAt: number, now: number, what: string): void {
  if (expiresAt <= now) throw invalidPayload(`${what} is expired`);
  if (expiresAt > now + MAX_EXPIRY_WINDOW_SECONDS) {
    throw invalidPayload(`${what} expires too far in the future`);
  }
}

/**
 * An origin of the real remote-control backend (https on chatgpt.com, chatgpt-staging.com or a
 * subdomain) or of a local one (http or https on localhost or a loopback address): nothing but
 * scheme, host and port.
 */
function checkOrigin(origin: string): void {
  if (!isAllowedOrigin(origin)) {
    throw invalidPayload('targetOrigin must be an allowed remote-control backend origin');
  }
}

function isAllowedOrigin(origin: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.pathname !== '/' || url.href.includes('?') || url.href.includes('#')) return false;
  if (url.username !== '' || url.password !== '') return false;
  const host = url.hostname;
  if (
    url.protocol === 'https:' &&
    ['chatgpt.com', 'chatgpt-staging.com'].some((d) => host === d || host.endsWith(`.${d}`))
  )
    return true;
  const loopback = host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
  return loopback && (url.protocol === 'http:' || url.protocol === 'https:');
}

/**
 * The exact bytes signed and returned as `signedPayloadBase64`: the payload's declared fields (what
 * codex's typed payload keeps; unknown members are dropped) under a domain-separation envelope,
 * every object's keys sorted, compact JSON, UTF-8.
 */
export function signedPayloadBytes(payload: SignPayload): Buffer {
  const fields =
    payload.type === 'remoteControlClientConnection'
      ? {
          accountUserId: payload.accountUserId,
          audience: payload.audience,
          clientId: payload.clientId,
          nonce: payload.nonce,
          scopes: payload.scopes,
          sessionId: payload.sessionId,
          targetOrigin: payload.targetOrigin,
          targetPath: payload.targetPath,
          tokenExpiresAt: payload.tokenExpiresAt,
          tokenSha256Base64url: payload.tokenSha256Base64url,
          type: payload.type,
        }
      : {
          accountUserId: payload.accountUserId,
          audience: payload.audience,
          challengeExpiresAt: payload.challengeExpiresAt,
          challengeId: payload.challengeId,
          clientId: payload.clientId,
          deviceIdentitySha256Base64url: payload.deviceIdentitySha256Base64url,
          nonce: payload.nonce,
          targetOrigin: payload.targetOrigin,
          targetPath: payload.targetPath,
          type: payload.type,
        };
  // Written in sorted order above (ASCII keys, so code-unit order is byte order).
  return Buffer.from(JSON.stringify({ domain: SIGN_PAYLOAD_DOMAIN, payload: fields }), 'utf8');
}
