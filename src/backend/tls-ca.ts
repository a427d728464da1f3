/**
 * A throwaway certificate authority for the local backend: an ECDSA P-256 CA and a server
 * certificate it signs, built in-process with node:crypto and the DER encoder next door.
 *
 * Clients trust the CA through `CODEX_CA_CERTIFICATE`, exactly as codex is pointed at a test
 * backend. The CA's private key lives only inside `createLocalCertificates` and is dropped when it
 * returns, so nothing can mint more certificates under that CA afterwards.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import {
  bitString,
  boolean,
  explicit,
  implicitPrimitive,
  namedBits,
  objectIdentifier,
  octetString,
  sequence,
  setOf,
  time,
  toPem,
  unsignedInteger,
  utf8String,
} from '../codec/der.js';

export const CA_COMMON_NAME = 'Gatehouse local backend CA';

export interface LocalCertificates {
  /** The CA certificate (PEM): what clients trust. */
  caPem: string;
  /** The server certificate (PEM), signed by the CA. */
  certPem: string;
  /** The server certificate's private key (PKCS#8 PEM). */
  keyPem: string;
}

export interface LocalCertificateOptions {
  /** IP addresses the server certificate names, besides 127.0.0.1 and ::1. */
  extraIpAddresses?: string[];
  /** Validity starts an hour before `now` (clock skew) and lasts `validityDays` (default 30). */
  now?: Date;
  validityDays?: number;
}

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** keyUsage bit numbers (RFC 5280 4.2.1.3). */
const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

/** GeneralName tags (RFC 5280 4.2.1.6), IMPLICIT. */
const GENERAL_NAME = { dnsName: 2, ipAddress: 7 } as const;

export function createLocalCertificates(options: LocalCertificateOptions = {}): LocalCertificates {
  const now = options.now ?? new Date();
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000);
  const notAfter = new Date(now.getTime() + (options.validityDays ?? 30) * 24 * 60 * 60 * 1000);

  const caKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caName = distinguishedName(CA_COMMON_NAME);
  const caKeyId = keyIdentifier(caKeys.publicKey);
  const caCert = certificate({
    issuerName: caName,
    subjectName: caName,
    notBefore,
    notAfter,
    subjectPublicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      // pathLenConstraint 0: this CA signs server certificates, never another CA.
      extension(OID.basicConstraints, true, sequence(boolean(true), unsignedInteger(0))),
      extension(OID.keyUsage, true, namedBits([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign])),
      extension(OID.subjectKeyIdentifier, false, octetString(caKeyId)),
    ],
  });

  const serverKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ipAddresses = [...new Set(['127.0.0.1', '::1', ...(options.extraIpAddresses ?? [])])];
  const serverCert = certificate({
    issuerName: caName,
    subjectName: distinguishedName('127.0.0.1'),
    notBefore,
    notAfter,
    subjectPublicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      extension(OID.basicConstraints, true, sequence()), // cA defaults to FALSE
      extension(OID.keyUsage, true, namedBits([KEY_USAGE.digitalSignature])),
      extension(OID.extKeyUsage, false, sequence(objectIdentifier(OID.serverAuth))),
      extension(
        OID.subjectAltName,
        false,
        sequence(
          ...ipAddresses.map((ip) => implicitPrimitive(GENERAL_NAME.ipAddress, ipAddressBytes(ip))),
          implicitPrimitive(GENERAL_NAME.dnsName, Buffer.from('localhost', 'ascii')),
        ),
      ),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(serverKeys.publicKey))),
      extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, caKeyId))),
    ],
  });

  return {
    caPem: toPem('CERTIFICATE', caCert),
    certPem: toPem('CERTIFICATE', serverCert),
    keyPem: serverKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

interface CertificateFields {
  issuerName: Buffer;
  subjectName: Buffer;
  notBefore: Date;
  notAfter: Date;
  subjectPublicKey: KeyObject;
  signingKey: KeyObject;
  extensions: Buffer[];
}

/** RFC 5280 4.1: TBSCertificate, signed with ECDSA-SHA256 by the issuer's key. */
function certificate(fields: CertificateFields): Buffer {
  const signatureAlgorithm = sequence(objectIdentifier(OID.ecdsaWithSha256)); // parameters absent
  const tbs = sequence(
    explicit(0, unsignedInteger(2)), // version v3
    unsignedInteger(serialNumber()),
    signatureAlgorithm,
    fields.issuerName,
    sequence(time(fields.notBefore), time(fields.notAfter)),
    fields.subjectName,
    fields.subjectPublicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(...fields.extensions)),
  );
  // node:crypto's ECDSA signature is already the DER Ecdsa-Sig-Value X.509 expects.
  const signature = sign('sha256', tbs, fields.signingKey);
  return sequence(tbs, signatureAlgorithm, bitString(signature));
}

/** 16 random bytes, positive and at most 20 octets once encoded (RFC 5280 4.1.2.2). */
function serialNumber(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive, and never a leading zero byte
  return serial;
}

function distinguishedName(commonName: string): Buffer {
  return sequence(setOf(sequence(objectIdentifier(OID.commonName), utf8String(commonName))));
}

/** Extension; `critical` is omitted when false, as DER requires for a DEFAULT value. */
function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(objectIdentifier(oid), boolean(true), octetString(value))
    : sequence(objectIdentifier(oid), octetString(value));
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the public key's bit string (the EC point). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([
    Buffer.from([0x04]),
    Buffer.from(jwk.x ?? '', 'base64url'),
    Buffer.from(jwk.y ?? '', 'base64url'),
  ]);
  return createHash('sha1').update(point).digest();
}

/** The 4 or 16 bytes of an IP address, for an iPAddress GeneralName. */
export function ipAddressBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  let text = ip.replace(/%.*$/, ''); // zone id is not part of the address
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.replace(v4[1]!, `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`);
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}
