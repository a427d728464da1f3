import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isProtocolError } from '../../src/protocol/errors.js';
import { INVALID_KEY_ID, keyIdClass, newKeyId } from '../../src/device-key/key-id.js';
import {
  signedPayloadBytes,
  validateSignPayload,
  type SignPayload,
} from '../../src/device-key/sign-payload.js';
import { keyIdCases, payloadRuleCases, NOW } from '../helpers/device-key-cases.js';

const CONNECTION_VECTOR =
  '{"domain":"codex-device-key-sign-payload/v1","payload":{"accountUserId":"account-user-1","audience":"remote_control_client_websocket","clientId":"cli_123","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","scopes":["remote_control_controller_websocket"],"sessionId":"wssess_123","targetOrigin":"https://chatgpt.com","targetPath":"/api/codex/remote/control/client","tokenExpiresAt":1700000000,"tokenSha256Base64url":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","type":"remoteControlClientConnection"}}';

const CONNECTION_VECTOR_BASE64 =
  'eyJkb21haW4iOiJjb2RleC1kZXZpY2Uta2V5LXNpZ24tcGF5bG9hZC92MSIsInBheWxvYWQiOnsiYWNjb3VudFVzZXJJZCI6ImFjY291bnQtdXNlci0xIiwiYXVkaWVuY2UiOiJyZW1vdGVfY29udHJvbF9jbGllbnRfd2Vic29ja2V0IiwiY2xpZW50SWQiOiJjbGlfMTIzIiwibm9uY2UiOiJBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBIiwic2NvcGVzIjpbInJlbW90ZV9jb250cm9sX2NvbnRyb2xsZXJfd2Vic29ja2V0Il0sInNlc3Npb25JZCI6Indzc2Vzc18xMjMiLCJ0YXJnZXRPcmlnaW4iOiJodHRwczovL2NoYXRncHQuY29tIiwidGFyZ2V0UGF0aCI6Ii9hcGkvY29kZXgvcmVtb3RlL2NvbnRyb2wvY2xpZW50IiwidG9rZW5FeHBpcmVzQXQiOjE3MDAwMDAwMDAsInRva2VuU2hhMjU2QmFzZTY0dXJsIjoiNDdERVFwajhIQlNhLV9USW1XLTVKQ2V1UWVSa201Tk1wSldaRzNoU3VGVSIsInR5cGUiOiJyZW1vdGVDb250cm9sQ2xpZW50Q29ubmVjdGlvbiJ9fQ==';

const connectionVectorPayload: SignPayload = {
  type: 'remoteControlClientConnection',
  nonce: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  audience: 'remote_control_client_websocket',
  sessionId: 'wssess_123',
  targetOrigin: 'https://chatgpt.com',
  targetPath: '/api/codex/remote/control/client',
  accountUserId: 'account-user-1',
  clientId: 'cli_123',
  tokenSha256Base64url: '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
  tokenExpiresAt: 1700000000,
  scopes: ['remote_control_controller_websocket'],
};

test('signed bytes of the connection payload match spec A.4.1 byte for byte', () => {
  assert.equal(signedPayloadBytes(connectionVectorPayload).toString('utf8'), CONNECTION_VECTOR);
});

test('signed bytes match the signedPayloadBase64 quoted in spec A.4', () => {
  assert.equal(signedPayloadBytes(connectionVectorPayload).toString('base64'), CONNECTION_VECTOR_BASE64);
});

test('signed bytes do not depend on member order and drop members the payload type does not declare', () => {
  const shuffled = Object.fromEntries(Object.entries(connectionVectorPayload).reverse()) as SignPayload;
  const extra = { ...connectionVectorPayload, arbitrary: 'bytes' } as SignPayload;
  assert.equal(signedPayloadBytes(shuffled).toString('utf8'), CONNECTION_VECTOR);
  assert.equal(signedPayloadBytes(extra).toString('utf8'), CONNECTION_VECTOR);
});

test('signed bytes of the enrollment payload: sorted keys, compact, domain first', () => {
  const bytes = signedPayloadBytes({
    type: 'remoteControlClientEnrollment',
    nonce: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    audience: 'remote_control_client_enrollment',
    challengeId: 'rch_123',
    targetOrigin: 'https://chatgpt.com',
    targetPath: '/wham/remote/control/client/enroll',
    accountUserId: 'account-user-1',
    clientId: 'cli_123',
    deviceIdentitySha256Base64url: '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
    challengeExpiresAt: 1700000060,
  }).toString('utf8');
  assert.equal(
    bytes,
    '{"domain":"codex-device-key-sign-payload/v1","payload":{"accountUserId":"account-user-1","audience":"remote_control_client_enrollment","challengeExpiresAt":1700000060,"challengeId":"rch_123","clientId":"cli_123","deviceIdentitySha256Base64url":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","targetOrigin":"https://chatgpt.com","targetPath":"/wham/remote/control/client/enroll","type":"remoteControlClientEnrollment"}}',
  );
});

test('key ids: the three prefixes, 50 characters, 32 bytes of unpadded base64url', () => {
  for (const [label, keyId, expected] of keyIdCases) {
    if (expected === 'invalid') {
      assert.throws(
        () => keyIdClass(keyId),
        (e: unknown) =>
          isProtocolError(e) &&
          e.code === -32600 &&
          e.message === `invalid device key payload: ${INVALID_KEY_ID}`,
        label,
      );
    } else {
      assert.equal(keyIdClass(keyId), expected, label);
    }
  }
  const fresh = newKeyId('hardware_tpm');
  assert.match(fresh, /^dk_tpm_[A-Za-z0-9_-]{43}$/);
  assert.equal(keyIdClass(fresh), 'hardware_tpm');
  assert.notEqual(newKeyId('hardware_tpm'), fresh);
});

test('every payload rule of spec A.4.2, broken one at a time, gives its own message', () => {
  for (const { label, payload, message } of payloadRuleCases(NOW)) {
    if (message === undefined) {
      assert.doesNotThrow(() => validateSignPayload(payload, NOW), label);
      continue;
    }
    assert.throws(
      () => validateSignPayload(payload, NOW),
      (e: unknown) =>
        isProtocolError(e) && e.code === -32600 && e.message === `invalid device key payload: ${message}`,
      label,
    );
  }
});
