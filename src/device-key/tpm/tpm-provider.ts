/**
 * The `hardware_tpm` provider: P-256 signing keys created inside a TPM 2.0 under a storage
 * primary in the owner hierarchy. Only the TPM-wrapped blobs leave the TPM; they are stored
 * exactly as `tpm2_create -u/-r` writes them, so tpm2-tools can load them too.
 *
 * The storage primary is never persisted: CreatePrimary derives it from the owner seed and the
 * template, so recreating it on every connection yields the same key and nothing is left in the
 * TPM's NV memory.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { join } from 'node:path';
import { ProtocolError } from '../../protocol/errors.js';
import { cryptoError, platformError } from '../errors.js';
import { ecdsaDer, p256Spki, type KeyProvider, type TpmProviderOptions } from '../provider.js';
import {
  ALG,
  checkSizedBlob,
  createPrimary,
  createSigningKey,
  ECC_NIST_P256,
  flushContext,
  getTransientHandles,
  load,
  OBJECT,
  parseEccPublic,
  RC_OBJECT_MEMORY,
  sign,
  SIGNING_KEY_ATTRIBUTES,
  startup,
  TpmCommandError,
  TRANSIENT_FIRST,
  type EccPublic,
  type TpmCommand,
} from './commands.js';
import { openTransport, TctiError, TransportError, type TpmTransport } from './transport.js';

/** What the TPM provider offers beyond KeyProvider, for diagnostics and tests. */
export interface TpmKeyProvider extends KeyProvider {
  /** The transient object handles the TPM holds right now (all of them, not only ours). */
  transientHandles(): Promise<number[]>;
}

export interface TpmTuning {
  /**
   * Keys kept loaded besides the primary. TPMs commonly hold three transient objects, so two keys
   * plus the primary fill one; more only pays off on a TPM known to hold more.
   */
  loadedKeys?: number;
  /** Per TPM command; see DEFAULT_TIMEOUT_MS in transport.ts. */
  timeoutMs?: number;
}

export const PUBLIC_BLOB = 'public.tpm';
export const PRIVATE_BLOB = 'private.tpm';

/** The folder holding one key's blobs: the key id hashed, so any id is a safe file name. */
export function keyFolderName(keyId: string): string {
  return createHash('sha256').update(keyId, 'utf8').digest('base64url');
}

/**
 * Creates the provider without touching the TPM, so a TPM that is down fails the first operation
 * rather than the provider's construction. Throws a platform error for an unusable TCTI string.
 */
export function createTpmProvider(
  options: TpmProviderOptions,
  tuning: TpmTuning = {},
): Promise<TpmKeyProvider> {
  let transport: TpmTransport;
  try {
    transport = openTransport(
      options.tcti,
      tuning.timeoutMs === undefined ? {} : { timeoutMs: tuning.timeoutMs },
    );
  } catch (error) {
    if (error instanceof TctiError) return Promise.reject(platformError(error.message));
    throw error;
  }
  return Promise.resolve(new TpmProvider(options.stateDir, transport, tuning.loadedKeys ?? 2));
}

/** What the TPM holds for one connection; a new connection starts from nothing. */
interface TpmSession {
  readonly generation: number;
  primary: number | undefined;
  /** keyId → handle, least recently used first. */
  readonly loaded: Map<string, number>;
}

interface Blobs {
  public: Buffer;
  private: Buffer;
}

/** Response codes that mean "send the same command again" rather than failure. */
const RC_RETRY_LATER = new Set([0x908 /* YIELDED */, 0x90a /* TESTING */, 0x922 /* RETRY */]);

class TpmProvider implements TpmKeyProvider {
  readonly protectionClass = 'hardware_tpm' as const;
  private session: TpmSession | undefined;
  private readonly spkis = new Map<string, Uint8Array>();
  private lock: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** When (performance.now()) an operation last failed because the TPM did not answer in time. */
  private timedOutAt = -Infinity;

  constructor(
    private readonly stateDir: string,
    private readonly transport: TpmTransport,
    private readonly loadedKeys: number,
  ) {
    if (!Number.isInteger(loadedKeys) || loadedKeys < 1)
      throw new RangeError('loadedKeys must be at least 1');
  }

  create(keyId: string): Promise<Uint8Array> {
    return this.exclusive(async () => {
      const folder = this.folder(keyId);
      if (await this.readBlob(folder, PUBLIC_BLOB))
        throw platformError('a device key with this id already exists');
      const created = await this.withTpm(async (session) => {
        const parent = await this.primary(session);
        return this.send(session, createSigningKey(parent));
      });
      const spki = spkiOf(created.outPublic);
      await this.writeBlobs(folder, created.outPrivate, created.outPublic);
      this.spkis.set(keyId, spki);
      return spki;
    });
  }

  async publicKey(keyId: string): Promise<Uint8Array | undefined> {
    this.assertOpen();
    const known = this.spkis.get(keyId);
    if (known) return known;
    const blob = await this.readBlob(this.folder(keyId), PUBLIC_BLOB);
    if (!blob) return undefined;
    const spki = spkiOf(blob);
    this.spkis.set(keyId, spki);
    return spki;
  }

