/**
 * The `os_protected_nonextractable` provider: P-256 keys generated inside a PKCS#11 token
 * (SoftHSM2 in tests and on machines without a hardware token), marked sensitive and
 * non-extractable, so Gatehouse only ever holds handles and public keys.
 *
 * Each key-store worker thread creates its own provider over the one library loaded in the
 * process. A provider owns exactly one RW session; everything process-wide (C_Initialize, the
 * login state, the loaded module) is shared and therefore never torn down by `close()`.
 *
 * Calls are synchronous: a provider lives in a worker thread whose job is this, a serial session
 * must not run two operations at once anyway, and SoftHSM2 signs in tens of microseconds, less
 * than a trip through pkcs11js's async variants would cost.
 */
import { dirname } from 'node:path';
import type { Handle, PKCS11, Template } from 'pkcs11js';
import { cryptoError, platformError } from '../errors.js';
import type { KeyProvider, Pkcs11ProviderOptions } from '../provider.js';
import { initialiseModule, isCkr, loadModule, p11, pkcs11js, toProtocolError } from './cryptoki.js';
import { derFromRawSignature, objectId, P256_EC_PARAMS, spkiFromEcPoint } from './ec-key.js';
import { withInitLock } from './init-lock.js';
import { ensurePrivateFolder } from './pin-file.js';
import { openToken } from './token.js';

const RW_SESSION = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;
const DIGEST_BYTES = 32;
/** Room for any ECDSA signature, so an odd length shows up as such rather than as a CKR error. */
const SIGNATURE_ROOM = 256;
/** A handle cached from before another thread or process destroyed the object. */
const STALE_HANDLE = [pkcs11js.CKR_OBJECT_HANDLE_INVALID, pkcs11js.CKR_KEY_HANDLE_INVALID];

interface KeyHandles {
  privateKey: Handle;
  publicKey: Handle | undefined;
  spki?: Uint8Array;
}

