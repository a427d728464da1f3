/**
 * The certificates upstream TLS connections trust: Node's bundled roots, plus the PEM file named
 * by `CODEX_CA_CERTIFICATE` when set (codex's variable; the local backend's throwaway CA in
 * tests). Read once, when the broker starts; a file that cannot be used is a start-up error that
 * names the variable and the path.
 *
 * The result is one `SecureContext` shared by every connection: passing `ca` instead makes Node
 * parse all ~150 roots again for each TLS handshake (about 25 ms of CPU each).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';

export class TrustConfigError extends Error {
  override name = 'TrustConfigError';
}

/** The context for `tls.connect({ secureContext })`, or undefined to keep Node's defaults. */
export function trustedContext(env: NodeJS.ProcessEnv): SecureContext | undefined {
  const path = env.CODEX_CA_CERTIFICATE;
  if (!path) return undefined;
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new TrustConfigError(`CODEX_CA_CERTIFICATE=${path} cannot be read (${code})`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new TrustConfigError(`CODEX_CA_CERTIFICATE=${path} holds no PEM certificate`);
  }
  try {
    new X509Certificate(pem); // createSecureContext skips what it cannot parse; say so at start-up
  } catch (e) {
    const reason = (e as Error).message;
    throw new TrustConfigError(`CODEX_CA_CERTIFICATE=${path} holds no usable certificate (${reason})`, {
      cause: e,
    });
  }
  return createSecureContext({ ca: [...rootCertificates, pem] });
}
