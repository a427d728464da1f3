/**
 * The certificates upstream TLS connections trust: Node's bundled roots, plus the PEM file named
 * by `CODEX_CA_CERTIFICATE` when set (codex's variable; the local backend's throwaway CA in
 * tests). Read once, when the upstream client is built; a file that cannot be used is a start-up
 * error that names the variable and the path.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';

export class TrustConfigError extends Error {
  override name = 'TrustConfigError';
}

/** The CA list for `tls.connect({ ca })`, or undefined to keep Node's defaults. */
export function trustedCertificates(env: NodeJS.ProcessEnv): string[] | undefined {
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
  return [...rootCertificates, pem];
}