  signDigest(keyId: string, digest: Uint8Array): Promise<Uint8Array | undefined> {
    if (digest.length !== 32)
      return Promise.reject(cryptoError(`a SHA-256 digest has 32 bytes, not ${digest.length}`));
    return this.exclusive(async () => {
      const blobs = await this.readBlobs(keyId);
      if (!blobs) return undefined;
      const { r, s } = await this.withTpm(async (session) => {
        const handle = await this.loadKey(session, keyId, blobs);
        return this.send(session, sign(handle, digest));
      });
      if (r.length === 0 || r.length > 32 || s.length === 0 || s.length > 32)
        throw cryptoError(
          `the TPM returned an ECDSA signature with ${r.length}- and ${s.length}-byte halves`,
        );
      return ecdsaDer(r, s);
    });
  }

  delete(keyId: string): Promise<void> {
    return this.exclusive(async () => {
      await this.unload(keyId);
      this.spkis.delete(keyId);
      try {
        await rm(this.folder(keyId), { recursive: true, force: true });
      } catch (error) {
        throw fileError('remove', this.folder(keyId), error);
      }
    });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const closing = this.exclusive(async () => {
      const session = this.session;
      this.session = undefined;
      if (session) {
        // Best effort: whatever cannot be flushed now goes with the connection (a resource
        // manager) or is reclaimed by the next user's TPM_RC_OBJECT_MEMORY recovery (swtpm).
        for (const handle of [...session.loaded.values(), session.primary]) {
          if (handle === undefined) continue;
          await this.send(session, flushContext(handle)).catch(() => undefined);
        }
      }
      await this.transport.close();
    });
    this.closed = true;
    return closing;
  }

  transientHandles(): Promise<number[]> {
    return this.exclusive(() => this.withTpm((session) => this.listTransient(session)));
  }

  // ---- TPM sessions --------------------------------------------------------------------------

  /**
   * Runs `work` on a live connection, opening one (and starting the TPM) if needed. Two failures
   * are retried once: TPM_RC_OBJECT_MEMORY, after flushing every transient object, since a raw
   * simulator keeps objects that earlier processes never flushed; and a connection found broken
   * on its first use by this call, since the TPM may simply have been restarted in between.
   */
  private async withTpm<T>(work: (session: TpmSession) => Promise<T>): Promise<T> {
    const before = this.session?.generation;
    try {
      return await work(await this.openSession());
    } catch (error) {
      if (error instanceof TpmCommandError && error.rc === RC_OBJECT_MEMORY && this.session) {
        const session = this.session;
        await this.flushAllTransient(session);
        return work(session);
      }
      if (error instanceof TransportError && error.kind === 'dropped' && before !== undefined) {
        if (this.session?.generation === before) return work(await this.openSession());
      }
      throw error;
    }
  }

  private async openSession(): Promise<TpmSession> {
    const generation = await this.transport.connect();
    if (this.session?.generation === generation) return this.session;
    const session: TpmSession = { generation, primary: undefined, loaded: new Map() };
    this.session = session;
    await this.send(session, startup());
    return session;
  }

