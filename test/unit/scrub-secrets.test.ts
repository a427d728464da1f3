import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unexpectedStatusText } from '../../src/upstream/failure.js';
import { credentialsIn, scrubSecrets } from '../../src/util/scrub-secrets.js';

test('scrubSecrets replaces each secret as written and as JSON escapes it', () => {
  const secret = 'tok"en\\1';
  const body = `raw ${secret} json ${JSON.stringify(secret)} twice ${secret}`;
  assert.equal(scrubSecrets(body, [secret, '']), 'raw <redacted> json "<redacted>" twice <redacted>');
});

test('credentialsIn finds the bearer and the attestation token, whatever the header case', () => {
  const headers = {
    Authorization: 'Bearer sk-abc',
    'x-oai-attestation': '{"v":1,"s":0,"t":"v1.att"}',
    'chatgpt-account-id': 'acct-1',
  };
  assert.deepEqual(credentialsIn(headers), ['sk-abc', 'v1.att']);
  assert.deepEqual(credentialsIn({ 'X-OAI-Attestation': 'not json' }), ['not json']);
});

test("a backend body quoting the request's bearer is quoted without it", () => {
  const text = unexpectedStatusText(400, '{"error":"bad key sk-abc"}', 'https://h/v1/responses?k=1', {
    authorization: 'Bearer sk-abc',
  });
  assert.equal(
    text,
    'unexpected status 400 Bad Request: {"error":"bad key <redacted>"}, url: https://h/v1/responses',
  );
});