export async function createPkcs11Provider(options: Pkcs11ProviderOptions): Promise<KeyProvider> {
  try {
    const library = loadModule(options.module);
    ensurePrivateFolder(dirname(options.pinFile));
    const token = await withInitLock(`${options.pinFile}.lock`, () => {
      initialiseModule(library);
      return openToken(library, options);
    });
    const session = p11('C_OpenSession', () => library.C_OpenSession(token.slot, RW_SESSION));
    try {
      p11('C_Login', () => library.C_Login(session, pkcs11js.CKU_USER, token.userPin));
    } catch (error) {
      // Login state belongs to the process, not the session: another provider's login counts.
      if (!isCkr(error, pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) {
        closeQuietly(library, session);
        throw error;
      }
    }
    return new Pkcs11Provider(library, session, token.slot, options.tokenLabel);
  } catch (error) {
    throw toProtocolError(error);
  }
}

class Pkcs11Provider implements KeyProvider {
  readonly protectionClass = 'os_protected_nonextractable' as const;
  readonly #library: PKCS11;
  #session: Handle | undefined;
  readonly #keys = new Map<string, KeyHandles>();
  readonly #signature = Buffer.alloc(SIGNATURE_ROOM);
  readonly #ecdsa = { mechanism: pkcs11js.CKM_ECDSA };

  readonly #slot: Handle;
  readonly #tokenLabel: string;

  constructor(library: PKCS11, session: Handle, slot: Handle, tokenLabel: string) {
    this.#library = library;
    this.#session = session;
    this.#slot = slot;
    this.#tokenLabel = tokenLabel;
  }

  create(keyId: string): Promise<Uint8Array> {
    return this.#guard(() => {
      const session = this.#open();
      if (this.#find(session, keyId, pkcs11js.CKO_PRIVATE_KEY).length > 0) {
        throw platformError(`PKCS#11 key ${JSON.stringify(keyId)} already exists`);
      }
      const id = objectId(keyId);
      const common: Template = [
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_ID, value: id },
        { type: pkcs11js.CKA_LABEL, value: keyId },
      ];
      const publicTemplate: Template = [
        ...common,
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_EC_PARAMS, value: P256_EC_PARAMS },
        { type: pkcs11js.CKA_VERIFY, value: true },
      ];
      const privateTemplate: Template = [
        ...common,
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ];
      const pair = p11('C_GenerateKeyPair', () =>
        this.#library.C_GenerateKeyPair(
          session,
          { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
          publicTemplate,
          privateTemplate,
        ),
      );
      const key: KeyHandles = { privateKey: pair.privateKey, publicKey: pair.publicKey };
      try {
        key.spki = this.#readSpki(session, pair.publicKey);
      } catch (error) {
        this.#destroy(session, [pair.privateKey, pair.publicKey]);
        throw error;
      }
      this.#keys.set(keyId, key);
      return Uint8Array.from(key.spki);
    });
  }

  publicKey(keyId: string): Promise<Uint8Array | undefined> {
    return this.#guard(() =>
      this.#withKey(keyId, (session, key) => {
        // The SPKI is cached, but the key may have been deleted by another worker since: touching
        // the private key makes a stale handle fail here, like it would when signing.
        p11('C_GetAttributeValue', () =>
          this.#library.C_GetAttributeValue(session, key.privateKey, [{ type: pkcs11js.CKA_SIGN }]),
        );
        if (!key.publicKey)
          throw platformError(`PKCS#11 key ${JSON.stringify(keyId)} has no public key object`);
        key.spki ??= this.#readSpki(session, key.publicKey);
        return Uint8Array.from(key.spki);
      }),
    );
  }

  signDigest(keyId: string, digest: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#guard(() => {
      if (digest.length !== DIGEST_BYTES) {
        throw cryptoError(`digest is ${digest.length} bytes, expected ${DIGEST_BYTES}`);
      }
      const data = Buffer.isBuffer(digest)
        ? digest
        : Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
      return this.#withKey(keyId, (session, key) => {
        p11('C_SignInit', () => this.#library.C_SignInit(session, this.#ecdsa, key.privateKey));
        const raw = p11('C_Sign', () => this.#library.C_Sign(session, data, this.#signature));
        // ecdsaDer copies both halves, so the reused output buffer is free again on return.
        return derFromRawSignature(raw);
      });
    });
  }

  delete(keyId: string): Promise<void> {
    return this.#guard(() => {
      const session = this.#open();
      this.#keys.delete(keyId);
      this.#destroy(session, [
        ...this.#find(session, keyId, pkcs11js.CKO_PRIVATE_KEY),
        ...this.#find(session, keyId, pkcs11js.CKO_PUBLIC_KEY),
      ]);
    });
  }

  /**
   * Closes this provider's session and nothing else. No C_Logout: login state is per process, so
   * it would log out every other worker's session too. No C_Finalize: the library is initialised
   * once per process and other workers are using it at this moment; finalising would invalidate
   * their sessions mid-call. The token logs out by itself when the process's last session closes.
   */
  close(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    this.#keys.clear();
    if (session) closeQuietly(this.#library, session);
    return Promise.resolve();
  }

  /** Every result leaves as a promise and every failure as codex's ProtocolError. */
  #guard<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(toProtocolError(error));
    }
  }

  #open(): Handle {
    if (!this.#session) throw platformError('PKCS#11 provider is closed');
    return this.#session;
  }

  /**
   * Runs `use` with the key's handles, from the cache when possible. A cached handle can go stale
   * when another provider deletes the key; then the key is looked up once more, and is unknown
   * (undefined) if it is really gone.
   */
  #withKey<T>(keyId: string, use: (session: Handle, key: KeyHandles) => T): T | undefined {
    const session = this.#open();
    const cached = this.#keys.get(keyId);
    if (cached) {
      try {
        return use(session, cached);
      } catch (error) {
        if (!isCkr(error, ...STALE_HANDLE)) throw error;
        this.#keys.delete(keyId);
      }
    }
    const key = this.#lookup(session, keyId);
    if (!key) this.#assertTokenPresent();
    return key && use(session, key);
  }

  /**
   * A key that cannot be found may be a token that is gone: SoftHSM2 finds nothing (and calls
   * cached handles invalid) once its token folder is moved or deleted, and answers
   * C_GetTokenInfo with CKR_GENERAL_ERROR from then on. "device key not found" would tell the
   * host the key is lost for good; the token being unavailable is what to report.
   */
  #assertTokenPresent(): void {
    try {
      p11('C_GetTokenInfo', () => this.#library.C_GetTokenInfo(this.#slot));
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw platformError(
        `PKCS#11 token ${JSON.stringify(this.#tokenLabel)} is unavailable (${why}); if its storage was moved or deleted, restore it and restart Gatehouse`,
      );
    }
  }

  #lookup(session: Handle, keyId: string): KeyHandles | undefined {
    const [privateKey] = this.#find(session, keyId, pkcs11js.CKO_PRIVATE_KEY);
    if (!privateKey) return undefined;
    const [publicKey] = this.#find(session, keyId, pkcs11js.CKO_PUBLIC_KEY);
    const key: KeyHandles = { privateKey, publicKey };
    this.#keys.set(keyId, key);
    return key;
  }

  #find(session: Handle, keyId: string, objectClass: number): Handle[] {
    const template: Template = [
      { type: pkcs11js.CKA_CLASS, value: objectClass },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_ID, value: objectId(keyId) },
    ];
    p11('C_FindObjectsInit', () => this.#library.C_FindObjectsInit(session, template));
    try {
      return p11('C_FindObjects', () => this.#library.C_FindObjects(session, 8));
    } finally {
      // A session with an unfinished search refuses every other operation.
      p11('C_FindObjectsFinal', () => this.#library.C_FindObjectsFinal(session));
    }
  }

  #readSpki(session: Handle, publicKey: Handle): Uint8Array {
    const [point] = p11('C_GetAttributeValue', () =>
      this.#library.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_EC_POINT }]),
    );
    if (!point || !Buffer.isBuffer(point.value)) throw cryptoError('PKCS#11 public key has no CKA_EC_POINT');
    return spkiFromEcPoint(point.value);
  }

  #destroy(session: Handle, objects: Handle[]): void {
    for (const object of objects) {
      try {
        p11('C_DestroyObject', () => this.#library.C_DestroyObject(session, object));
      } catch (error) {
        if (!isCkr(error, ...STALE_HANDLE)) throw error;
      }
    }
  }
}

function closeQuietly(library: PKCS11, session: Handle): void {
  try {
    library.C_CloseSession(session);
  } catch {
    // The session is gone either way (already closed, or the library was finalised by others).
  }
}
