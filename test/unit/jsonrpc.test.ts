import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestId } from '../../src/protocol/request-id.js';
import {
  classifyMessage,
  encodeError,
  encodeNotification,
  encodeResponse,
  encodeServerRequest,
  topLevelToken,
} from '../../src/protocol/jsonrpc.js';

test('the four shapes, by members present (spec A.2)', () => {
  assert.deepEqual(classifyMessage('{"id":1,"method":"m","params":{"a":1}}'), {
    kind: 'request',
    id: 1,
    method: 'm',
    params: { a: 1 },
    hasParams: true,
  });
  assert.deepEqual(classifyMessage('{"method":"m"}'), {
    kind: 'notification',
    method: 'm',
    params: undefined,
  });
  assert.deepEqual(classifyMessage('{"id":0,"result":null,"jsonrpc":"2.0"}'), {
    kind: 'response',
    id: 0,
    result: null,
  });
  assert.deepEqual(classifyMessage('{"id":3,"error":{"code":-1,"message":"x"}}'), {
    kind: 'error',
    id: 3,
    error: { code: -1, message: 'x' },
  });
});

test('what matches no shape is invalid and gets no reply (spec A.4)', () => {
  for (const text of [
    '42',
    '[1,2,3]',
    '[{"id":1,"method":"initialize"}]',
    '{"foo":"bar"}',
    '{"id":5}',
    'null',
    '"s"',
    '{"id":1,"error":{"code":"x"}}',
  ]) {
    assert.equal(classifyMessage(text).kind, 'invalid', text);
  }
  const bad = classifyMessage('{"id": 4, "method": "account/read", ');
  assert.equal(bad.kind, 'invalid');
});

test('a request with a null, float or object id is a notification (spec A.3)', () => {
  for (const id of [
    'null',
    '1.5',
    '1.0',
    '1e3',
    '{}',
    '[1]',
    'true',
    '9223372036854775808',
    '-9223372036854775809',
  ]) {
    const m = classifyMessage(`{"id":${id},"method":"account/read"}`);
    assert.equal(m.kind, 'notification', id);
  }
});

test('ids are kept exactly: strings, negatives, 2^53-1 and 64-bit integers', () => {
  const ids: [string, unknown][] = [
    ['"init-1"', 'init-1'],
    ['-5', -5],
    ['9007199254740991', 9007199254740991],
    ['9223372036854775807', 9223372036854775807n],
    ['-9223372036854775808', -9223372036854775808n],
  ];
  for (const [raw, expected] of ids) {
    const m = classifyMessage(`{"params":{"id":1.5},"method":"x","id":${raw}}`);
    assert.equal(m.kind, 'request');
    assert.equal((m as { id: unknown }).id, expected);
    assert.equal(encodeResponse((m as { id: RequestId }).id, '{}'), `{"id":${raw},"result":{}}`);
  }
});

test('topLevelToken skips nested values and strings that look like keys', () => {
  const text = '{"params":{"id":7,"s":"\\"id\\":9"},"arr":[{"id":8}],"id":  12 ,"x":1}';
  assert.equal(topLevelToken(text, 'id'), '12');
  assert.equal(topLevelToken('{"a":"}","id":-3}', 'id'), '-3');
  assert.equal(topLevelToken('{"a":1}', 'id'), undefined);
});

test('outbound messages use codex key order and never carry jsonrpc', () => {
  assert.equal(
    encodeError(1, { code: -32600, message: 'Not initialized' }),
    '{"error":{"code":-32600,"message":"Not initialized"},"id":1}',
  );
  assert.equal(
    encodeServerRequest(0, 'attestation/generate', {}),
    '{"method":"attestation/generate","id":0,"params":{}}',
  );
  assert.equal(
    encodeNotification('account/updated', { authMode: null, planType: null }, 1795210889740),
    '{"method":"account/updated","params":{"authMode":null,"planType":null},"emittedAtMs":1795210889740}',
  );
});
