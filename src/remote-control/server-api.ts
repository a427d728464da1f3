/**
 * Enrolling this server with the remote-control backend and refreshing its server token (spec
 * B.2): `POST …/server/enroll` and `POST …/server/refresh`, both with the ChatGPT bearer, both
 * answering `{server_id, environment_id, remote_control_token, expires_at}`. Failures are
 * RemoteControlCallErrors worded as codex words them (they reach clients as JSON-RPC errors);
 * a body quoted in one is redacted (body-preview.ts), and no text ever holds a header.
 */
import { arch, platform } from 'node:process';
import { CODEX_COMPAT_VERSION } from '../broker/server-info.js';
import { rustDebugString } from '../protocol/serde-errors.js';
import { retryAfterMs } from '../upstream/backoff.js';
import { disconnected, isUpstreamFailure } from '../upstream/failure.js';
import { openRequest, readText, type UpstreamAgents } from '../upstream/http-request.js';
import { previewBody, requestIdSuffix, statusText } from './body-preview.js';

/** Enroll and refresh deadline, connect to last body byte (codex: 30 s). */
export const REMOTE_CONTROL_HTTP_TIMEOUT_MS = 30_000;

/** Larger answers are cut here, and then fail to decode. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

export interface ServerIdentity {
  /** The trimmed hostname. */
  name: string;
  installationId: string;
}

/** The ChatGPT login the calls are made for. */
export interface EnrollCredentials {
  bearer: string;
  accountId: string;
}

export interface ServerToken {
  serverId: string;
  environmentId: string;
  /** The remote-control token: the server WebSocket's bearer. A secret. */
  token: string;
  expiresAtMs: number;
}

interface CallOptions {
  url: URL;
  credentials: EnrollCredentials;
  /** The initialize `clientInfo.name` as codex turns it into an originator. */
  originator: string;
  userAgent: string;
  /** Default REMOTE_CONTROL_HTTP_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Pooled connections, and the TLS trust (`CODEX_CA_CERTIFICATE`) they were made with. */
  agents: UpstreamAgents;
  signal?: AbortSignal;
}

export interface EnrollOptions extends CallOptions {
  identity: ServerIdentity;
}

export interface RefreshOptions extends CallOptions {
  installationId: string;
  /** The enrollment being refreshed: the answer must carry the same ids. */
  serverId: string;
  environmentId: string;
}

export type RemoteControlCallErrorKind =
  /** The backend answered with a non-2xx status. */
  | 'status'
  /**
   * A 2xx answer that is not a usable server token: bad JSON, a missing field, a bad
   * `expires_at`, or a refresh answered for another enrollment.
   */
  | 'decode'
  | 'network'
  | 'timeout'
  | 'aborted';

