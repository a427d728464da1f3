/**
 * A key store: one provider and the binding table, inside a key-store worker thread. It runs the
 * steps of create, public and sign that need state (spec A.2, A.4.2 steps 3 to 5): the binding
 * lookup and comparison, the canonical bytes, their SHA-256 and the provider's signature. The
 * caller has already checked the key id and the payload, which need none.
 */
import { createHash } from 'node:crypto';
import { BindingStore } from './binding-store.js';
import { hardwareUnavailable, invalidPayload, keyNotFound, platformError } from './errors.js';
import { ProtocolError } from '../protocol/errors.js';
import { newKeyId } from './key-id.js';
import type { DeviceKeyProtectionClass, KeyProvider, ProviderConfig } from './provider.js';
import { signedPayloadBytes } from './sign-payload.js';
import { describeStorageError, noSpaceLeft, openStateDb, stateDbPath } from '../store/state-db.js';
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
  /** Deadline of one TPM command (`gatehouse.device_key_tpm_timeout_ms`); TPM providers only. */
  tpmTimeoutMs?: number;
}

async function openProvider(setup: KeyStoreSetup): Promise<KeyProvider | undefined> {
  const config = setup.provider;
  switch (config.kind) {
    case 'tpm': {
      const { createTpmProvider } = await import('./tpm/tpm-provider.js');
      return createTpmProvider(
        config.options,
        setup.tpmTimeoutMs === undefined ? {} : { timeoutMs: setup.tpmTimeoutMs },
      );
    }
    case 'pkcs11': {
      const { createPkcs11Provider } = await import('./pkcs11/pkcs11-provider.js');
      return createPkcs11Provider(config.options);
    }
    case 'unsupported':
      return undefined;
  }
}

/** How long a binding statement waits, in all, for another process's lock before SQLITE_BUSY. */
const BUSY_WAIT_MS = 5_000;
/** Each try blocks the thread inside SQLite this long at most; between tries it is free. */
const BUSY_SLICE_MS = 20;

export class KeyStore {
  private constructor(
    private readonly protectionClass: DeviceKeyProtectionClass,
    private readonly provider: KeyProvider | undefined,
    private readonly bindings: BindingStore,
    private readonly codexHome: string,
  ) {}

  static async open(setup: KeyStoreSetup): Promise<KeyStore> {
    const databasePath = stateDbPath(setup.codexHome);
    let bindings: BindingStore;
    try {
      const db = openStateDb(databasePath);
      // Lock waits happen in whileBusy, a slice at a time, so the thread serves others meanwhile.
      db.pragma(`busy_timeout = ${BUSY_SLICE_MS}`);
      bindings = new BindingStore(db);
    } catch (e) {
      // openStateDb's message already names the code and a full disk.
      throw platformError(`cannot open ${databasePath}: ${(e as Error).message}`);
    }
    const provider = await openProvider(setup);
    const protectionClass =
      setup.provider.kind === 'unsupported' ? setup.provider.protectionClass : provider!.protectionClass;
    return new KeyStore(protectionClass, provider, bindings, setup.codexHome);
  }

  /** A new key, then its binding; a key whose binding cannot be stored is deleted again. */
  async create(body: CreateBody): Promise<DeviceKeyInfo> {
    if (!this.provider) throw hardwareUnavailable();
    const keyId = newKeyId(this.protectionClass);
    let spki: Uint8Array;
    try {
      spki = await this.provider.create(keyId);
    } catch (e) {
      throw withFullDiskCause(e, this.codexHome);
    }
    try {
      const binding = { keyId, accountUserId: body.accountUserId, clientId: body.clientId };
      await whileBusy(() => this.bindings.put(binding));
    } catch (e) {
      await this.provider.delete(keyId).catch(() => undefined);
      throw platformError(`cannot store the device key binding: ${describeStorageError(e, this.codexHome)}`);
    }
    return this.info(keyId, spki);
  }

  async public(body: PublicBody): Promise<DeviceKeyInfo> {
    if (!(await whileBusy(() => this.bindings.get(body.keyId)))) throw keyNotFound();
    const spki = await this.provider?.publicKey(body.keyId);
    if (!spki) throw keyNotFound();
    return this.info(body.keyId, spki);
  }

  async sign(body: SignBody): Promise<DeviceKeySignature> {
    const binding = await whileBusy(() => this.bindings.get(body.keyId));
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

/**
 * A token or TPM that cannot store a new key reports a generic failure (SoftHSM2 on a full disk
 * says CKR_FUNCTION_FAILED). Keys and their bindings live under CODEX_HOME, so when that file
 * system has no space left, the error names it as the likely cause.
 */
function withFullDiskCause(e: unknown, codexHome: string): unknown {
  if (!(e instanceof ProtocolError)) return e;
  if (!noSpaceLeft(codexHome)) return e;
  return new ProtocolError(
    e.code,
    `${e.message}; no space left on the file system of ${codexHome} (ENOSPC)`,
    e.data,
  );
}

/**
 * Runs a statement, retrying while another connection holds the lock, up to BUSY_WAIT_MS. The
 * waits are timers rather than SQLite's own sleep, so a create that waits for a writer does not
 * hold up the signatures queued on the same thread.
 */
async function whileBusy<T>(statement: () => T): Promise<T> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (;;) {
    try {
      return statement();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const busy = typeof code === 'string' && code.startsWith('SQLITE_BUSY');
      if (!busy || Date.now() >= deadline) throw e;
      await new Promise((resolve) => setTimeout(resolve, BUSY_SLICE_MS));
    }
  }
}
