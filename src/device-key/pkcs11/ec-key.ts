/**
 * The P-256 specifics of PKCS#11 keys: the curve parameters a key pair is generated with, the
 * public point tokens hand back, the raw signature they produce, and how a key id names objects.
 */
import { createHash } from 'node:crypto';
import { cryptoError } from '../errors.js';
import { ecdsaDer, p256Spki } from '../provider.js';

/** CKA_EC_PARAMS: the DER OID 1.2.840.10045.3.1.7 (prime256v1, secp256r1). */
export const P256_EC_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

const COORDINATE_BYTES = 32;
const UNCOMPRESSED_POINT_BYTES = 1 + 2 * COORDINATE_BYTES;

/**
 * SPKI DER from CKA_EC_POINT. PKCS#11 says the value is a DER OCTET STRING around the
 * uncompressed point (04 41 04||X||Y), but some modules return the bare point (04||X||Y); both
 * are accepted, and the lengths tell them apart without ambiguity.
 */
export function spkiFromEcPoint(ecPoint: Uint8Array): Uint8Array {
  let point = ecPoint;
  if (
    point.length === UNCOMPRESSED_POINT_BYTES + 2 &&
    point[0] === 0x04 &&
    point[1] === UNCOMPRESSED_POINT_BYTES
  ) {
    point = point.subarray(2);
  }
  if (point.length !== UNCOMPRESSED_POINT_BYTES || point[0] !== 0x04) {
    throw cryptoError(`unexpected PKCS#11 CKA_EC_POINT (${ecPoint.length} bytes)`);
  }
  try {
    return p256Spki(point.subarray(1, 1 + COORDINATE_BYTES), point.subarray(1 + COORDINATE_BYTES));
  } catch {
    throw cryptoError('PKCS#11 CKA_EC_POINT is not a point on P-256');
  }
}

/** CKM_ECDSA yields r||s, each half the size of the curve order; DER is what callers verify. */
export function derFromRawSignature(raw: Uint8Array): Uint8Array {
  if (raw.length !== 2 * COORDINATE_BYTES) {
    throw cryptoError(`PKCS#11 ECDSA signature is ${raw.length} bytes, expected ${2 * COORDINATE_BYTES}`);
  }
  return ecdsaDer(raw.subarray(0, COORDINATE_BYTES), raw.subarray(COORDINATE_BYTES));
}

/**
 * CKA_ID for a key id: a SHA-256 of it, so the attribute has one fixed length whatever codex
 * sends (hardware tokens often cap CKA_ID far below arbitrary string lengths). The readable key id
 * goes in CKA_LABEL for people listing the token.
 */
export function objectId(keyId: string): Buffer {
  return createHash('sha256').update(`gatehouse device key\0${keyId}`, 'utf8').digest();
}
