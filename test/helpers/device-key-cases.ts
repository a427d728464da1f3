/**
 * Device-key inputs shared by the unit tests (validation functions) and the integration tests
 * (the same cases through the built CLI): valid payloads, and each rule of spec A.4.2 broken one
 * at a time with codex's message.
 */
import type { SignPayload } from '../../src/device-key/sign-payload.js';

export const NONCE = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
/** SHA-256 of the empty string, unpadded base64url. */
export const EMPTY_SHA256 = '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU';
export const NOW = 1_700_000_000;

export function connectionPayload(
  now: number,
  overrides: Record<string, unknown> = {},
  ids = { accountUserId: 'account-user-1', clientId: 'cli_123' },
): SignPayload {
  return {
    type: 'remoteControlClientConnection',
    nonce: NONCE,
    audience: 'remote_control_client_websocket',
    sessionId: 'wssess_123',
    targetOrigin: 'https://chatgpt.com',
    targetPath: '/api/codex/remote/control/client',
    ...ids,
    tokenSha256Base64url: EMPTY_SHA256,
    tokenExpiresAt: now + 300,
    scopes: ['remote_control_controller_websocket'],
    ...overrides,
  };
}

export function enrollmentPayload(
  now: number,
  overrides: Record<string, unknown> = {},
  ids = { accountUserId: 'account-user-1', clientId: 'cli_123' },
): SignPayload {
  return {
    type: 'remoteControlClientEnrollment',
    nonce: NONCE,
    audience: 'remote_control_client_enrollment',
    challengeId: 'rch_123',
    targetOrigin: 'https://chatgpt.com',
    targetPath: '/wham/remote/control/client/enroll',
    ...ids,
    deviceIdentitySha256Base64url: EMPTY_SHA256,
    challengeExpiresAt: now + 60,
    ...overrides,
  };
}

const b64url = (n: number) => Buffer.alloc(n, 7).toString('base64url');
const id43 = b64url(32);

/** [label, key id, its class or 'invalid'] (spec A.3). */
export const keyIdCases: [string, string, string][] = [
  ['tpm', `dk_tpm_${id43}`, 'hardware_tpm'],
  ['secure enclave', `dk_hse_${id43}`, 'hardware_secure_enclave'],
  ['os protected', `dk_osn_${id43}`, 'os_protected_nonextractable'],
  ['empty', '', 'invalid'],
  ['not a key id', 'not-a-device-key', 'invalid'],
  ['prefix only', 'dk_tpm_', 'invalid'],
  ['unknown prefix', `dk_bad_${id43}`, 'invalid'],
  ['51 characters', `dk_tpm_${id43}A`, 'invalid'],
  ['49 characters', `dk_tpm_${id43.slice(1)}`, 'invalid'],
  ['padded', `dk_tpm_${id43.slice(0, 42)}=`, 'invalid'],
  ['standard alphabet', `dk_tpm_${id43.slice(0, 41)}+/`, 'invalid'],
  ['stray bits in the last character', `dk_tpm_${id43.slice(0, 42)}B`, 'invalid'],
];

export interface PayloadCase {
  label: string;
  payload: SignPayload;
  /** The message after `invalid device key payload: `; undefined when the payload is valid. */
  message?: string;
}

