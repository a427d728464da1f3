/**
 * Device-key ids (spec A.2, A.3): a protection-class prefix and 32 random bytes in unpadded
 * base64url, 50 characters in all. The prefix tells which provider holds the key.
 */
import { randomBytes } from 'node:crypto';
import { invalidPayload } from './errors.js';
import type { DeviceKeyProtectionClass } from './provider.js';

export const KEY_ID_PREFIX: Record<DeviceKeyProtectionClass, string> = {
  hardware_secure_enclave: 'dk_hse_',
  hardware_tpm: 'dk_tpm_',
  os_protected_nonextractable: 'dk_osn_',
};

const KEY_ID_LENGTH = 50;
const PREFIX_LENGTH = 7;

export const INVALID_KEY_ID =
  'keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes';

/**
 * Bytes of an unpadded base64url text, or undefined when it is not one. Strict like codex's
 * decoder: no `=`, no `+` or `/`, and no stray bits in the last character (re-encoding must give
 * the same text back).
 */
export function decodeBase64UrlStrict(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/** The protection class a well-formed key id names; throws codex's error for any other text. */
export function keyIdClass(keyId: string): DeviceKeyProtectionClass {
  const prefix = keyId.slice(0, PREFIX_LENGTH);
  const protectionClass = (Object.keys(KEY_ID_PREFIX) as DeviceKeyProtectionClass[]).find(
    (c) => KEY_ID_PREFIX[c] === prefix,
  );
  if (
    !protectionClass ||
    keyId.length !== KEY_ID_LENGTH ||
    decodeBase64UrlStrict(keyId.slice(PREFIX_LENGTH))?.length !== 32
  ) {
    throw invalidPayload(INVALID_KEY_ID);
  }
  return protectionClass;
}

export function newKeyId(protectionClass: DeviceKeyProtectionClass): string {
  return KEY_ID_PREFIX[protectionClass] + randomBytes(32).toString('base64url');
}
