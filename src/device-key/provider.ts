/**
 * The one interface every device-key provider implements. A provider creates P-256 keys that
 * never leave it (a TPM, a PKCS#11 token) and signs SHA-256 digests with them. Providers run
 * inside a key-store worker thread, never on the main thread; they know nothing about bindings,
 * payloads or policies, which the key store and the service above it own.
 */
import { createPublicKey } from 'node:crypto';
import { sequence, unsignedInteger } from '../codec/der.js';

export type DeviceKeyProtectionClass =
  'hardware_secure_enclave' | 'hardware_tpm' | 'os_protected_nonextractable';

export interface KeyProvider {
  readonly protectionClass: DeviceKeyProtectionClass;
  /**
   * Creates a new non-exportable P-256 signing key named `keyId` and returns its
   * SubjectPublicKeyInfo DER (91 bytes). Fails with `platformError` when the device is unusable.
   */
  create(keyId: string): Promise<Uint8Array>;
  /** The SPKI DER of an existing key, or undefined when the provider holds no such key. */
  publicKey(keyId: string): Promise<Uint8Array | undefined>;
  /**
   * ECDSA P-256 over a SHA-256 digest (32 bytes), as a DER `SEQUENCE { r, s }`; undefined when the
   * provider holds no such key.
   */
  signDigest(keyId: string, digest: Uint8Array): Promise<Uint8Array | undefined>;
  /** Removes a key (used when its binding could not be stored). Absent keys are not an error. */
  delete(keyId: string): Promise<void>;
  /** Releases sessions and connections; the provider is not used afterwards. */
  close(): Promise<void>;
}

/** Where a TPM provider finds its TPM and keeps its key blobs. */
export interface TpmProviderOptions {
  /**
   * The TPM's TCTI, as tpm2-tools writes it: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`
   * or `swtpm:path=/run/swtpm.sock` (a UNIX socket).
   */
  tcti: string;
  /** Folder (mode 0700) for the TPM-wrapped key blobs; created on first use. */
  stateDir: string;
}

/** Which PKCS#11 module and token a PKCS#11 provider uses. */
export interface Pkcs11ProviderOptions {
  /** Absolute path of the PKCS#11 module (for SoftHSM2, /usr/lib/softhsm/libsofthsm2.so). */
  module: string;
  /** Label of Gatehouse's token; a free slot is initialised with it on first use. */
  tokenLabel: string;
  /** File (mode 0600) holding the token's PINs; written when Gatehouse initialises the token. */
  pinFile: string;
}

/** What a key-store worker is told to load: one provider, or none (codex's unsupported provider). */
export type ProviderConfig =
  | { kind: 'tpm'; options: TpmProviderOptions }
  | { kind: 'pkcs11'; options: Pkcs11ProviderOptions }
  | { kind: 'unsupported'; protectionClass: DeviceKeyProtectionClass };

/** SPKI DER of a P-256 public key from its affine coordinates (each 32 bytes, big-endian). */
export function p256Spki(x: Uint8Array, y: Uint8Array): Uint8Array {
  const coordinate = (c: Uint8Array) => Buffer.from(c).toString('base64url');
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: coordinate(x), y: coordinate(y) },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
}

/** DER `SEQUENCE { INTEGER r, INTEGER s }` from an ECDSA signature's two halves. */
export function ecdsaDer(r: Uint8Array, s: Uint8Array): Uint8Array {
  return sequence(unsignedInteger(r), unsignedInteger(s));
}
