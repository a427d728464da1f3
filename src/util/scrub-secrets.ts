/**
 * Scrubbing secrets we know out of text we did not write. A backend may quote what it was sent
 * (a rejected bearer, say) in an error body, and those bodies are quoted in turn in error texts
 * that reach clients and logs.
 */
export const REDACTED = '<redacted>';

/** `text` with every occurrence of each secret replaced, as written and as JSON escapes it in a string. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let scrubbed = text;
  for (const secret of secrets) {
    if (secret === '') continue;
    for (const form of new Set([secret, JSON.stringify(secret).slice(1, -1)])) {
      scrubbed = scrubbed.split(form).join(REDACTED);
    }
  }
  return scrubbed;
}

/** The credentials in request headers we sent: the bearer and the attestation token. */
export function credentialsIn(headers: Readonly<Record<string, string>>): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'authorization') found.push(value.replace(/^Bearer\s+/i, ''));
    if (lower === 'x-oai-attestation') found.push(attestationToken(value) ?? value);
  }
  return found;
}

function attestationToken(header: string): string | undefined {
  try {
    const envelope = JSON.parse(header) as { t?: unknown };
    return typeof envelope.t === 'string' ? envelope.t : undefined;
  } catch {
    return undefined;
  }
}
