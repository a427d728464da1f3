/**
 * The local backend's reading of `x-oai-attestation` (spec D.3), kept with each recorded request
 * that carries the header, so tests and demos can check what a client vouched for without
 * parsing it themselves. A well-formed envelope is compact JSON `{"v":1,"s":N}` with `t` (a
 * string) present exactly when `s` is 0, and nothing else.
 */
export type AttestationCheck =
  { ok: true; status: 0 | 1 | 2 | 3 | 4; token?: string } | { ok: false; reason: string };

export const ATTESTATION_HEADER = 'x-oai-attestation';

export function checkAttestationHeader(value: string): AttestationCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, reason: 'not a JSON object' };
  }
  const { v, s, t, ...extra } = parsed as Record<string, unknown>;
  if (v !== 1) return { ok: false, reason: `v is ${JSON.stringify(v)}, expected 1` };
  if (s !== 0 && s !== 1 && s !== 2 && s !== 3 && s !== 4) {
    return { ok: false, reason: `s is ${JSON.stringify(s)}, expected 0..4` };
  }
  if (Object.keys(extra).length > 0)
    return { ok: false, reason: `unexpected members: ${Object.keys(extra).join(', ')}` };
  if (s === 0 && typeof t !== 'string') return { ok: false, reason: 'status 0 without a string token' };
  if (s !== 0 && t !== undefined) return { ok: false, reason: `status ${s} with a token` };
  const compact = JSON.stringify(s === 0 ? { v, s, t } : { v, s });
  if (value !== compact) return { ok: false, reason: 'not compact JSON in the order v, s, t' };
  return s === 0 ? { ok: true, status: s, token: t as string } : { ok: true, status: s };
}