/** Each rule broken alone, plus the accepted edges (48-byte nonce, loopback origins, now+900). */
export function payloadRuleCases(now: number): PayloadCase[] {
  const c = (o: Record<string, unknown>) => connectionPayload(now, o);
  const e = (o: Record<string, unknown>) => enrollmentPayload(now, o);
  const nonce = 'nonce must be at least 32 random bytes encoded as unpadded base64url';
  const origin = 'targetOrigin must be an allowed remote-control backend origin';
  const path = "targetPath must match the signed payload type's remote-control endpoint";
  return [
    { label: 'valid connection', payload: c({}) },
    { label: 'valid enrollment', payload: e({}) },
    { label: '48-byte nonce', payload: c({ nonce: b64url(48) }) },
    { label: '31-byte nonce', payload: c({ nonce: b64url(31) }), message: nonce },
    { label: 'padded nonce', payload: c({ nonce: `${b64url(33)}=` }), message: nonce },
    {
      label: 'nonce with +/',
      payload: c({ nonce: Buffer.alloc(33, 0xfb).toString('base64') }),
      message: nonce,
    },
    { label: 'empty nonce', payload: e({ nonce: '' }), message: nonce },
    { label: 'localhost origin', payload: c({ targetOrigin: 'http://localhost:8080' }) },
    { label: '127.0.0.1 origin', payload: c({ targetOrigin: 'https://127.0.0.1' }) },
    { label: '[::1] origin', payload: c({ targetOrigin: 'http://[::1]:9/' }) },
    { label: 'staging subdomain', payload: c({ targetOrigin: 'https://ab.chatgpt-staging.com' }) },
    { label: 'http chatgpt.com', payload: c({ targetOrigin: 'http://chatgpt.com' }), message: origin },
    {
      label: 'origin with a path',
      payload: c({ targetOrigin: 'https://chatgpt.com/backend-api' }),
      message: origin,
    },
    {
      label: 'origin with a query',
      payload: c({ targetOrigin: 'https://chatgpt.com/?a=1' }),
      message: origin,
    },
    {
      label: 'look-alike host',
      payload: c({ targetOrigin: 'https://chatgpt.com.evil.com' }),
      message: origin,
    },
    { label: 'empty origin', payload: e({ targetOrigin: '' }), message: origin },
    { label: 'wham client path', payload: c({ targetPath: '/wham/remote/control/client' }) },
    {
      label: 'enroll path on a connection',
      payload: c({ targetPath: '/wham/remote/control/client/enroll' }),
      message: path,
    },
    {
      label: 'client path on an enrollment',
      payload: e({ targetPath: '/api/codex/remote/control/client' }),
      message: path,
    },
    { label: 'empty sessionId', payload: c({ sessionId: '' }), message: 'sessionId must not be empty' },
    { label: 'empty challengeId', payload: e({ challengeId: '' }), message: 'challengeId must not be empty' },
    {
      label: 'empty accountUserId',
      payload: c({ accountUserId: '' }),
      message: 'accountUserId must not be empty',
    },
    { label: 'empty clientId', payload: e({ clientId: '' }), message: 'clientId must not be empty' },
    {
      label: 'hex token digest',
      payload: c({
        tokenSha256Base64url: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      }),
      message: 'tokenSha256Base64url must be a SHA-256 digest encoded as unpadded base64url',
    },
    {
      label: '31-byte identity digest',
      payload: e({ deviceIdentitySha256Base64url: b64url(31) }),
      message: 'deviceIdentitySha256Base64url must be a SHA-256 digest encoded as unpadded base64url',
    },
    ...[[], ['other'], ['remote_control_controller_websocket', 'remote_control_controller_websocket']].map(
      (scopes) => ({
        label: `scopes ${JSON.stringify(scopes)}`,
        payload: c({ scopes }),
        message: 'scopes must contain exactly remote_control_controller_websocket',
      }),
    ),
    {
      label: 'token expiring now',
      payload: c({ tokenExpiresAt: now }),
      message: 'remote-control token is expired',
    },
    { label: 'token expiring at now+900', payload: c({ tokenExpiresAt: now + 900 }) },
    {
      label: 'token expiring at now+901',
      payload: c({ tokenExpiresAt: now + 901 }),
      message: 'remote-control token expires too far in the future',
    },
    {
      label: 'challenge expired',
      payload: e({ challengeExpiresAt: now - 1 }),
      message: 'enrollment challenge is expired',
    },
    { label: 'challenge at now+900', payload: e({ challengeExpiresAt: now + 900 }) },
    {
      label: 'challenge at now+901',
      payload: e({ challengeExpiresAt: now + 901 }),
      message: 'enrollment challenge expires too far in the future',
    },
    // Order: the first failing rule wins (nonce before origin before path ...).
    {
      label: 'bad nonce and bad origin',
      payload: c({ nonce: '', targetOrigin: 'x' }),
      message: nonce,
    },
    {
      label: 'enrollment: empty challengeId before bad origin',
      payload: e({ challengeId: '', targetOrigin: 'x' }),
      message: 'challengeId must not be empty',
    },
    {
      label: 'connection: bad path before empty sessionId',
      payload: c({ targetPath: '/x', sessionId: '' }),
      message: path,
    },
    {
      label: 'scopes before expiry',
      payload: c({ scopes: [], tokenExpiresAt: now }),
      message: 'scopes must contain exactly remote_control_controller_websocket',
    },
  ];
}
