/**
 * Delays between retries: exponential from a base, with ±10% jitter so that many clients failing
 * together do not retry together (codex: about 0.2, 0.4, 0.8, 1.6, 3.2 s). A `Retry-After` from
 * the backend wins over the computed delay.
 */

/** Retry-After values are honoured up to this bound, so one answer cannot park a turn for hours. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** The delay before retry number `retry` (0 for the first retry). */
export function backoffDelayMs(baseMs: number, retry: number, random: () => number = Math.random): number {
  const jitter = 0.9 + random() * 0.2;
  return Math.round(baseMs * 2 ** retry * jitter);
}

/**
 * The wait the backend asked for, from `retry-after-ms` (milliseconds, an OpenAI extension) or
 * `retry-after` (seconds, or an HTTP date). Undefined when absent or unreadable.
 */
export function retryAfterMs(
  headers: Record<string, string | string[] | undefined>,
  now: number = Date.now(),
): number | undefined {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)?.trim();
  const ms = first(headers['retry-after-ms']);
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return clamp(Number(ms));
  const value = first(headers['retry-after']);
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return clamp(Number(value) * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : clamp(date - now);
}

function clamp(ms: number): number {
  return Math.min(Math.max(0, Math.round(ms)), MAX_RETRY_AFTER_MS);
}