export class RemoteControlCallError extends Error {
  override name = 'RemoteControlCallError';
  constructor(
    message: string,
    readonly kind: RemoteControlCallErrorKind,
    /** The HTTP status, when an answer came. */
    readonly status?: number,
    /** The backend's `Retry-After` (seconds or HTTP date), on a status failure. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** A refresh 404 means the enrollment is gone: enroll again. */
  get notFound(): boolean {
    return this.kind === 'status' && this.status === 404;
  }

  /** 401/403: the ChatGPT login needs recovering before another try. */
  get unauthorized(): boolean {
    return this.kind === 'status' && (this.status === 401 || this.status === 403);
  }

  /** What spec B.3 calls transient: no answer, a timeout, 429 or 5xx. */
  get transient(): boolean {
    if (this.kind === 'network' || this.kind === 'timeout') return true;
    return this.kind === 'status' && this.status !== undefined && (this.status === 429 || this.status >= 500);
  }
}

export async function enrollServer(options: EnrollOptions): Promise<ServerToken> {
  const { identity } = options;
  const body = {
    name: identity.name,
    os: rustOs(),
    arch: rustArch(),
    app_server_version: CODEX_COMPAT_VERSION,
    installation_id: identity.installationId,
  };
  const answer = await post(options, identity.installationId, body, 'enroll', 'server enrollment');
  return serverToken(answer, options.url);
}

export async function refreshServerToken(options: RefreshOptions): Promise<ServerToken> {
  const body = { server_id: options.serverId, installation_id: options.installationId };
  const answer = await post(options, options.installationId, body, 'refresh', 'server refresh');
  if (answer.server_id !== options.serverId || answer.environment_id !== options.environmentId) {
    throw new RemoteControlCallError(
      'remote control server refresh returned mismatched enrollment: ' +
        `expected server_id=${options.serverId}, environment_id=${options.environmentId}; ` +
        `got server_id=${answer.server_id}, environment_id=${answer.environment_id}`,
      'decode',
      200,
    );
  }
  return serverToken(answer, options.url);
}

const TOKEN_RESPONSE = {
  name: 'EnrollRemoteServerResponse',
  fields: {
    server_id: 'string',
    environment_id: 'string',
    remote_control_token: 'string',
    expires_at: 'string',
  },
} as const;

interface TokenResponse {
  server_id: string;
  environment_id: string;
  remote_control_token: string;
  expires_at: string;
}

/**
 * One call, as far as a decoded answer. `action` and `what` fill codex's texts:
 * `failed to <action> remote control server at …`, `remote control <what> failed at …`.
 */
async function post(
  options: CallOptions,
  installationId: string,
  body: object,
  action: string,
  what: string,
): Promise<TokenResponse> {
  const { url, credentials } = options;
  const timeoutMs = options.timeoutMs ?? REMOTE_CONTROL_HTTP_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const headers = {
    originator: options.originator,
    'user-agent': options.userAgent,
    authorization: `Bearer ${credentials.bearer}`,
    'chatgpt-account-id': credentials.accountId,
    'x-codex-installation-id': installationId,
    'content-type': 'application/json',
  };
  const request = { method: 'POST' as const, headers, body: JSON.stringify(body), timeoutMs };
  const response = await openRequest(
    url,
    options.signal ? { ...request, signal: options.signal } : request,
    options.agents,
  ).catch((e: unknown) => {
    throw callFailure(e, `failed to ${action} remote control server at \`${url.href}\``);
  });
  const text = await readText(response.body, MAX_RESPONSE_BYTES, Math.max(1, deadline - Date.now())).catch(
    (e: unknown) => {
      throw callFailure(e, `failed to read remote control ${what} response from \`${url.href}\``);
    },
  );
  const { status } = response;
  const quoted = () =>
    `HTTP ${statusText(status)}, ${requestIdSuffix(response.headers)}, body: ${previewBody(text, [credentials.bearer])}`;
  if (status < 200 || status > 299) {
    throw new RemoteControlCallError(
      `remote control ${what} failed at \`${url.href}\`: ${quoted()}`,
      'status',
      status,
      retryAfterMs(response.headers),
    );
  }
  const decoded = decodeStruct(Buffer.from(text, 'utf8'), TOKEN_RESPONSE);
  if (!decoded.ok) {
    throw new RemoteControlCallError(
      `failed to parse remote control ${what} response from \`${url.href}\`: ${quoted()}, decode error: ${decoded.error}`,
      'decode',
      status,
    );
  }
  return decoded.value as unknown as TokenResponse;
}

function serverToken(answer: TokenResponse, url: URL): ServerToken {
  const expires = parseRfc3339(answer.expires_at);
  if (typeof expires === 'string') {
    const shown = answer.expires_at.length > 64 ? `${answer.expires_at.slice(0, 64)}...` : answer.expires_at;
    throw new RemoteControlCallError(
      `failed to parse remote control server token expiry from \`${url.href}\`: ` +
        `expires_at ${JSON.stringify(shown)}: ${expires}`,
      'decode',
      200,
    );
  }
  return {
    serverId: answer.server_id,
    environmentId: answer.environment_id,
    token: answer.remote_control_token,
    expiresAtMs: expires,
  };
}

/** A failure before an answer was read, as a call error; the text is `<context>: <why>`. */
function callFailure(e: unknown, context: string): RemoteControlCallError {
  if (isUpstreamFailure(e, 'timeout'))
    return new RemoteControlCallError(`${context}: request timed out`, 'timeout');
  if (isUpstreamFailure(e, 'aborted'))
    return new RemoteControlCallError(`${context}: request aborted`, 'aborted');
  // The request layer words network failures for streams; only the cause belongs here.
  const message = e instanceof Error ? e.message : String(e);
  const prefix = disconnected('');
  const why = message.startsWith(prefix) ? message.slice(prefix.length) : message;
  return new RemoteControlCallError(`${context}: ${why}`, 'network');
}

/**
 * RFC 3339 (`2026-11-20T22:45:03Z`, `…T22:45:03.25+02:00`) to epoch milliseconds, or the reason
 * it is not one, worded as Rust's `time` crate (which codex parses with) words it.
 */
export function parseRfc3339(text: string): number | string {
  let at = 0;
  const digits = (n: number, name: string, min: number, max: number): number | string => {
    const part = text.slice(at, at + n);
    if (!new RegExp(`^\\d{${n}}$`).test(part) || Number(part) < min || Number(part) > max) {
      return `the '${name}' component could not be parsed`;
    }
    at += n;
    return Number(part);
  };
  const literal = (chars: string): string | undefined => {
    if (at >= text.length || !chars.includes(text[at]!)) return 'a character literal was not valid';
    at++;
    return undefined;
  };
  const fields: number[] = [];
  const steps: (() => number | string | undefined)[] = [
    () => digits(4, 'year', 0, 9999),
    () => literal('-'),
    () => digits(2, 'month', 1, 12),
    () => literal('-'),
    () => digits(2, 'day', 1, 31),
    () => literal('Tt'),
    () => digits(2, 'hour', 0, 23),
    () => literal(':'),
    () => digits(2, 'minute', 0, 59),
    () => literal(':'),
    () => digits(2, 'second', 0, 60),
  ];
  for (const step of steps) {
    const result = step();
    if (typeof result === 'string') return result;
    if (typeof result === 'number') fields.push(result);
  }
  const [year, month, day, hour, minute, second] = fields as [number, number, number, number, number, number];
  let millis = 0;
  if (text[at] === '.') {
    const fraction = /^\d+/.exec(text.slice(at + 1))?.[0];
    if (!fraction) return "the 'subsecond' component could not be parsed";
    millis = Number(fraction.slice(0, 3).padEnd(3, '0'));
    at += 1 + fraction.length;
  }
  let offsetMinutes = 0;
  if (text[at] === 'Z' || text[at] === 'z') {
    at++;
  } else {
    const sign = text[at] === '+' ? 1 : text[at] === '-' ? -1 : 0;
    if (sign === 0) return "the 'offset hour' component could not be parsed";
    at++;
    const hours = digits(2, 'offset hour', 0, 23);
    if (typeof hours === 'string') return hours;
    const colon = literal(':');
    if (colon) return colon;
    const minutes = digits(2, 'offset minute', 0, 59);
    if (typeof minutes === 'string') return minutes;
    offsetMinutes = sign * (hours * 60 + minutes);
  }
  if (at !== text.length) return 'unexpected trailing characters; the end of input was expected';
  const monthDays = new Date(Date.UTC(2000, month, 0)).getUTCDate(); // 2000: any leap year
  const lastDay = month === 2 && !isLeapYear(year) ? 28 : monthDays;
  if (day > lastDay) return `day must be in the range 1..=${lastDay} given values of other parameters`;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC: it reads years 0-99 as 1900-1999
  // A leap second (:60) is the last instant of its minute, as the time crate takes it.
  date.setUTCHours(hour, minute, Math.min(second, 59), second === 60 ? 999 : millis);
  return date.getTime() - offsetMinutes * 60_000;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** Rust's `std::env::consts::OS` for the platforms Gatehouse runs on. */
function rustOs(): string {
  return platform === 'darwin' ? 'macos' : platform === 'win32' ? 'windows' : platform;
}

/** Rust's `std::env::consts::ARCH`: x86_64, aarch64. */
function rustArch(): string {
  return arch === 'x64' ? 'x86_64' : arch === 'arm64' ? 'aarch64' : arch === 'ia32' ? 'x86' : arch;
}

// ---------------------------------------------------------------------------------------------
// Decoding as serde_json does. codex decodes answers with `serde_json::from_slice` into derived
// structs, and its decode errors reach clients verbatim (spec B.1: ``missing field `expires_at`
// at line 1 column 109``), positions included. JSON.parse reports neither serde's wording nor
// its positions, so this reader walks the bytes the way serde_json's reader does: the same
// checks in the same order, and each error at the byte position serde_json reports it.

/** What a struct member may hold: `String`, `Option<String>`, `bool`. */
export type SerdeFieldKind = 'string' | 'optionalString' | 'bool';

/** A `#[derive(Deserialize)]` struct: its Rust name (for texts) and its fields in declaration order. */
export interface SerdeStruct {
  name: string;
  fields: Readonly<Record<string, SerdeFieldKind>>;
}

export type SerdeDecoded =
  { ok: true; value: Record<string, string | boolean | null> } | { ok: false; error: string };

/**
 * The struct in `bytes`, or serde_json's error text for it (`<what> at line L column C`).
 * Unknown members are skipped (after a syntax check), a missing `Option` member is null.
 * A top-level array is refused as `invalid type: sequence` (serde would try it as a tuple).
 */
export function decodeStruct(bytes: Uint8Array, shape: SerdeStruct): SerdeDecoded {
  const reader = new SerdeReader(bytes);
  try {
    return { ok: true, value: reader.struct(shape) };
  } catch (e) {
    if (e instanceof SerdeError) return { ok: false, error: e.message };
    throw e;
  }
}

class SerdeError extends Error {}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

class SerdeReader {
  private index = 0;

  constructor(private readonly bytes: Uint8Array) {}

  struct(shape: SerdeStruct): Record<string, string | boolean | null> {
    const peek = this.skipWhitespace();
    if (peek === undefined) throw this.peekError('EOF while parsing a value');
    if (peek !== '{') throw this.invalidType(`struct ${shape.name}`);
    this.index++;
    const values = new Map<string, string | boolean | null>();
    for (let first = true; ; first = false) {
      let next = this.skipWhitespace();
      if (next === undefined) throw this.peekError('EOF while parsing an object');
      if (next === '}') break;
      if (!first) {
        if (next !== ',') throw this.peekError('expected `,` or `}`');
        this.index++;
        next = this.skipWhitespace();
        if (next === '}') throw this.peekError('trailing comma');
        if (next === undefined) throw this.peekError('EOF while parsing a value');
      }
      if (next !== '"') throw this.peekError('key must be a string');
      this.index++;
      const key = this.string();
      const kind = Object.hasOwn(shape.fields, key) ? shape.fields[key] : undefined;
      if (kind !== undefined && values.has(key)) {
        this.skipWhitespace(); // serde looks for the closing brace before placing the error
        throw this.error(`duplicate field \`${key}\``);
      }
      const colon = this.skipWhitespace();
      if (colon === undefined) throw this.peekError('EOF while parsing an object');
      if (colon !== ':') throw this.peekError('expected `:`');
      this.index++;
      if (kind === undefined) this.ignoreValue();
      else values.set(key, this.field(kind));
    }
    // Missing members are noticed at the closing brace, and reported just past it.
    this.index++;
    for (const [name, kind] of Object.entries(shape.fields)) {
      if (values.has(name)) continue;
      if (kind !== 'optionalString') throw this.error(`missing field \`${name}\``);
      values.set(name, null);
    }
    if (this.skipWhitespace() !== undefined) throw this.peekError('trailing characters');
    return Object.fromEntries(values);
  }

  private field(kind: SerdeFieldKind): string | boolean | null {
    const peek = this.skipWhitespace();
    if (kind === 'optionalString' && peek === 'n') {
      this.index++;
      this.ident('ull');
      return null;
    }
    if (peek === undefined) throw this.peekError('EOF while parsing a value');
    if (kind === 'bool') {
      if (peek === 't' || peek === 'f') {
        this.index++;
        this.ident(peek === 't' ? 'rue' : 'alse');
        return peek === 't';
      }
      throw this.invalidType('a boolean');
    }
    if (peek !== '"') throw this.invalidType('a string');
    this.index++;
    return this.string();
  }

  /** serde_json's `peek_invalid_type`: reads the offending value, then describes it. */
  private invalidType(expected: string): SerdeError {
    const peek = this.peek();
    let found: string;
    if (peek === 'n' || peek === 't' || peek === 'f') {
      this.index++;
      this.ident(peek === 'n' ? 'ull' : peek === 't' ? 'rue' : 'alse');
      found = peek === 'n' ? 'null' : `boolean \`${peek === 't'}\``;
    } else if (peek === '-' || (peek !== undefined && peek >= '0' && peek <= '9')) {
      found = this.describeNumber();
    } else if (peek === '"') {
      this.index++;
      found = `string ${rustDebugString(this.string())}`;
    } else if (peek === '[' || peek === '{') {
      found = peek === '[' ? 'sequence' : 'map'; // not consumed: the position is just before it
    } else {
      return this.peekError('expected value');
    }
    return this.error(`invalid type: ${found}, expected ${expected}`);
  }

  /** A number as serde's `Unexpected` shows it: `integer \`5\``, `floating point \`1.5\``. */
  private describeNumber(): string {
    const start = this.index;
    this.ignoreNumber();
    const lexeme = Buffer.from(this.bytes.subarray(start, this.index)).toString('latin1');
    if (/^-?\d+$/.test(lexeme)) {
      const n = BigInt(lexeme);
      // u64 for non-negative, i64 for negative; -0 and anything wider are floats in serde_json.
      if (n >= 0n && !lexeme.startsWith('-') && n <= 0xffff_ffff_ffff_ffffn) return `integer \`${n}\``;
      if (n < 0n && n >= -(2n ** 63n)) return `integer \`${n}\``;
    }
    const value = Number(lexeme);
    if (!Number.isFinite(value)) throw this.error('number out of range');
    return `floating point \`${ryuFormat(value)}\``;
  }

  private ignoreValue(): void {
    const peek = this.skipWhitespace();
    if (peek === undefined) throw this.peekError('EOF while parsing a value');
    if (peek === 'n' || peek === 't' || peek === 'f') {
      this.index++;
      this.ident(peek === 'n' ? 'ull' : peek === 't' ? 'rue' : 'alse');
    } else if (peek === '-' || (peek >= '0' && peek <= '9')) {
      this.ignoreNumber();
    } else if (peek === '"') {
      this.index++;
      this.string();
    } else if (peek === '[') {
      this.index++;
      this.ignoreContainer(']', 'EOF while parsing a list', 'expected `,` or `]`', () => this.ignoreValue());
    } else if (peek === '{') {
      this.index++;
      this.ignoreContainer('}', 'EOF while parsing an object', 'expected `,` or `}`', () =>
        this.ignoreMember(),
      );
    } else {
      throw this.peekError('expected value');
    }
  }

  private ignoreContainer(close: string, eof: string, expectedSeparator: string, item: () => void): void {
    const first = this.skipWhitespace();
    if (first === undefined) throw this.peekError(eof);
    if (first === close) {
      this.index++;
      return;
    }
    for (;;) {
      item();
      const next = this.skipWhitespace();
      if (next === undefined) throw this.peekError(eof);
      if (next !== ',' && next !== close) throw this.peekError(expectedSeparator);
      this.index++;
      if (next === close) return;
    }
  }

  private ignoreMember(): void {
    const peek = this.skipWhitespace();
    if (peek === undefined) throw this.peekError('EOF while parsing an object');
    if (peek !== '"') throw this.peekError('key must be a string');
    this.index++;
    this.string();
    const colon = this.skipWhitespace();
    if (colon === undefined) throw this.peekError('EOF while parsing an object');
    if (colon !== ':') throw this.peekError('expected `:`');
    this.index++;
    this.ignoreValue();
  }

  /** serde_json's number grammar: no leading zeros, digits after `.` and after the exponent. */
  private ignoreNumber(): void {
    if (this.peek() === '-') this.index++;
    const lead = this.next();
    if (lead === '0') {
      if (this.isDigit(this.peek())) throw this.peekError('invalid number');
    } else if (this.isDigit(lead)) {
      while (this.isDigit(this.peek())) this.index++;
    } else {
      throw this.error('invalid number');
    }
    if (this.peek() === '.') {
      this.index++;
      if (!this.isDigit(this.peek())) throw this.peekError('invalid number');
      while (this.isDigit(this.peek())) this.index++;
    }
    if (this.peek() === 'e' || this.peek() === 'E') {
      this.index++;
      if (this.peek() === '+' || this.peek() === '-') this.index++;
      if (!this.isDigit(this.next())) throw this.error('invalid number');
      while (this.isDigit(this.peek())) this.index++;
    }
  }

  /** The rest of a literal (`ull`, `rue`, `alse`); a wrong byte is reported just past itself. */
  private ident(rest: string): void {
    for (const expected of rest) {
      const actual = this.next();
      if (actual === undefined) throw this.error('EOF while parsing a value');
      if (actual !== expected) throw this.error('expected ident');
    }
  }

  /** A string's contents after its opening quote, unescaped; ends past the closing quote. */
  private string(): string {
    let out = '';
    let runStart = this.index;
    const flush = () => {
      out += Buffer.from(this.bytes.subarray(runStart, this.index)).toString('utf8');
    };
    for (;;) {
      if (this.index >= this.bytes.length) throw this.error('EOF while parsing a string');
      const byte = this.bytes[this.index]!;
      if (byte === QUOTE) {
        flush();
        this.index++;
        return out;
      }
      if (byte < 0x20) {
        this.index++;
        throw this.error('control character (\\u0000-\\u001F) found while parsing a string');
      }
      if (byte !== BACKSLASH) {
        this.index++;
        continue;
      }
      flush();
      this.index++;
      out += this.escape();
      runStart = this.index;
    }
  }

  private escape(): string {
    const ch = this.next();
    if (ch === undefined) throw this.error('EOF while parsing a string');
    const simple: Record<string, string> = {
      '"': '"',
      '\\': '\\',
      '/': '/',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
    };
    if (ch !== 'u') {
      const unescaped = simple[ch];
      if (unescaped === undefined) throw this.error('invalid escape');
      return unescaped;
    }
    const lead = this.hexEscape();
    if (lead >= 0xdc00 && lead <= 0xdfff) throw this.error('lone leading surrogate in hex escape');
    if (lead < 0xd800 || lead > 0xdbff) return String.fromCharCode(lead);
    for (const expected of ['\\', 'u']) {
      if (this.index >= this.bytes.length) throw this.error('EOF while parsing a string');
      const actual = this.next();
      if (actual !== expected) throw this.error('unexpected end of hex escape');
    }
    const trail = this.hexEscape();
    if (trail < 0xdc00 || trail > 0xdfff) throw this.error('lone leading surrogate in hex escape');
    return String.fromCharCode(lead, trail);
  }

  private hexEscape(): number {
    if (this.index + 4 > this.bytes.length) {
      this.index = this.bytes.length;
      throw this.error('EOF while parsing a string');
    }
    const hex = Buffer.from(this.bytes.subarray(this.index, this.index + 4)).toString('latin1');
    this.index += 4;
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.error('invalid escape');
    return parseInt(hex, 16);
  }

  /** Skips JSON whitespace; the next character, not consumed, or undefined at the end. */
  private skipWhitespace(): string | undefined {
    while (this.index < this.bytes.length) {
      const byte = this.bytes[this.index]!;
      if (byte !== 0x20 && byte !== 0x0a && byte !== 0x09 && byte !== 0x0d) return String.fromCharCode(byte);
      this.index++;
    }
    return undefined;
  }

  private peek(): string | undefined {
    const byte = this.bytes[this.index];
    return byte === undefined ? undefined : String.fromCharCode(byte);
  }

  private next(): string | undefined {
    const ch = this.peek();
    if (ch !== undefined) this.index++;
    return ch;
  }

  private isDigit(ch: string | undefined): boolean {
    return ch !== undefined && ch >= '0' && ch <= '9';
  }

  /** An error at the current position: just past the last byte read. */
  private error(what: string): SerdeError {
    return this.errorAt(what, this.index);
  }

  /** An error at the byte about to be read. */
  private peekError(what: string): SerdeError {
    return this.errorAt(what, Math.min(this.bytes.length, this.index + 1));
  }

  /** serde_json's position: 1-based line; column = bytes since the line's start (0 before any). */
  private errorAt(what: string, index: number): SerdeError {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < index; i++) {
      if (this.bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    return new SerdeError(`${what} at line ${line} column ${index - lineStart}`);
  }
}

/** An f64 as the `ryu` crate prints it (serde_json's float texts): `1.5`, `100.0`, `1e21`, `1.5e-7`. */
function ryuFormat(value: number): string {
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const [mantissa, exponent] = Math.abs(value).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const point = Number(exponent) + 1; // where the decimal point falls, counted from the first digit
  const trailing = point - digits.length;
  let text: string;
  if (trailing >= 0 && point <= 16) text = `${digits}${'0'.repeat(trailing)}.0`;
  else if (point > 0 && point <= 16) text = `${digits.slice(0, point)}.${digits.slice(point)}`;
  else if (point > -5 && point <= 0) text = `0.${'0'.repeat(-point)}${digits}`;
  else if (digits.length === 1) text = `${digits}e${point - 1}`;
  else text = `${digits[0]}.${digits.slice(1)}e${point - 1}`;
  return value < 0 ? `-${text}` : text;
}
