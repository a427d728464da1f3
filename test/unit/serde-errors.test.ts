import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeClientRequest } from '../../src/protocol/request-decoder.js';
import { Compile } from 'typebox/compile';
import { isValid } from '../../src/protocol/registry.js';
import { rustDebugString } from '../../src/protocol/serde-errors.js';
import { ClientRequests, ServerRequests, ServerNotifications } from '../../src/protocol/methods/index.js';
import { InitializeParams } from '../../src/protocol/methods/initialize.js';

const detail = (method: string, params: unknown, hasParams = true) => {
  const d = decodeClientRequest({ id: 1, method, params, hasParams });
  return d.kind === 'invalid' ? d.message : undefined;
};

test('the exact serde texts of spec A.5', () => {
  const expectOne = `expected one of ${Object.keys(ClientRequests)
    .map((m) => `\`${m}\``)
    .join(', ')}`;
  assert.equal(
    detail('no/such/method', {}),
    `Invalid request: unknown variant \`no/such/method\`, ${expectOne}`,
  );
  assert.equal(detail('initialize', undefined, false), 'Invalid request: missing field `params`');
  assert.equal(
    detail('initialize', 'nope'),
    'Invalid request: invalid type: string "nope", expected struct InitializeParams',
  );
  assert.equal(detail('initialize', {}), 'Invalid request: missing field `clientInfo`');
  assert.equal(
    detail('initialize', { clientInfo: { name: 'x' } }),
    'Invalid request: missing field `version`',
  );
  assert.equal(
    detail('initialize', {
      clientInfo: { name: 'x', version: '1' },
      capabilities: { experimentalApi: 'yes' },
    }),
    'Invalid request: invalid type: string "yes", expected a boolean',
  );
  assert.equal(
    detail('initialize', {
      clientInfo: { name: 'x', version: '1' },
      capabilities: { optOutNotificationMethods: 'configWarning' },
    }),
    'Invalid request: invalid type: string "configWarning", expected a sequence',
  );
  assert.equal(
    detail('initialize', null),
    'Invalid request: invalid type: null, expected struct InitializeParams',
  );
  assert.equal(
    detail('initialize', 5),
    'Invalid request: invalid type: integer `5`, expected struct InitializeParams',
  );
  assert.equal(
    detail('initialize', 1.5),
    'Invalid request: invalid type: floating point `1.5`, expected struct InitializeParams',
  );
  assert.equal(
    detail('initialize', [1]),
    'Invalid request: invalid type: sequence, expected struct InitializeParams',
  );
  assert.equal(
    detail('initialize', { clientInfo: { name: 7, version: '1' } }),
    'Invalid request: invalid type: integer `7`, expected a string',
  );
});

test('members are checked in input order; missing fields after, in declaration order', () => {
  assert.equal(
    detail('initialize', { capabilities: { experimentalApi: 1 }, clientInfo: { name: 1 } }),
    'Invalid request: invalid type: integer `1`, expected a boolean',
  );
  assert.equal(
    detail('initialize', { clientInfo: { version: '1' } }),
    'Invalid request: missing field `name`',
  );
});

test('unknown members are ignored and null is fine where codex has an Option', () => {
  assert.equal(
    detail('initialize', { clientInfo: { name: 'x', version: '1', bogus: 1 }, refreshToken: false }),
    undefined,
  );
  assert.equal(
    detail('initialize', { clientInfo: { name: 'x', version: '1', title: null }, capabilities: null }),
    undefined,
  );
});

test('strings in errors use Rust debug escapes', () => {
  assert.equal(rustDebugString('a"b\\c\nd\te\u0001'), '"a\\"b\\\\c\\nd\\te\\u{1}"');
});

/**
 * The serde walker is the run-time validator, so it must accept exactly what TypeBox's own
 * compiled check accepts: for random values, "no serde error" exactly when the check passes.
 */
test('the serde walker and the TypeBox check agree on every schema in the registry', () => {
  const schemas = [
    ...Object.values(ClientRequests).flatMap((d) => [d.params, d.result]),
    ...Object.values(ServerRequests).flatMap((d) => [d.params, d.result]),
    ...Object.values(ServerNotifications).map((d) => d.params),
  ];
  const compiled = schemas.map((s) => Compile(s));
  const nearInitialize = fc.record(
    {
      clientInfo: fc.record(
        { name: fc.oneof(fc.string(), fc.integer()), version: fc.oneof(fc.string(), fc.constant(null)) },
        { requiredKeys: [] },
      ),
      capabilities: fc.oneof(
        fc.constant(null),
        fc.record(
          {
            experimentalApi: fc.oneof(fc.boolean(), fc.string()),
            optOutNotificationMethods: fc.oneof(fc.array(fc.string()), fc.string(), fc.constant(null)),
            extensions: fc.oneof(fc.object(), fc.constant(null), fc.integer()),
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), nearInitialize), (value) => {
      for (const [i, schema] of schemas.entries()) {
        assert.equal(isValid(schema, value), compiled[i]!.Check(value));
      }
    }),
    { numRuns: 500 },
  );
  assert.equal(isValid(InitializeParams, { clientInfo: { name: 'n', version: 'v' } }), true);
});
