/**
 * Thread and turn ids as codex makes and reads them: UUIDv7 (time-ordered), and the `uuid`
 * crate's parse errors for an id that is not a UUID (`invalid thread id: <why>`).
 */
import { randomBytes } from 'node:crypto';

/** A UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, the rest random. */
export function uuidv7(now: number = Date.now()): string {
  const bytes = randomBytes(16);
  let ms = now;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Why `value` does not parse as a UUID, worded as the `uuid` crate's Display does (codex parses
 * thread ids with it); undefined when it parses. Accepted forms: hyphenated, simple (32 hex
 * digits), braced and `urn:uuid:`.
 */
export function uuidParseError(value: string): string | undefined {
  let body = value;
  let offset = 0;
  if (body.startsWith('urn:uuid:')) {
    body = body.slice(9);
    offset = 9;
  } else if (body.startsWith('{') && body.endsWith('}') && body.length > 1) {
    body = body.slice(1, -1);
    offset = 1;
  }
  const chars = [...body];
  for (let i = 0; i < chars.length; i++) {
    if (!/^[0-9a-fA-F-]$/.test(chars[i]!)) {
      return `invalid character: expected an optional prefix of \`urn:uuid:\` followed by [0-9a-fA-F-], found \`${chars[i]}\` at ${offset + i + 1}`;
    }
  }
  if (body.includes('-')) {
    const groups = body.split('-');
    if (groups.length !== 5) return `invalid group count: expected 5, found ${groups.length}`;
    const expected = [8, 4, 4, 4, 12];
    for (let g = 0; g < 5; g++) {
      if (groups[g]!.length !== expected[g]) {
        return `invalid group length in group ${g}: expected ${expected[g]}, found ${groups[g]!.length}`;
      }
    }
    return undefined;
  }
  if (body.length !== 32) return `invalid length: expected length 32 for simple format, found ${body.length}`;
  return undefined;
}

/** The canonical (lower-case, hyphenated) form of a UUID that parses. */
export function canonicalUuid(value: string): string {
  const hex = value
    .replace(/^urn:uuid:/, '')
    .replace(/[{}-]/g, '')
    .toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
