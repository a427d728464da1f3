/**
 * The rule of Rust's `http::HeaderValue::from_str`, which codex applies to `clientInfo.name`:
 * every byte is a visible character, a space, a tab or non-ASCII (obs-text); control characters
 * and DEL are not allowed.
 */
export function isValidHeaderValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}

/** Replaces what a header value cannot hold with `_` (codex does this to its user agent). */
export function sanitizeHeaderValue(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    out += (c < 0x20 && c !== 0x09) || c === 0x7f ? '_' : ch;
  }
  return out;
}
