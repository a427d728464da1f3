/**
 * The PKCS#11 library itself: loading a module once per thread, initialising it, and turning
 * pkcs11js's exceptions into errors that say which function failed with which CKR code.
 *
 * Failures stay local (`Pkcs11Failure`, carrying the numeric code the provider branches on) until
 * they leave the provider, where `toProtocolError` words them as codex's platform errors.
 */
import { existsSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { ProtocolError } from '../../protocol/errors.js';
import { platformError } from '../errors.js';

export { pkcs11js };

/** A Cryptoki function returned something other than CKR_OK. */
export class Pkcs11Failure extends Error {
  constructor(
    readonly fn: string,
    readonly code: number,
    readonly ckr: string,
  ) {
    super(`PKCS#11 ${fn} failed: ${ckr}`);
    this.name = 'Pkcs11Failure';
  }
}

/**
 * Calls one Cryptoki function; a CKR error becomes a `Pkcs11Failure` naming `fn`. pkcs11js only
 * ever puts the CKR name and number in its messages, never arguments, so no PIN can leak here.
 */
export function p11<T>(fn: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (error instanceof pkcs11js.Pkcs11Error) throw new Pkcs11Failure(fn, error.code, error.message);
    // pkcs11js's own overrides (C_CreateObject, C_CopyObject, C_SetAttributeValue) call the native
    // method directly and throw a plain Error reading "CKR_NAME:code".
    const raw = error instanceof Error ? /^(CKR_\w+):(\d+)$/.exec(error.message) : null;
    if (raw) throw new Pkcs11Failure(fn, Number(raw[2]), raw[1]!);
    throw error;
  }
}

/** True when `error` is a Cryptoki failure with one of `codes`. */
export function isCkr(error: unknown, ...codes: number[]): error is Pkcs11Failure {
  return error instanceof Pkcs11Failure && codes.includes(error.code);
}

/** What leaves the provider: codex's error texts, never a local error class. */
export function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof ProtocolError) return error;
  if (error instanceof Pkcs11Failure) return platformError(error.message);
  return platformError(`PKCS#11 ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * One loaded library per module path and thread, kept for the thread's lifetime. pkcs11js
 * dlcloses its handle when the JS object is collected; letting that happen to the last handle in
 * the process would unload the library without C_Finalize under any session still in use, so
 * the handle is never dropped (nor closed by a provider).
 */
const loaded = new Map<string, PKCS11>();

/** dlopen the module; loading is thread-safe, initialising is not (see `initialiseModule`). */
export function loadModule(path: string): PKCS11 {
  const cached = loaded.get(path);
  if (cached) return cached;
  if (!existsSync(path)) throw platformError(`PKCS#11 module not found: ${path}`);
  const library = new pkcs11js.PKCS11();
  try {
    library.load(path);
  } catch (error) {
    // dlerror() text: names the file and what the loader disliked, nothing secret.
    throw platformError(
      `PKCS#11 module ${path} could not be loaded: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  loaded.set(path, library);
  return library;
}

/**
 * C_Initialize with the OS's own locking, so the library serialises calls made from several
 * threads. Initialisation is per process while workers are threads of one process: whichever
 * thread comes first initialises it for everybody, the others get CKR_CRYPTOKI_ALREADY_INITIALIZED,
 * which is the state they wanted. (If some other code in the process initialised the library
 * without CKF_OS_LOCKING_OK, this cannot be undone from here.)
 *
 * SoftHSM2's C_Initialize is not itself thread-safe (an unguarded singleton and flag), so the
 * caller runs this under the provider's initialisation lock.
 */
export function initialiseModule(library: PKCS11): void {
  try {
    p11('C_Initialize', () => library.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }));
  } catch (error) {
    if (!isCkr(error, pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw error;
  }
}
