/**
 * JSON-RPC request ids as codex accepts them: a string or a 64-bit signed integer.
 * Integers beyond 2^53 cannot survive JSON.parse, so they are kept as bigint, recovered from the
 * raw text, and written back digit for digit.
 */
export type RequestId = string | number | bigint;

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** Serializes an id exactly as it arrived. */
export function requestIdJson(id: RequestId): string {
  return typeof id === 'string' ? JSON.stringify(id) : String(id);
}

/** A stable key for maps: `s:` and `i:` keep the string "1" and the integer 1 apart. */
export function requestIdKey(id: RequestId): string {
  return typeof id === 'string' ? `s:${id}` : `i:${String(id)}`;
}

/**
 * Decides whether a parsed `id` member is a valid request id. `raw` is the id's source token when
 * the caller has it (needed to tell `1.0` from `1` and to keep big integers exact).
 */
export function toRequestId(value: unknown, raw: string | undefined): RequestId | undefined {
  if (typeof value === 'string') return value;
  if (typeof value !== 'number') return undefined;
  if (raw !== undefined) {
    if (!/^-?\d+$/.test(raw)) return undefined; // 1.5, 1.0, 1e3: floats are not ids
    if (raw === '-0') return undefined; // serde_json reads `-0` as a float
    const big = BigInt(raw);
    if (big < I64_MIN || big > I64_MAX) return undefined;
    return Number.isSafeInteger(value) ? value : big;
  }
  return Number.isSafeInteger(value) && !Object.is(value, -0) ? value : undefined;
}
