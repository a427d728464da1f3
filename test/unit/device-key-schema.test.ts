import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import { connectionPayload, enrollmentPayload, NOW } from '../helpers/device-key-cases.js';

const readSchema = (url: URL) => JSON.parse(readFileSync(fileURLToPath(url), 'utf8')) as object;
const ours = (name: string) => readSchema(new URL(`../fixtures/schema/v2/${name}.json`, import.meta.url));
const codex = (name: string) =>
  readSchema(new URL(`../../../shared/reference-schema/codex-0.129.0/v2/${name}.json`, import.meta.url));

const keyId = `dk_tpm_${Buffer.alloc(32).toString('base64url')}`;
const info = {
  keyId,
  publicKeySpkiDerBase64: 'AA==',
  algorithm: 'ecdsa_p256_sha256',
  protectionClass: 'hardware_tpm',
};

const cases: Record<string, [string, unknown, boolean][]> = {
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
  test(`v2/${name}.json accepts and rejects the same instances as codex 0.129.0's`, () => {
    // strict off: codex's files use `format` values (int64) that ajv does not know.
    const mine = new Ajv.default({ strict: false }).compile(ours(name));
    const theirs = new Ajv.default({ strict: false }).compile(codex(name));
    for (const [label, instance, valid] of instances) {
      const value = JSON.parse(JSON.stringify(instance)) as unknown;
      assert.equal(theirs(value), valid, `codex's schema, ${label}`);
      assert.equal(mine(value), valid, `ours, ${label}`);
    }
  });
}
