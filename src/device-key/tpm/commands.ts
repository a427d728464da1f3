/**
 * TPM 2.0 command marshalling for exactly the commands the `hardware_tpm` provider sends (TPM 2.0
 * Library, Part 2 structures and Part 3 commands). Each builder returns the command bytes and a
 * parser for its response, so marshalling is pure and can be tested without a TPM.
 *
 * Written here rather than bound to tpm2-tss: the TSS is a native library (no maintained Node
 * binding), the tpm2-tools CLIs cost a process per command, and the seven commands involved fit
 * in one file.
 */

/** A TPM answered with a non-success response code, or with bytes that do not parse. */
export class TpmCommandError extends Error {
  constructor(
    /** The command's name without the TPM2_ prefix, e.g. `Sign`. */
    readonly command: string,
    /** The response code, or undefined when the response was malformed. */
    readonly rc: number | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'TpmCommandError';
  }
}

const ST_NO_SESSIONS = 0x8001;
const ST_SESSIONS = 0x8002;
const ST_HASHCHECK = 0x8024;

const CC = {
  CreatePrimary: 0x0000_0131,
  Startup: 0x0000_0144,
  Create: 0x0000_0153,
  Load: 0x0000_0157,
  Sign: 0x0000_015d,
  FlushContext: 0x0000_0165,
  GetCapability: 0x0000_017a,
} as const;

export const TPM_RH_OWNER = 0x4000_0001;
export const TPM_RH_NULL = 0x4000_0007;
const TPM_RS_PW = 0x4000_0009;
const TPM_SU_CLEAR = 0x0000;
const TPM_CAP_HANDLES = 0x0000_0001;
/** First handle of the transient range (TPM_HT_TRANSIENT << 24). */
export const TRANSIENT_FIRST = 0x8000_0000;

export const ALG = {
  AES: 0x0006,
  SHA256: 0x000b,
  NULL: 0x0010,
  ECDSA: 0x0018,
  ECDAA: 0x001a,
  ECC: 0x0023,
  CFB: 0x0043,
} as const;
export const ECC_NIST_P256 = 0x0003;

