/**
 * Finding Gatehouse's token by label, or creating it on first use (zero configuration): a slot
 * holding an uninitialised token gets the label, a random SO PIN and a random user PIN.
 *
 * Order matters for crash safety. The PINs reach the disk before C_InitToken, so every
 * initialised token has its PINs in the file: a crash after C_InitToken but before C_InitPIN
 * leaves a token whose SO PIN is known, and the next start finishes it (`finishUserPin`); a crash
 * before C_InitToken leaves only a PIN file, overwritten on the next attempt.
 *
 * SoftHSM2 reads its token folder at C_Initialize and does not notice tokens other processes
 * create later. The start-up lock covers C_Initialize too, so a second process starting at the
 * same time initialises after the first has finished and sees its token. A process that had
 * already initialised the library for some other reason would not, and would make a second token
 * with the same label; nothing in Gatehouse does that.
 */
import type { Handle, PKCS11, TokenInfo } from 'pkcs11js';
import type { Pkcs11ProviderOptions } from '../provider.js';
import { platformError } from '../errors.js';
import { p11, pkcs11js } from './cryptoki.js';
import { randomPin, readPins, writePinsAtomically, type TokenPins } from './pin-file.js';

const LABEL_BYTES = 32;
const RW_SESSION = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;

export interface OpenedToken {
  slot: Handle;
  userPin: string;
}

/**
 * CK_TOKEN_INFO.label is 32 bytes padded with blanks, and C_InitToken reads exactly 32 bytes
 * from the pointer pkcs11js passes straight through, so the label is padded here.
 */
export function labelField(label: string): string {
  const bytes = Buffer.byteLength(label, 'utf8');
  if (bytes === 0 || bytes > LABEL_BYTES || label !== label.trimEnd()) {
    throw platformError(
      `PKCS#11 token label must be 1-${LABEL_BYTES} bytes of UTF-8 without trailing blanks`,
    );
  }
  return label + ' '.repeat(LABEL_BYTES - bytes);
}

/**
 * The slot of the token labelled `label` and the user PIN to log in with, initialising the token
 * when no slot has it. Runs under the start-up lock: it may write the PIN file and C_InitToken.
 */
export function openToken(library: PKCS11, options: Pkcs11ProviderOptions): OpenedToken {
  const field = labelField(options.tokenLabel);
  const found = findToken(library, options.tokenLabel);
  if (!found) return initialiseToken(library, options, field);
  const pins = readPins(options.pinFile);
  if ((found.info.flags & pkcs11js.CKF_USER_PIN_INITIALIZED) === 0) finishUserPin(library, found.slot, pins);
  return { slot: found.slot, userPin: pins.userPin };
}

function findToken(library: PKCS11, label: string): { slot: Handle; info: TokenInfo } | undefined {
  for (const slot of p11('C_GetSlotList', () => library.C_GetSlotList(true))) {
    const info = p11('C_GetTokenInfo', () => library.C_GetTokenInfo(slot));
    if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0 && info.label.trimEnd() === label) {
      return { slot, info };
    }
  }
  return undefined;
}

function initialiseToken(library: PKCS11, options: Pkcs11ProviderOptions, field: string): OpenedToken {
  const free = p11('C_GetSlotList', () => library.C_GetSlotList(true))
    .map((slot) => ({ slot, info: p11('C_GetTokenInfo', () => library.C_GetTokenInfo(slot)) }))
    .find(({ info }) => (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0);
  if (!free) {
    throw platformError(
      `PKCS#11 token ${options.tokenLabel} not found and no slot has an uninitialised token`,
    );
  }
  const pins: TokenPins = {
    tokenLabel: options.tokenLabel,
    soPin: randomPin(free.info.minPinLen, free.info.maxPinLen),
    userPin: randomPin(free.info.minPinLen, free.info.maxPinLen),
  };
  writePinsAtomically(options.pinFile, pins);
  p11('C_InitToken', () => library.C_InitToken(free.slot, pins.soPin, field));
  // SoftHSM2 lists the token under a new slot id from the next C_GetSlotList on, but the old id
  // stays valid in this process, so the session below can use it.
  finishUserPin(library, free.slot, pins);
  return { slot: free.slot, userPin: pins.userPin };
}

/** Logs in as SO and sets the user PIN: the second half of initialising a token. */
function finishUserPin(library: PKCS11, slot: Handle, pins: TokenPins): void {
  const session = p11('C_OpenSession', () => library.C_OpenSession(slot, RW_SESSION));
  try {
    p11('C_Login', () => library.C_Login(session, pkcs11js.CKU_SO, pins.soPin));
    try {
      p11('C_InitPIN', () => library.C_InitPIN(session, pins.userPin));
    } finally {
      logoutQuietly(library, session);
    }
  } finally {
    p11('C_CloseSession', () => library.C_CloseSession(session));
  }
}

function logoutQuietly(library: PKCS11, session: Handle): void {
  try {
    library.C_Logout(session);
  } catch {
    // Closing the session right after ends the SO login anyway if it was the last session.
  }
}
