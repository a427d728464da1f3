/**
 * A throwaway certificate authority for the local backend: a CA and a server certificate for
 * 127.0.0.1, ::1 and localhost, made by the system's `openssl` (present wherever Node's TLS is).
 * Clients trust the CA through `CODEX_CA_CERTIFICATE`, exactly as codex is pointed at a test
 * backend; nothing here is meant for anything but loopback.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LocalCertificates {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function createLocalCertificates(): LocalCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ca-'));
  const file = (name: string) => join(dir, name);
  const openssl = (args: string[]) => {
    try {
      execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
      throw new Error(`openssl ${args[0]} failed${stderr ? `: ${stderr}` : ''} (is openssl installed?)`);
    }
  };
  try {
    const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl([
      'req',
      '-x509',
      ...curve,
      '-keyout',
      file('ca.key'),
      '-out',
      file('ca.pem'),
      '-days',
      '30',
      '-subj',
      '/CN=Gatehouse local backend CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    openssl([
      'req',
      '-new',
      ...curve,
      '-keyout',
      file('server.key'),
      '-out',
      file('server.csr'),
      '-subj',
      '/CN=127.0.0.1',
    ]);
    writeFileSync(
      file('server.ext'),
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n',
    );
    openssl([
      'x509',
      '-req',
      '-in',
      file('server.csr'),
      '-CA',
      file('ca.pem'),
      '-CAkey',
      file('ca.key'),
      '-CAcreateserial',
      '-out',
      file('server.pem'),
      '-days',
      '30',
      '-extfile',
      file('server.ext'),
    ]);
    return {
      caPem: readFileSync(file('ca.pem'), 'utf8'),
      certPem: readFileSync(file('server.pem'), 'utf8'),
      keyPem: readFileSync(file('server.key'), 'utf8'),
    };
  } finally {
    // The CA key never outlives this call: nobody can mint more certificates with it.
    rmSync(dir, { recursive: true, force: true });
  }
}