/** TPMA_OBJECT bits (Part 2, 8.3). */
export const OBJECT = {
  fixedTPM: 1 << 1,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/**
 * The storage primary: exactly what `tpm2_createprimary -C o -G ecc256` makes (0x30072), so the
 * stored blobs load with plain tpm2-tools too. It is derived from the owner seed, so the same
 * template gives the same key after every restart.
 */
export const PRIMARY_ATTRIBUTES =
  OBJECT.fixedTPM |
  OBJECT.fixedParent |
  OBJECT.sensitiveDataOrigin |
  OBJECT.userWithAuth |
  OBJECT.restricted |
  OBJECT.decrypt;

/**
 * A device key: fixedTPM and fixedParent make it impossible to duplicate (export) under any
 * parent; sensitiveDataOrigin means the TPM generated the private part itself (0x40072).
 */
export const SIGNING_KEY_ATTRIBUTES =
  OBJECT.fixedTPM | OBJECT.fixedParent | OBJECT.sensitiveDataOrigin | OBJECT.userWithAuth | OBJECT.sign;

export const RC_SUCCESS = 0x000;
export const RC_INITIALIZE = 0x100;
export const RC_OBJECT_MEMORY = 0x902;

const FORMAT0_NAMES: Record<number, string> = {
  0x100: 'TPM_RC_INITIALIZE',
  0x101: 'TPM_RC_FAILURE',
  0x103: 'TPM_RC_SEQUENCE',
  0x120: 'TPM_RC_DISABLED',
  0x121: 'TPM_RC_EXCLUSIVE',
  0x124: 'TPM_RC_AUTH_TYPE',
  0x125: 'TPM_RC_AUTH_MISSING',
  0x126: 'TPM_RC_POLICY',
  0x127: 'TPM_RC_PCR',
  0x128: 'TPM_RC_PCR_CHANGED',
  0x12d: 'TPM_RC_UPGRADE',
  0x12e: 'TPM_RC_TOO_MANY_CONTEXTS',
  0x12f: 'TPM_RC_AUTH_UNAVAILABLE',
  0x130: 'TPM_RC_REBOOT',
  0x131: 'TPM_RC_UNBALANCED',
  0x142: 'TPM_RC_COMMAND_SIZE',
  0x143: 'TPM_RC_COMMAND_CODE',
  0x144: 'TPM_RC_AUTHSIZE',
  0x145: 'TPM_RC_AUTH_CONTEXT',
  0x150: 'TPM_RC_BAD_CONTEXT',
  0x152: 'TPM_RC_PARENT',
  0x153: 'TPM_RC_NEEDS_TEST',
  0x154: 'TPM_RC_NO_RESULT',
  0x155: 'TPM_RC_SENSITIVE',
  0x901: 'TPM_RC_CONTEXT_GAP',
  0x902: 'TPM_RC_OBJECT_MEMORY',
  0x903: 'TPM_RC_SESSION_MEMORY',
  0x904: 'TPM_RC_MEMORY',
  0x905: 'TPM_RC_SESSION_HANDLES',
  0x906: 'TPM_RC_OBJECT_HANDLES',
  0x907: 'TPM_RC_LOCALITY',
  0x908: 'TPM_RC_YIELDED',
  0x909: 'TPM_RC_CANCELED',
  0x90a: 'TPM_RC_TESTING',
  0x920: 'TPM_RC_NV_RATE',
  0x921: 'TPM_RC_LOCKOUT',
  0x922: 'TPM_RC_RETRY',
  0x923: 'TPM_RC_NV_UNAVAILABLE',
};

const FORMAT1_NAMES: Record<number, string> = {
  0x081: 'TPM_RC_ASYMMETRIC',
  0x082: 'TPM_RC_ATTRIBUTES',
  0x083: 'TPM_RC_HASH',
  0x084: 'TPM_RC_VALUE',
  0x085: 'TPM_RC_HIERARCHY',
  0x087: 'TPM_RC_KEY_SIZE',
  0x088: 'TPM_RC_MGF',
  0x089: 'TPM_RC_MODE',
  0x08a: 'TPM_RC_TYPE',
  0x08b: 'TPM_RC_HANDLE',
  0x08c: 'TPM_RC_KDF',
  0x08d: 'TPM_RC_RANGE',
  0x08e: 'TPM_RC_AUTH_FAIL',
  0x08f: 'TPM_RC_NONCE',
  0x090: 'TPM_RC_PP',
  0x092: 'TPM_RC_SCHEME',
  0x095: 'TPM_RC_SIZE',
  0x096: 'TPM_RC_SYMMETRIC',
  0x097: 'TPM_RC_TAG',
  0x098: 'TPM_RC_SELECTOR',
  0x09a: 'TPM_RC_INSUFFICIENT',
  0x09b: 'TPM_RC_SIGNATURE',
  0x09c: 'TPM_RC_KEY',
  0x09d: 'TPM_RC_POLICY_FAIL',
  0x09f: 'TPM_RC_INTEGRITY',
  0x0a0: 'TPM_RC_TICKET',
  0x0a1: 'TPM_RC_RESERVED_BITS',
  0x0a2: 'TPM_RC_BAD_AUTH',
  0x0a3: 'TPM_RC_EXPIRED',
  0x0a4: 'TPM_RC_POLICY_CC',
  0x0a5: 'TPM_RC_BINDING',
  0x0a6: 'TPM_RC_CURVE',
  0x0a7: 'TPM_RC_ECC_POINT',
};

/**
 * `0x…` plus the code's name where known. Format-one codes (bit 7) carry the number of the
 * handle, session or parameter at fault in bits 8–11, which is worth keeping in a report.
 */
export function describeResponseCode(rc: number): string {
  const hex = `0x${rc.toString(16).padStart(3, '0')}`;
  if (rc & 0x080) {
    const name = FORMAT1_NAMES[rc & 0x0bf];
    if (!name) return hex;
    const n = (rc >> 8) & 0xf;
    if (rc & 0x040) return `${hex} (${name}, parameter ${n})`;
    if (n === 0) return `${hex} (${name})`;
    return n & 0x8 ? `${hex} (${name}, session ${n & 0x7})` : `${hex} (${name}, handle ${n})`;
  }
  const name = FORMAT0_NAMES[rc & 0xfff];
  return name ? `${hex} (${name})` : hex;
}

/** A TPM2B's content limit here: no structure these commands exchange comes close. */
const MAX_TPM2B = 4096;

class Writer {
  private readonly chunks: Buffer[] = [];
  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.chunks.push(b);
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.chunks.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.chunks.push(b);
    return this;
  }
  raw(bytes: Uint8Array): this {
    this.chunks.push(Buffer.from(bytes));
    return this;
  }
  /** A TPM2B: a 16-bit size, then the bytes. */
  sized(bytes: Uint8Array): this {
    return this.u16(bytes.length).raw(bytes);
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

class Reader {
  private offset = 0;
  constructor(
    private readonly buf: Buffer,
    /** Makes the error for bytes that do not parse. */
    readonly fail: (why: string) => TpmCommandError,
  ) {}
  private take(n: number): Buffer {
    if (this.offset + n > this.buf.length) throw this.fail('truncated');
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
  u8(): number {
    return this.take(1).readUInt8();
  }
  u16(): number {
    return this.take(2).readUInt16BE();
  }
  u32(): number {
    return this.take(4).readUInt32BE();
  }
  sized(): Buffer {
    const n = this.u16();
    if (n > MAX_TPM2B) throw this.fail(`a sized field claims ${n} bytes`);
    return this.take(n);
  }
  /** A TPM2B with its size prefix, as tpm2-tools writes such blobs to files. */
  sizedWithPrefix(): Buffer {
    const start = this.offset;
    this.sized();
    return Buffer.from(this.buf.subarray(start, this.offset));
  }
  get remaining(): number {
    return this.buf.length - this.offset;
  }
  end(): void {
    if (this.remaining !== 0) throw this.fail(`${this.remaining} unexpected trailing bytes`);
  }
}

function malformed(command: string, why: string): TpmCommandError {
  return new TpmCommandError(command, undefined, `TPM ${command} returned a malformed response: ${why}`);
}

function responseReader(command: string, bytes: Buffer): Reader {
  return new Reader(bytes, (why) => malformed(command, why));
}

/** For blobs read from files rather than answered by the TPM. */
function blobReader(what: string, bytes: Uint8Array): Reader {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return new Reader(buf, (why) => new TpmCommandError(what, undefined, `malformed ${what}: ${why}`));
}

/** One command's bytes and the parser of its response. */
export interface TpmCommand<T> {
  /** The command's name without the TPM2_ prefix, for error messages. */
  readonly name: string;
  readonly bytes: Buffer;
  /** Checks the header and response code, then unmarshals the parameters; throws TpmCommandError. */
  parse(response: Uint8Array): T;
}

/** The empty password session every authorised handle here uses (TPMS_AUTH_COMMAND). */
function passwordAuth(): Buffer {
  return new Writer().u32(TPM_RS_PW).sized(Buffer.alloc(0)).u8(0).sized(Buffer.alloc(0)).bytes();
}

function command(code: number, handles: number[], withAuth: boolean, parameters: Buffer): Buffer {
  const body = new Writer();
  for (const h of handles) body.u32(h);
  if (withAuth) {
    const auth = passwordAuth();
    body.u32(auth.length).raw(auth);
  }
  body.raw(parameters);
  const inner = body.bytes();
  return new Writer()
    .u16(withAuth ? ST_SESSIONS : ST_NO_SESSIONS)
    .u32(10 + inner.length)
    .u32(code)
    .raw(inner)
    .bytes();
}

/**
 * Validates the response header; returns a reader positioned at the parameters (after the
 * response handles, which are read by the caller first, and the parameter size when sessions
 * are present) and bounded to them, so the session area never leaks into the parameters.
 */
function openResponse(
  name: string,
  response: Uint8Array,
  handleCount: number,
  acceptRc: readonly number[] = [],
): { handles: number[]; params: Reader; rc: number } {
  const buf = Buffer.from(response.buffer, response.byteOffset, response.byteLength);
  if (buf.length < 10) throw malformed(name, `${buf.length}-byte response`);
  const tag = buf.readUInt16BE(0);
  const size = buf.readUInt32BE(2);
  const rc = buf.readUInt32BE(6);
  if (size !== buf.length) throw malformed(name, `size field ${size} for a ${buf.length}-byte response`);
  if (rc !== RC_SUCCESS) {
    if (acceptRc.includes(rc)) return { handles: [], params: responseReader(name, Buffer.alloc(0)), rc };
    throw new TpmCommandError(name, rc, `TPM ${name} failed: TPM_RC ${describeResponseCode(rc)}`);
  }
  if (tag !== ST_SESSIONS && tag !== ST_NO_SESSIONS) throw malformed(name, `tag 0x${tag.toString(16)}`);
  const head = responseReader(name, buf.subarray(10));
  const handles: number[] = [];
  for (let i = 0; i < handleCount; i++) handles.push(head.u32());
  if (tag === ST_NO_SESSIONS)
    return { handles, params: responseReader(name, buf.subarray(10 + 4 * handleCount)), rc };
  const paramSize = head.u32();
  const start = 10 + 4 * handleCount + 4;
  if (start + paramSize > buf.length)
    throw malformed(name, `parameter size ${paramSize} exceeds the response`);
  return { handles, params: responseReader(name, buf.subarray(start, start + paramSize)), rc };
}

/** TPM2_Startup(CLEAR). A TPM already started (TPM_RC_INITIALIZE) is what we wanted. */
export function startup(): TpmCommand<void> {
  const name = 'Startup';
  return {
    name,
    bytes: command(CC.Startup, [], false, new Writer().u16(TPM_SU_CLEAR).bytes()),
    parse(response) {
      openResponse(name, response, 0, [RC_INITIALIZE]);
    },
  };
}

/** TPMT_PUBLIC for an ECC P-256 key, marshalled inside its TPM2B. */
function eccTemplate(
  attributes: number,
  symmetric: 'aes128cfb' | 'null',
  scheme: 'ecdsa-sha256' | 'null',
): Buffer {
  const t = new Writer().u16(ALG.ECC).u16(ALG.SHA256).u32(attributes).sized(Buffer.alloc(0));
  if (symmetric === 'aes128cfb') t.u16(ALG.AES).u16(128).u16(ALG.CFB);
  else t.u16(ALG.NULL);
  if (scheme === 'ecdsa-sha256') t.u16(ALG.ECDSA).u16(ALG.SHA256);
  else t.u16(ALG.NULL);
  t.u16(ECC_NIST_P256).u16(ALG.NULL); // curve, then kdf NULL
  t.sized(Buffer.alloc(0)).sized(Buffer.alloc(0)); // unique: empty x and y
  return new Writer().sized(t.bytes()).bytes();
}

/** The primary's template; exported so tests can show it matches tpm2-tools' byte for byte. */
export const PRIMARY_TEMPLATE = eccTemplate(PRIMARY_ATTRIBUTES, 'aes128cfb', 'null');
export const SIGNING_KEY_TEMPLATE = eccTemplate(SIGNING_KEY_ATTRIBUTES, 'null', 'ecdsa-sha256');

/** Empty inSensitive (no auth value, no data), outsideInfo and creationPCR. */
function creationParameters(template: Buffer): Buffer {
  const emptySensitive = new Writer().sized(Buffer.alloc(0)).sized(Buffer.alloc(0)).bytes();
  return new Writer()
    .sized(emptySensitive)
    .raw(template)
    .sized(Buffer.alloc(0)) // outsideInfo
    .u32(0) // creationPCR: no selections
    .bytes();
}

export interface CreatedPrimary {
  handle: number;
  /** TPM2B_PUBLIC with its size prefix. */
  outPublic: Buffer;
  /** TPM2B_NAME content (nameAlg + digest), 34 bytes for SHA-256. */
  name: Buffer;
}

/**
 * TPM2_CreatePrimary in the owner hierarchy with the storage template. The key derives from the
 * owner seed and the template alone, so every call yields the same key (and name).
 */
export function createPrimary(): TpmCommand<CreatedPrimary> {
  const name = 'CreatePrimary';
  return {
    name,
    bytes: command(CC.CreatePrimary, [TPM_RH_OWNER], true, creationParameters(PRIMARY_TEMPLATE)),
    parse(response) {
      const { handles, params } = openResponse(name, response, 1);
      const outPublic = params.sizedWithPrefix();
      params.sized(); // creationData
      params.sized(); // creationHash
      skipTicket(params);
      const objectName = Buffer.from(params.sized());
      params.end();
      return { handle: handles[0]!, outPublic, name: objectName };
    },
  };
}

/** TPMT_TK_CREATION: tag, hierarchy, digest. */
function skipTicket(r: Reader): void {
  r.u16();
  r.u32();
  r.sized();
}

export interface CreatedKey {
  /** TPM2B_PRIVATE with its size prefix, as `tpm2_create -r` writes it. */
  outPrivate: Buffer;
  /** TPM2B_PUBLIC with its size prefix, as `tpm2_create -u` writes it. */
  outPublic: Buffer;
}

/** TPM2_Create of a P-256 ECDSA/SHA-256 signing key under `parent`. */
export function createSigningKey(parent: number): TpmCommand<CreatedKey> {
  const name = 'Create';
  return {
    name,
    bytes: command(CC.Create, [parent], true, creationParameters(SIGNING_KEY_TEMPLATE)),
    parse(response) {
      const { params } = openResponse(name, response, 0);
      const outPrivate = params.sizedWithPrefix();
      const outPublic = params.sizedWithPrefix();
      params.sized(); // creationData
      params.sized(); // creationHash
      skipTicket(params);
      params.end();
      return { outPrivate, outPublic };
    },
  };
}

/** TPM2_Load of a wrapped key (both blobs with their size prefixes) under `parent`. */
export function load(
  parent: number,
  inPrivate: Uint8Array,
  inPublic: Uint8Array,
): TpmCommand<{ handle: number }> {
  const name = 'Load';
  return {
    name,
    bytes: command(CC.Load, [parent], true, new Writer().raw(inPrivate).raw(inPublic).bytes()),
    parse(response) {
      const { handles, params } = openResponse(name, response, 1);
      params.sized(); // the object's name
      params.end();
      return { handle: handles[0]! };
    },
  };
}

export interface EcdsaSignature {
  /** Big-endian, unsigned; may be shorter than 32 bytes. */
  r: Buffer;
  s: Buffer;
}

/**
 * TPM2_Sign of a digest with ECDSA/SHA-256. The NULL hashcheck ticket is fine because the key is
 * not restricted: only restricted keys insist on proof that the TPM hashed the data itself.
 */
export function sign(key: number, digest: Uint8Array): TpmCommand<EcdsaSignature> {
  const name = 'Sign';
  const params = new Writer()
    .sized(digest)
    .u16(ALG.ECDSA)
    .u16(ALG.SHA256)
    .u16(ST_HASHCHECK)
    .u32(TPM_RH_NULL)
    .sized(Buffer.alloc(0))
    .bytes();
  return {
    name,
    bytes: command(CC.Sign, [key], true, params),
    parse(response) {
      const { params: p } = openResponse(name, response, 0);
      const sigAlg = p.u16();
      if (sigAlg !== ALG.ECDSA)
        throw malformed(name, `signature algorithm 0x${sigAlg.toString(16)}, not ECDSA`);
      const hash = p.u16();
      if (hash !== ALG.SHA256) throw malformed(name, `signature hash 0x${hash.toString(16)}, not SHA-256`);
      const r = Buffer.from(p.sized());
      const s = Buffer.from(p.sized());
      p.end();
      return { r, s };
    },
  };
}

/** TPM2_FlushContext; the handle travels as a parameter, so no authorisation is involved. */
export function flushContext(handle: number): TpmCommand<void> {
  const name = 'FlushContext';
  return {
    name,
    bytes: command(CC.FlushContext, [], false, new Writer().u32(handle).bytes()),
    parse(response) {
      openResponse(name, response, 0).params.end();
    },
  };
}

/** TPM2_GetCapability(TPM_CAP_HANDLES) from `first`; `more` says another call is needed. */
export function getTransientHandles(
  first = TRANSIENT_FIRST,
  count = 64,
): TpmCommand<{ handles: number[]; more: boolean }> {
  const name = 'GetCapability';
  return {
    name,
    bytes: command(
      CC.GetCapability,
      [],
      false,
      new Writer().u32(TPM_CAP_HANDLES).u32(first).u32(count).bytes(),
    ),
    parse(response) {
      const { params } = openResponse(name, response, 0);
      const more = params.u8() !== 0;
      const capability = params.u32();
      if (capability !== TPM_CAP_HANDLES)
        throw malformed(name, `capability ${capability}, not TPM_CAP_HANDLES`);
      const n = params.u32();
      if (n > 254) throw malformed(name, `${n} handles`);
      const handles: number[] = [];
      for (let i = 0; i < n; i++) handles.push(params.u32());
      params.end();
      // The TPM lists from `first` on; only the transient range matters here.
      return { handles: handles.filter((h) => h >>> 24 === TRANSIENT_FIRST >>> 24), more };
    },
  };
}

/** What the provider needs from a TPM2B_PUBLIC. */
export interface EccPublic {
  nameAlg: number;
  attributes: number;
  curve: number;
  /** The signing scheme, and its hash (undefined for the NULL scheme). */
  scheme: number;
  schemeHash: number | undefined;
  x: Buffer;
  y: Buffer;
}

/** Unmarshals a TPM2B_PUBLIC (with its size prefix) of an ECC key; anything else is an error. */
export function parseEccPublic(blob: Uint8Array): EccPublic {
  const what = 'TPM2B_PUBLIC';
  const outer = blobReader(what, blob);
  const r = blobReader(what, outer.sized());
  outer.end();
  const type = r.u16();
  if (type !== ALG.ECC) throw r.fail(`key type 0x${type.toString(16)}, not ECC`);
  const nameAlg = r.u16();
  const attributes = r.u32();
  r.sized(); // authPolicy
  const symmetric = r.u16();
  if (symmetric !== ALG.NULL) {
    r.u16(); // keyBits
    r.u16(); // mode
  }
  const scheme = r.u16();
  let schemeHash: number | undefined;
  if (scheme !== ALG.NULL) {
    schemeHash = r.u16();
    if (scheme === ALG.ECDAA) r.u16(); // count
  }
  const curve = r.u16();
  const kdf = r.u16();
  if (kdf !== ALG.NULL) r.u16();
  const x = Buffer.from(r.sized());
  const y = Buffer.from(r.sized());
  r.end();
  return { nameAlg, attributes, curve, scheme, schemeHash, x, y };
}

/** Checks a TPM2B blob's size prefix (a TPM2B_PRIVATE file), so a truncated file fails before Load. */
export function checkSizedBlob(blob: Uint8Array, what: string): void {
  const r = blobReader(what, blob);
  r.sized();
  r.end();
}
