/**
 * A reader of JSON that decodes a flat struct the way codex's `serde_json::from_slice` into a
 * `#[derive(Deserialize)]` struct does, failing with serde_json's own error texts. codex decodes
 * the remote-control backend's answers so, and its error texts, which reach clients verbatim,
 * quote those decode errors with their line and column (spec B.1: ``missing field `expires_at`
 * at line 1 column 109``). JSON.parse reports neither serde's wording nor its positions, so this
 * reader walks the bytes the way serde_json's reader does: the same checks in the same order,
 * and each error at the byte position serde_json reports it.
 */
import { rustDebugString } from '../protocol/serde-errors.js';

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
