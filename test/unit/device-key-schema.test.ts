import { test } from 'node:test';
import { assertSameVerdicts, type SchemaCase } from '../helpers/reference-schema.js';
import { connectionPayload, enrollmentPayload, NOW } from '../helpers/device-key-cases.js';

const keyId = `dk_tpm_${Buffer.alloc(32).toString('base64url')}`;
const info = {
  keyId,
  publicKeySpkiDerBase64: 'AA==',
  algorithm: 'ecdsa_p256_sha256',
  protectionClass: 'hardware_tpm',
};

const cases: Record<string, SchemaCase[]> = {
  DeviceKeyCreateParams: [
    ['minimal', { accountUserId: 'a', clientId: 'c' }, true],
    ['null policy', { accountUserId: 'a', clientId: 'c', protectionPolicy: null }, true],
    [
      'allow policy',
      { accountUserId: 'a', clientId: 'c', protectionPolicy: 'allow_os_protected_nonextractable' },
      true,
    ],
    ['camelCase policy', { accountUserId: 'a', clientId: 'c', protectionPolicy: 'hardwareOnly' }, false],
    ['no clientId', { accountUserId: 'a' }, false],
  ],
  DeviceKeyCreateResponse: [
    ['info', info, true],
    ['unknown class', { ...info, protectionClass: 'software' }, false],
    ['unknown algorithm', { ...info, algorithm: 'ed25519' }, false],
  ],
  DeviceKeyPublicResponse: [
    ['info', info, true],
    ['no keyId', { ...info, keyId: undefined }, false],
  ],
  DeviceKeySignParams: [
    ['connection', { keyId, payload: connectionPayload(NOW) }, true],
    ['enrollment', { keyId, payload: enrollmentPayload(NOW) }, true],
    ['arbitrary bytes', { keyId, payload: { type: 'arbitraryBytes', bytes: 'AA' } }, false],
    [
      'wrong audience',
      { keyId, payload: connectionPayload(NOW, { audience: 'remote_control_client_enrollment' }) },
      false,
    ],
    ['no scopes', { keyId, payload: connectionPayload(NOW, { scopes: undefined }) }, false],
    ['float expiry', { keyId, payload: connectionPayload(NOW, { tokenExpiresAt: 1.5 }) }, false],
  ],
  DeviceKeySignResponse: [
    [
      'signature',
      { signatureDerBase64: 'AA==', signedPayloadBase64: 'AA==', algorithm: 'ecdsa_p256_sha256' },
      true,
    ],
    ['no payload', { signatureDerBase64: 'AA==', algorithm: 'ecdsa_p256_sha256' }, false],
  ],
};

for (const [name, instances] of Object.entries(cases)) {
  test(`v2/${name}.json accepts and rejects the same instances as codex 0.129.0's`, () =>
    assertSameVerdicts('codex-0.129.0', name, instances));
}
