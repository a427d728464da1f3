/**
 * The one-pass scanner that tells what serde_json would refuse (src/protocol/serde-json-strict.ts),
 * held to JSON.parse on generated objects: same top-level members, the id's exact source token,
 * and a refusal exactly when serde_json refuses (depth 128, numbers beyond f64, lone surrogates).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { scanObjectText, SERDE_MAX_DEPTH } from '../../src/protocol/serde-json-strict.js';

/** JSON text with random whitespace between tokens (JSON.stringify's, spread out). */
const spaced = (value: unknown, indent: number) =>
  JSON.stringify(value, null, indent).replace(/\n/g, indent % 2 ? '\t' : '\n');

test('scanObjectText agrees with JSON.parse on generated objects', () => {
  const idValue = fc.oneof(
    fc.integer(),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.string(),
    fc.constant(null),
  );
  fc.assert(
    fc.property(
      fc.dictionary(fc.string({ unit: 'binary' }), fc.jsonValue({ maxDepth: 6 })),
      idValue,
      fc.nat(4),
      (members, id, indent) => {
        const idToken = typeof id === 'bigint' ? id.toString() : JSON.stringify(id);
        const body = spaced(members, indent);
        const text = body === '{}' ? `{"id":${idToken}}` : `{"id":${idToken},${body.slice(1)}`;
        const value = JSON.parse(text) as Record<string, unknown>;
        const scan = scanObjectText(text, value);
        assert.equal(scan.refused, undefined, text);
        const expected = new Map(Object.keys(members).map((k) => [k, 1]));
        expected.set('id', (expected.get('id') ?? 0) + 1);
        assert.deepEqual(scan.members, expected);
        assert.equal(scan.idNumber, typeof id === 'number' || typeof id === 'bigint' ? idToken : undefined);
      },
    ),
    { numRuns: 2_000 },
  );
});

test('refused exactly where serde_json refuses', () => {
  const nest = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
  for (const levels of [1, SERDE_MAX_DEPTH - 2, SERDE_MAX_DEPTH - 1, SERDE_MAX_DEPTH, 100_000]) {
    const text = `{"a":${nest(levels)}}`;
    const refused = scanObjectText(text, JSON.parse(text)).refused;
    assert.equal(
      refused,
      levels + 1 >= SERDE_MAX_DEPTH ? 'recursion limit exceeded' : undefined,
      `${levels} levels`,
    );
  }
  for (const [number, out] of [
    ['1e308', false],
    ['1.7976931348623157e308', false],
    ['1e309', true],
    ['-1E+400', true],
    ['1e-400', false],
    ['9'.repeat(308), false],
    ['9'.repeat(309), true],
  ] as const) {
    const text = `{"n":[${number}]}`;
    assert.equal(
      scanObjectText(text, JSON.parse(text)).refused,
      out ? 'number out of range' : undefined,
      number,
    );
  }
  for (const [s, lone] of [
    ['\\ud800', true],
    ['\\udc00', true],
    ['x\\ud83d', true],
    ['\\ud83d\\ude00', false],
    ['\\\\ud800', false],
  ] as const) {
    const text = `{"s":"${s}","k":{"\\u0041":1}}`;
    const refused = scanObjectText(text, JSON.parse(text)).refused;
    assert.equal(refused, lone ? 'lone leading surrogate in hex escape' : undefined, s);
  }
  const escapedKey = '{"\\u0069d":-0,"i\\"d":3,"id":5}';
  const scan = scanObjectText(escapedKey, JSON.parse(escapedKey));
  assert.deepEqual(
    scan.members,
    new Map([
      ['id', 2],
      ['i"d', 1],
    ]),
  );
  assert.equal(scan.idNumber, '-0');
});
