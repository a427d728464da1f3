/**
 * The serde_json-style struct decoder (serde-json.ts): values, unknown members and `Option`
 * fields, and serde_json's error texts with the line and column it reports them at.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeStruct, type SerdeStruct } from '../../src/remote-control/serde-json.js';

const SHAPE: SerdeStruct = {
  name: 'Shape',
  fields: { id: 'string', note: 'optionalString', claimed: 'bool' },
};

function decodeError(text: string, shape: SerdeStruct = SHAPE): string {
  const result = decodeStruct(Buffer.from(text, 'utf8'), shape);
  assert.equal(result.ok, false, text);
  return result.ok ? '' : result.error;
}

test('decoder: values, unknown members skipped, Option fields', () => {
  assert.deepEqual(
    decodeStruct(Buffer.from('{"id":"a\\u00e9\\ud83d\\ude00\\n","claimed":true,"x":[1,{"y":null}]}'), SHAPE),
    {
      ok: true,
      value: { id: 'aé😀\n', claimed: true, note: null },
    },
  );
  assert.deepEqual(decodeStruct(Buffer.from(' {"note":"n","claimed":false,"id":"é"} \n'), SHAPE), {
    ok: true,
    value: { note: 'n', claimed: false, id: 'é' },
  });
});

test('decoder: serde_json texts and positions', () => {
  // Positions are 1-based columns of the byte where serde_json stopped, counted in bytes.
  assert.equal(decodeError('{"id":"x"}'), 'missing field `claimed` at line 1 column 10');
  assert.equal(decodeError('{\n  "id": "é"\n}'), 'missing field `claimed` at line 3 column 1');
  assert.equal(
    decodeError('{"id":"é","claimed":1.50}'),
    'invalid type: floating point `1.5`, expected a boolean at line 1 column 25',
  );
  assert.equal(
    decodeError('{"id":-0}'),
    'invalid type: floating point `-0.0`, expected a string at line 1 column 8',
  );
  assert.equal(
    decodeError('{"id":1e21}'),
    'invalid type: floating point `1e21`, expected a string at line 1 column 10',
  );
  assert.equal(
    decodeError('{"id":-12}'),
    'invalid type: integer `-12`, expected a string at line 1 column 9',
  );
  assert.equal(
    decodeError('{"id":true}'),
    'invalid type: boolean `true`, expected a string at line 1 column 10',
  );
  assert.equal(decodeError('{"id":null}'), 'invalid type: null, expected a string at line 1 column 10');
  assert.equal(decodeError('{"id":[1]}'), 'invalid type: sequence, expected a string at line 1 column 6');
  assert.equal(decodeError('{"id":{}}'), 'invalid type: map, expected a string at line 1 column 6');
  assert.equal(
    decodeError('{"claimed":"yes"}'),
    'invalid type: string "yes", expected a boolean at line 1 column 16',
  );
  assert.equal(decodeError('{"id":"a","id":"b"}'), 'duplicate field `id` at line 1 column 14');
  assert.equal(decodeError('{"id":"a","claimed":true} x'), 'trailing characters at line 1 column 27');
  assert.equal(decodeError('{"id":"a",}'), 'trailing comma at line 1 column 11');
  assert.equal(decodeError('{"id":"a" "x":1}'), 'expected `,` or `}` at line 1 column 11');
  assert.equal(decodeError('{"id" "a"}'), 'expected `:` at line 1 column 7');
  assert.equal(decodeError('{id:1}'), 'key must be a string at line 1 column 2');
  assert.equal(decodeError('{"id":"a'), 'EOF while parsing a string at line 1 column 8');
  assert.equal(decodeError('{"id":"a"'), 'EOF while parsing an object at line 1 column 9');
  assert.equal(decodeError('{"x":tru}'), 'expected ident at line 1 column 9');
  assert.equal(decodeError('{"x":[1,]}'), 'expected value at line 1 column 9');
  assert.equal(decodeError('{"x":01}'), 'invalid number at line 1 column 7');
  assert.equal(decodeError('{"x":"\\q"}'), 'invalid escape at line 1 column 8');
  assert.equal(
    decodeError('{"x":"a\tb"}'),
    'control character (\\u0000-\\u001F) found while parsing a string at line 1 column 8',
  );
  assert.equal(decodeError('nope'), 'expected ident at line 1 column 2');
});
