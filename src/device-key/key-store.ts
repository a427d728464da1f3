/**
 * A key store: one provider and the binding table, inside a key-store worker thread. It runs the
 * steps of create, public and sign that need state (spec A.2, A.4.2 steps 3 to 5): the binding
 * lookup and comparison, the canonical bytes, their SHA-256 and the provider's signature. The
 * caller has already checked the key id and the payload, which need none.
 */
import { createHash } from 'node:crypto';
import { BindingStore } from './binding-store.js';
import { hardwareUnavailable, invalidPayload, keyNotFound, platformError } from './errors.js';
import { newKeyId } from './key-id.js';
import type { DeviceKeyProtectionClass, KeyProvider, ProviderConfig } from './provider.js';
import { signedPayloadBytes } from './sign-payload.js';
import { openStateDb, stateDbPath } from '../store/state-db.js';
import {
  DEVICE_KEY_ALGORITHM,
  type CreateBody,
  type DeviceKeyInfo,
  type DeviceKeySignature,
  type PublicBody,
  type SignBody,
} from './key-store-messages.js';

export interface KeyStoreSetup {
  provider: ProviderConfig;
  /** Where the state database (`device_key_bindings`) lives. */
  codexHome: string;
}

async function openProvider(config: ProviderConfig): Promise<KeyProvider | undefined> {
  switch (config.kind) {
    case 'tpm': {
      const { createTpmProvider } = await import('./tpm/tpm-provider.js');
      return createTpmProvider(config.options);
    }
    case 'pkcs11': {
      const { createPkcs11Provider } = await import('./pkcs11/pkcs11-provider.js');
      return createPkcs11Provider(config.options);
    }
    case 'unsupported':
      return undefined;
  }
}

export class KeyStore {
  private constructor(
    private readonly protectionClass: DeviceKeyProtectionClass,
    private readonly provider: KeyProvider | undefined,
    private readonly bindings: BindingStore,
  ) {}

  static async open(setup: KeyStoreSetup): Promise<KeyStore> {
    const databasePath = stateDbPath(setup.codexHome);
    let bindings: BindingStore;
    try {
      bindings = new BindingStore(openStateDb(databasePath));
    } catch (e) {
      throw platformError(`cannot open ${databasePath}: ${(e as Error).message}`);
    }
    const provider = await openProvider(setup.provider);
    const protectionClass =
      setup.provider.kind === 'unsupported' ? setup.provider.protectionClass : provider!.protectionClass;
    return new KeyStore(protectionClass, provider, bindings);
  }

  /** A new key, then its binding; a key whose binding cannot be stored is deleted again. */
  async create(body: CreateBody): Promise<DeviceKeyInfo> {
    if (!this.provider) throw hardwareUnavailable();
    const keyId = newKeyId(this.protectionClass);
    const spki = await this.provider.create(keyId);
    try {
      this.bindings.put({ keyId, accountUserId: body.accountUserId, clientId: body.clientId });
    } catch (e) {
      await this.provider.delete(keyId).catch(() => undefined);
      throw platformError(`cannot store the device key binding: ${(e as Error).message}`);
    }
    return this.info(keyId, spki);
  }

  async public(body: PublicBody): Promise<DeviceKeyInfo> {
    if (!this.bindings.get(body.keyId)) throw keyNotFound();
    const spki = await this.provider?.publicKey(body.keyId);
    if (!spki) throw keyNotFound();
    return this.info(body.keyId, spki);
  }

  async sign(body: SignBody): Promise<DeviceKeySignature> {
    const binding = this.bindings.get(body.keyId);
    if (!binding) throw keyNotFound();
    if (binding.accountUserId !== body.payload.accountUserId || binding.clientId !== body.payload.clientId) {
      throw invalidPayload('payload accountUserId/clientId does not match device key binding');
    }
    const bytes = signedPayloadBytes(body.payload);
    const digest = createHash('sha256').update(bytes).digest();
    const signature = await this.provider?.signDigest(body.keyId, digest);
    if (!signature) throw keyNotFound();
    return {
      signatureDerBase64: Buffer.from(signature).toString('base64'),
      signedPayloadBase64: bytes.toString('base64'),
      algorithm: DEVICE_KEY_ALGORITHM,
    };
  }

  async close(): Promise<void> {
    await this.provider?.close();
  }

  private info(keyId: string, spki: Uint8Array): DeviceKeyInfo {
    return {
      keyId,
      publicKeySpkiDerBase64: Buffer.from(spki).toString('base64'),
      algorithm: DEVICE_KEY_ALGORITHM,
      protectionClass: this.protectionClass,
    };
  }
}
