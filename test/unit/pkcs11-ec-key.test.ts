/**
 * The token-independent parts of the PKCS#11 provider: public points in both shapes modules use,
 * raw r||s signatures, object ids, token labels. No SoftHSM2 needed.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { test } from 'node:test';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  derFromRawSignature,
  objectId,
  P256_EC_PARAMS,
  spkiFromEcPoint,
} from '../../src/device-key/pkcs11/ec-key.js';
import { labelField } from '../../src/device-key/pkcs11/token.js';

const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const spki = publicKey.export({ type: 'spki', format: 'der' });
/** The uncompressed point is the last 65 bytes of a P-256 SPKI. */
const point = spki.subarray(spki.length - 65);

const cryptoFailure = (pattern: RegExp) => (error: unknown) =>
  error instanceof ProtocolError &&
  error.message.startsWith('device key cryptography error: ') &&
  pattern.test(error.message);

test('CKA_EC_PARAMS is the DER of the prime256v1 OID', () => {
  assert.equal(P256_EC_PARAMS.toString('hex'), '06082a8648ce3d030107');
});

test('CKA_EC_POINT becomes the same 91-byte SPKI whether DER-wrapped or bare', () => {
  const wrapped = Buffer.concat([Buffer.from([0x04, 0x41]), point]);
  assert.deepEqual(Buffer.from(spkiFromEcPoint(wrapped)), spki);
  assert.deepEqual(Buffer.from(spkiFromEcPoint(point)), spki);
  assert.equal(spkiFromEcPoint(point).length, 91);
});

test('malformed points are cryptography errors', () => {
  assert.throws(() => spkiFromEcPoint(point.subarray(0, 33)), cryptoFailure(/CKA_EC_POINT \(33 bytes\)/));
  const compressed = Buffer.concat([Buffer.from([0x04, 0x21, 0x02]), point.subarray(1, 33)]);
  assert.throws(() => spkiFromEcPoint(compressed), cryptoFailure(/CKA_EC_POINT/));
  const offCurve = Buffer.from(point);
  offCurve[64] = offCurve[64]! ^ 0x01;
  assert.throws(() => spkiFromEcPoint(offCurve), cryptoFailure(/not a point on P-256/));
});

test('a raw r||s signature becomes DER that node:crypto verifies; other lengths are refused', () => {
  const message = Buffer.from('raw to der');
  const raw = sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  assert.equal(raw.length, 64);
  const der = derFromRawSignature(raw);
  assert.ok(verify('sha256', message, { key: publicKey, dsaEncoding: 'der' }, der));
  assert.throws(() => derFromRawSignature(raw.subarray(0, 63)), cryptoFailure(/63 bytes, expected 64/));
  assert.throws(() => derFromRawSignature(Buffer.alloc(72)), cryptoFailure(/72 bytes/));
});

test('object ids are 32 bytes, stable, and distinct per key id', () => {
  assert.equal(objectId('a').length, 32);
  assert.deepEqual(objectId('key-1'), objectId('key-1'));
  assert.notDeepEqual(objectId('key-1'), objectId('key-2'));
  assert.notDeepEqual(objectId('key-1'), createHash('sha256').update('key-1').digest());
});

test('token labels are padded to 32 bytes of UTF-8, and impossible labels are refused', () => {
  assert.equal(labelField('gatehouse'), `gatehouse${' '.repeat(23)}`);
  assert.equal(Buffer.byteLength(labelField('clé'), 'utf8'), 32);
  assert.equal(labelField('x'.repeat(32)), 'x'.repeat(32));
  for (const bad of ['', 'x'.repeat(33), 'é'.repeat(17), 'trailing ']) {
    assert.throws(() => labelField(bad), /device key platform error: PKCS#11 token label/);
  }
});