  private async send<T>(session: TpmSession, command: TpmCommand<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const response = await this.transport.transmit(command.bytes, session.generation);
      try {
        return command.parse(response);
      } catch (error) {
        const later =
          error instanceof TpmCommandError && error.rc !== undefined && RC_RETRY_LATER.has(error.rc);
        if (!later || attempt === 3) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
      }
    }
  }

  private async primary(session: TpmSession): Promise<number> {
    session.primary ??= (await this.send(session, createPrimary())).handle;
    return session.primary;
  }

  private async loadKey(session: TpmSession, keyId: string, blobs: Blobs): Promise<number> {
    const cached = session.loaded.get(keyId);
    if (cached !== undefined) {
      session.loaded.delete(keyId);
      session.loaded.set(keyId, cached);
      return cached;
    }
    const parent = await this.primary(session);
    for (const [oldest, handle] of session.loaded) {
      if (session.loaded.size < this.loadedKeys) break;
      session.loaded.delete(oldest);
      await this.flushQuietly(session, handle);
    }
    const { handle } = await this.send(session, load(parent, blobs.private, blobs.public));
    session.loaded.set(keyId, handle);
    return handle;
  }

  /** Flushes a key if it is loaded on the live connection; never opens one just for that. */
  private async unload(keyId: string): Promise<void> {
    const session = this.session;
    const handle = session?.loaded.get(keyId);
    if (!session || handle === undefined) return;
    session.loaded.delete(keyId);
    await this.flushQuietly(session, handle).catch(() => undefined);
  }

  /** A handle that is already gone (TPM_RC_HANDLE and the like) is what flushing wanted anyway. */
  private async flushQuietly(session: TpmSession, handle: number): Promise<void> {
    try {
      await this.send(session, flushContext(handle));
    } catch (error) {
      if (!(error instanceof TpmCommandError)) throw error;
    }
  }

  private async listTransient(session: TpmSession): Promise<number[]> {
    const all: number[] = [];
    for (let first = TRANSIENT_FIRST; ;) {
      const { handles, more } = await this.send(session, getTransientHandles(first));
      all.push(...handles);
      const last = handles.at(-1);
      if (!more || last === undefined) return all;
      first = last + 1;
    }
  }

  private async flushAllTransient(session: TpmSession): Promise<void> {
    for (const handle of await this.listTransient(session)) await this.flushQuietly(session, handle);
    session.primary = undefined;
    session.loaded.clear();
  }

  // ---- blobs on disk -------------------------------------------------------------------------

  private folder(keyId: string): string {
    return join(this.stateDir, keyFolderName(keyId));
  }

  private async readBlob(folder: string, name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(join(folder, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fileError('read', join(folder, name), error);
    }
  }

  /** The public blob is written last, so its presence means the key is complete. */
  private async readBlobs(keyId: string): Promise<Blobs | undefined> {
    const folder = this.folder(keyId);
    const publicBlob = await this.readBlob(folder, PUBLIC_BLOB);
    if (!publicBlob) return undefined;
    const privateBlob = await this.readBlob(folder, PRIVATE_BLOB);
    if (!privateBlob) throw platformError(`the device key in ${folder} has no ${PRIVATE_BLOB}`);
    try {
      checkSizedBlob(privateBlob, PRIVATE_BLOB);
      parseEccPublic(publicBlob);
    } catch (error) {
      throw platformError(`the device key in ${folder} is damaged: ${(error as Error).message}`);
    }
    return { public: publicBlob, private: privateBlob };
  }

  private async writeBlobs(folder: string, privateBlob: Buffer, publicBlob: Buffer): Promise<void> {
    try {
      await mkdir(folder, { recursive: true, mode: 0o700 });
      writeFileAtomic(join(folder, PRIVATE_BLOB), privateBlob);
      writeFileAtomic(join(folder, PUBLIC_BLOB), publicBlob);
    } catch (error) {
      throw fileError('write', folder, error);
    }
  }

  // ---- plumbing ------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw platformError('the TPM provider is closed');
  }

  /**
   * One operation at a time: a TPM runs one command at a time anyway, and an operation's commands
   * (load, then sign) must not interleave with another's eviction of the handle it just loaded.
   * Errors leave here as the ProtocolErrors codex would send.
   */
  private exclusive<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(platformError('the TPM provider is closed'));
    const queuedAt = performance.now();
    const guarded = (): Promise<T> => {
      // A TPM that left the operation ahead of this one unanswered is hung or stopped: the
      // operations that queued behind it fail now instead of each waiting its own deadline in
      // turn (a hundred signs behind a stopped TPM would otherwise take a hundred deadlines).
      if (this.timedOutAt >= queuedAt)
        return Promise.reject(
          platformError(
            `TPM unavailable (${this.transport.tcti}): it did not answer an earlier command in time`,
          ),
        );
      return operation();
    };
    const run = this.lock.then(guarded, guarded).catch((error: unknown) => {
      if (error instanceof TransportError && error.kind === 'timeout') this.timedOutAt = performance.now();
      throw this.toProtocolError(error);
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  private toProtocolError(error: unknown): ProtocolError {
    if (error instanceof ProtocolError) return error;
    if (error instanceof TransportError) {
      if (error.kind === 'closed') return platformError('the TPM provider is closed');
      return platformError(`TPM unavailable (${this.transport.tcti}): ${error.message}`);
    }
    if (error instanceof TpmCommandError) return platformError(error.message);
    return platformError(error instanceof Error ? error.message : String(error));
  }
}

/** SPKI DER from a TPM2B_PUBLIC, after checking it is the kind of key this provider creates. */
function spkiOf(publicBlob: Uint8Array): Uint8Array {
  let area: EccPublic;
  try {
    area = parseEccPublic(publicBlob);
  } catch (error) {
    throw cryptoError((error as Error).message);
  }
  if (area.curve !== ECC_NIST_P256) throw cryptoError(`the TPM key is on curve 0x${area.curve.toString(16)}`);
  if (
    (area.attributes & SIGNING_KEY_ATTRIBUTES) !== SIGNING_KEY_ATTRIBUTES ||
    area.attributes & OBJECT.decrypt
  )
    throw cryptoError(
      `the TPM key has attributes 0x${area.attributes.toString(16)}, not a fixed signing key`,
    );
  if (area.scheme !== ALG.ECDSA || area.schemeHash !== ALG.SHA256)
    throw cryptoError('the TPM key is not an ECDSA/SHA-256 key');
  const pad = (c: Buffer) => {
    if (c.length === 0 || c.length > 32) throw cryptoError(`a ${c.length}-byte P-256 coordinate`);
    return Buffer.concat([Buffer.alloc(32 - c.length), c]);
  };
  const x = pad(area.x);
  const y = pad(area.y);
  try {
    return p256Spki(x, y);
  } catch {
    throw cryptoError('the TPM returned a point that is not on P-256');
  }
}

function fileError(action: string, path: string, error: unknown): ProtocolError {
  const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return platformError(`cannot ${action} device key blobs at ${path}: ${code}`);
}
