/**
 * What serde_json refuses although JSON.parse accepts it. codex decodes every inbound message with
 * serde_json, so a text it cannot decode gets no reply at all (spec A.4); Gatehouse must not answer
 * it either. The differences that matter:
 *
 * - nesting: serde_json stops at 128 levels ("recursion limit exceeded"). The bound also keeps
 *   hostile nesting (100 000 `[`) away from code that recurses over values, such as the actor
 *   codec, where it would overflow the stack and take the process down.
 * - numbers beyond f64 (`1e400`, a 400-digit integer): serde_json says "number out of range",
 *   JSON.parse gives Infinity.
 * - lone UTF-16 surrogates written as escapes (`"\ud800"`): serde_json refuses them.
 * - a member written twice: serde's derived structs refuse it (which shapes that rules out is
 *   jsonrpc.ts's business; this module counts the top-level members).
 *
 * One pass over the text finds all of it. Strings, where the bytes of large messages are, are
 * skipped with native searches, so the cost follows the number of tokens, not of characters.
 */

/** serde_json's default recursion limit: a container at this depth (the outer one is 1) fails. */
export const SERDE_MAX_DEPTH = 128;

export interface TextScan {
  /** Why serde_json would refuse the text, if it would. */
  refused?: string;
  /** How often each top-level member name (decoded) occurs. */
  members: Map<string, number>;
  /** The source text of the first top-level `id` member, when it is a number. */
  idNumber?: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const LONE_SURROGATE = 'lone leading surrogate in hex escape';

/** Scans a text JSON.parse has accepted as an object; `value` is what it parsed to. */
export function scanObjectText(text: string, value: unknown): TextScan {
  const scan: TextScan = { members: new Map() };
  const n = text.length;
  let depth = 0;
  let expectingKey = false;
  let idPending = false;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (depth === 1 && expectingKey) {
        const raw = text.slice(i, end);
        const key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        scan.members.set(key, (scan.members.get(key) ?? 0) + 1);
        idPending = key === 'id' && scan.members.get(key) === 1;
        expectingKey = false;
      } else if (depth === 1) {
        idPending = false;
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
      if (depth >= SERDE_MAX_DEPTH) return { ...scan, refused: 'recursion limit exceeded' };
      if (depth === 1) expectingKey = true;
      else if (depth === 2) idPending = false;
      i++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
      i++;
    } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
      const start = i;
      while (i < n && isNumberChar(text.charCodeAt(i))) i++;
      const token = text.slice(start, i);
      if ((token.length > 300 || /[eE]/.test(token)) && !Number.isFinite(Number(token)))
        return { ...scan, refused: 'number out of range' };
      if (depth === 1 && idPending) scan.idNumber = token;
      idPending = false;
    } else {
      if (c === COMMA && depth === 1) expectingKey = true;
      i++;
    }
  }
  if (hasLoneSurrogate(text, value)) return { ...scan, refused: LONE_SURROGATE };
  return scan;
}

/** `-+.eE0-9`: what a JSON number token is made of (compared as codes: this runs per character). */
function isNumberChar(c: number): boolean {
  return (c >= ZERO && c <= NINE) || c === MINUS || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

/** The index just past the string starting at `at` (a quote). */
function stringEnd(text: string, at: number): number {
  let close = text.indexOf('"', at + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(close - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return close + 1;
    close = text.indexOf('"', close + 1);
  }
}

/**
 * stdio and WebSocket text was valid UTF-8, so only an escape can make a lone surrogate; text
 * handed over in-process may hold one raw. The depth is already known to be bounded here.
 */
function hasLoneSurrogate(text: string, value: unknown): boolean {
  if (!isWellFormed(text)) return true;
  if (!text.includes('\\u') || !SURROGATE_ESCAPE.test(text)) return false;
  const visit = (v: unknown): boolean => {
    if (typeof v === 'string') return !isWellFormed(v);
    if (typeof v !== 'object' || v === null) return false;
    if (Array.isArray(v)) return v.some(visit);
    return Object.entries(v).some(([k, item]) => !isWellFormed(k) || visit(item));
  };
  return visit(value);
}

function isWellFormed(s: string): boolean {
  // ES2024; present in Node 20, absent from the ES2022 lib this project compiles against.
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}
