/**
 * What the main thread and a key-store worker say to each other. Kept apart from the key store
 * itself so the main thread never loads SQLite or a provider just to address the worker.
 */
import type { DeviceKeyProtectionClass } from './provider.js';
import type { SignPayload } from './sign-payload.js';

export const DEVICE_KEY_ALGORITHM = 'ecdsa_p256_sha256';

export interface DeviceKeyInfo {
  keyId: string;
  publicKeySpkiDerBase64: string;
  algorithm: typeof DEVICE_KEY_ALGORITHM;
  protectionClass: DeviceKeyProtectionClass;
}

export interface DeviceKeySignature {
  signatureDerBase64: string;
  signedPayloadBase64: string;
  algorithm: typeof DEVICE_KEY_ALGORITHM;
}

/** Messages a key-store actor understands, with their bodies. */
export const KeyStoreMessage = { create: 'create', public: 'public', sign: 'sign' } as const;
export interface CreateBody {
  accountUserId: string;
  clientId: string;
}
export interface PublicBody {
  keyId: string;
}
export interface SignBody {
  keyId: string;
  payload: SignPayload;
}
