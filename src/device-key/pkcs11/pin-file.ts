/**
 * The file holding the token's PINs. Gatehouse initialises its own token, so nobody ever types
 * these; the file (0600, in 0700 folders) is what lets a restarted process log in again.
 * Errors name the file and never its content.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { platformError } from '../errors.js';

export interface TokenPins {
  tokenLabel: string;
  soPin: string;
  userPin: string;
}

/** A random PIN within the token's length limits; base64url keeps it printable ASCII. */
export function randomPin(minLength: number, maxLength: number): string {
  const length = Math.max(minLength, Math.min(32, maxLength));
  return randomBytes(length).toString('base64url').slice(0, length);
}

export function readPins(path: string): TokenPins {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw platformError(`PKCS#11 PIN file ${path} cannot be read (${code})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse quotes the offending text in its message, and that text may be a PIN.
    throw platformError(`PKCS#11 PIN file ${path} is not valid JSON`);
  }
  const pins = parsed as Partial<Record<keyof TokenPins, unknown>> | null;
  if (
    typeof pins !== 'object' ||
    pins === null ||
    typeof pins.soPin !== 'string' ||
    typeof pins.userPin !== 'string'
  ) {
    throw platformError(`PKCS#11 PIN file ${path} does not hold soPin and userPin`);
  }
  const tokenLabel = typeof pins.tokenLabel === 'string' ? pins.tokenLabel : '';
  return { tokenLabel, soPin: pins.soPin, userPin: pins.userPin };
}

/** Creates `dir` and any missing parents with mode 0700; folders that already exist are left alone. */
export function ensurePrivateFolder(dir: string): void {
  const target = resolve(dir);
  let first: string | undefined;
  try {
    first = mkdirSync(target, { recursive: true, mode: 0o700 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'failed';
    throw platformError(`PKCS#11 PIN folder ${target} cannot be created (${code})`);
  }
  if (first === undefined) return;
  // mkdir's mode is filtered by the umask; chmod makes 0700 exact on everything created here.
  let folder = first;
  chmodSync(folder, 0o700);
  for (const part of relative(first, target).split(sep).filter(Boolean)) {
    folder = `${folder}${sep}${part}`;
    chmodSync(folder, 0o700);
  }
}

/** Writes the PINs atomically (absent, old or complete); the token is initialised only after. */
export function writePinsAtomically(path: string, pins: TokenPins): void {
  ensurePrivateFolder(dirname(path));
  try {
    writeFileAtomic(path, `${JSON.stringify(pins, null, 2)}\n`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'failed';
    throw platformError(`PKCS#11 PIN file ${path} cannot be written (${code})`);
  }
}
