/**
 * SoftHSM2 for tests: where the module is, a private token folder per test file, a second view
 * of the token through pkcs11js (to check what the provider stored), and worker threads that run
 * providers of their own.
 *
 * SoftHSM2 reads SOFTHSM2_CONF once, at the process's first C_Initialize, so a test file sets it
 * once before its first provider and keeps that token folder; tests isolate by token label.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import pkcs11js from 'pkcs11js';
import type { Handle, PKCS11 } from 'pkcs11js';
import type { Pkcs11ProviderOptions } from '../../src/device-key/provider.js';

const MODULE_PATHS = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'];

/** The SoftHSM2 module path if installed (/usr/lib/softhsm/libsofthsm2.so or /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so), else undefined. */
export function softhsmModule(): string | undefined {
  return MODULE_PATHS.find((path) => existsSync(path));
}

/** Reason SoftHSM2 cannot be used here, or undefined. */
export function softhsmMissing(): string | undefined {
  if (!softhsmModule() || !softhsmUtil()) return 'SoftHSM2 not installed: apt-get install softhsm2';
  return undefined;
}

/** Writes `<dir>/softhsm2.conf` with `directories.tokendir = <dir>/tokens` (created) and objectstore.backend = file, log.level = ERROR; returns the conf path. */
export function writeSofthsmConf(dir: string): string {
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { recursive: true, mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  return conf;
}

function softhsmUtil(): string | undefined {
  return ['/usr/bin/softhsm2-util', '/usr/local/bin/softhsm2-util'].find((path) => existsSync(path));
}

/** `softhsm2-util --show-slots` run as its own process, so it sees the token files, not our memory. */
export function showSlots(conf: string): string {
  return execFileSync(softhsmUtil() ?? 'softhsm2-util', ['--show-slots'], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
    encoding: 'utf8',
  });
}

/**
 * An independent pkcs11js handle on the same (process-wide) library, with a session on the token
 * labelled `label`, for reading what the provider created.
 */
export class TokenInspector {
  readonly library: PKCS11;
  readonly slot: Handle;
  readonly session: Handle;

  constructor(module: string, label: string, userPin?: string) {
    this.library = new pkcs11js.PKCS11();
    this.library.load(module);
    tolerate(
      () => this.library.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }),
      [pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED],
    );
    const slot = this.library
      .C_GetSlotList(true)
      .find((s) => this.library.C_GetTokenInfo(s).label.trimEnd() === label);
    if (!slot) throw new Error(`no token labelled ${label}`);
    this.slot = slot;
    this.session = this.library.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    if (userPin !== undefined) {
      tolerate(
        () => this.library.C_Login(this.session, pkcs11js.CKU_USER, userPin),
        [pkcs11js.CKR_USER_ALREADY_LOGGED_IN],
      );
    }
  }

  /** Objects of `objectClass` whose CKA_LABEL is `label`. */
  find(objectClass: number, label: string): Handle[] {
    this.library.C_FindObjectsInit(this.session, [
      { type: pkcs11js.CKA_CLASS, value: objectClass },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
    try {
      return this.library.C_FindObjects(this.session, 16);
    } finally {
      this.library.C_FindObjectsFinal(this.session);
    }
  }

  /** One boolean attribute (CK_BBOOL, one byte). */
  flag(object: Handle, type: number): boolean {
    const [attribute] = this.library.C_GetAttributeValue(this.session, object, [{ type }]);
    return attribute!.value[0] === 1;
  }

  close(): void {
    // Closing our session only; the provider's sessions and the login stay.
    this.library.C_CloseSession(this.session);
  }
}

function tolerate(call: () => void, codes: number[]): void {
  try {
    call();
  } catch (error) {
    if (!(error instanceof pkcs11js.Pkcs11Error && codes.includes(error.code))) throw error;
  }
}

/** The message a signing worker signs as its `index`-th: distinct per worker and per index. */
export function workerMessage(worker: number, index: number): Buffer {
  return Buffer.from(`worker ${worker} message ${index}`);
}

export interface SigningJob {
  worker: number;
  options: Pkcs11ProviderOptions;
  keyId: string;
  count: number;
  /** Int32Array over a SharedArrayBuffer: [workers ready]. All start signing together. */
  gate: SharedArrayBuffer;
  workers: number;
}

export interface SigningResult {
  signatures: Uint8Array[];
  signingMs: number;
}

/** Runs inside a worker: a provider of its own, then `count` signatures once every worker is ready. */
export async function runSigningJob(job: SigningJob): Promise<SigningResult> {
  const { createPkcs11Provider } = await import('../../src/device-key/pkcs11/pkcs11-provider.js');
  const provider = await createPkcs11Provider(job.options);
  try {
    const gate = new Int32Array(job.gate);
    Atomics.add(gate, 0, 1);
    Atomics.notify(gate, 0);
    for (let ready = Atomics.load(gate, 0); ready < job.workers; ready = Atomics.load(gate, 0)) {
      Atomics.wait(gate, 0, ready, 5_000);
    }
    const signatures: Uint8Array[] = [];
    const started = performance.now();
    for (let index = 0; index < job.count; index++) {
      const digest = createHash('sha256').update(workerMessage(job.worker, index)).digest();
      const signature = await provider.signDigest(job.keyId, digest);
      if (!signature) throw new Error(`worker ${job.worker}: key ${job.keyId} not found`);
      signatures.push(signature);
    }
    return { signatures, signingMs: performance.now() - started };
  } finally {
    await provider.close();
  }
}

/**
 * A real worker thread running `runSigningJob`. Workers do not inherit tsx's hooks from the
 * parent's --import on Node 20, so the (CommonJS, eval'd) entry registers them first, as
 * workers/tsx-bootstrap.mjs does for the pool.
 */
export function signInWorker(job: SigningJob): Promise<SigningResult> {
  const entry = `
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      const { register } = await import(workerData.tsxApi);
      register();
      const { runSigningJob } = await import(workerData.helper);
      parentPort.postMessage({ ok: true, value: await runSigningJob(workerData.job) });
    })().catch((error) => parentPort.postMessage({ ok: false, error: String(error && error.stack || error) }));
  `;
  const worker = new Worker(entry, {
    eval: true,
    workerData: { tsxApi: import.meta.resolve('tsx/esm/api'), helper: import.meta.url, job },
  });
  return new Promise((resolve, reject) => {
    worker.once('message', (message: { ok: true; value: SigningResult } | { ok: false; error: string }) => {
      if (message.ok) resolve(message.value);
      else reject(new Error(message.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`signing worker exited with ${code} before answering`)));
  });
}
