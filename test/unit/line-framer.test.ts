import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineFramer } from '../../src/transport/line-framer.js';

function collect(max = 1024) {
  const lines: string[] = [];
  const dropped: [string, number][] = [];
  const framer = new LineFramer(max, { line: (l) => lines.push(l), dropped: (r, b) => dropped.push([r, b]) });
  return { framer, lines, dropped };
}

const sample =
  '{"id":1,"method":"initialize","params":{"clientInfo":{"name":"é ✓ 😀","version":"1"}}}\n{"id":2}\r\n';

test('a stream split at every byte offset yields the same lines', () => {
  const bytes = Buffer.from(sample);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { framer, lines } = collect();
    framer.push(bytes.subarray(0, cut));
    framer.push(bytes.subarray(cut));
    assert.deepEqual(lines, sample.trimEnd().split(/\r?\n/), `cut at ${cut}`);
  }
  const { framer, lines } = collect();
  for (const b of bytes) framer.push(Buffer.from([b]));
  assert.deepEqual(lines.length, 2);
});

test('many lines in one chunk, CRLF, empty lines, and a last line without newline', () => {
  const { framer, lines } = collect();
  framer.push(Buffer.from('a\r\n\nb\n\r\nc'));
  framer.end();
  assert.deepEqual(lines, ['a', 'b', 'c']);
});

test('an oversized line is dropped without being kept whole, and the next line survives', () => {
  const { framer, lines, dropped } = collect(1024);
  const chunk = Buffer.alloc(300, 'x');
  for (let i = 0; i < 40; i++) framer.push(chunk); // 12 000 bytes of one line, in pieces
  // The framer only ever holds up to maxLineBytes; after that it counts without keeping.
  assert.ok((framer as unknown as { pieces: Buffer[] }).pieces.length === 0);
  framer.push(Buffer.from('tail\n{"ok":1}\n'));
  assert.deepEqual(dropped, [['oversized', 12_004]]);
  assert.deepEqual(lines, ['{"ok":1}']);
});

test('a line of exactly maxLineBytes is accepted; one byte more is not', () => {
  const { framer, lines, dropped } = collect(1024);
  framer.push(Buffer.from('y'.repeat(1024) + '\n' + 'z'.repeat(1025) + '\n'));
  assert.equal(lines.length, 1);
  assert.deepEqual(dropped, [['oversized', 1025]]);
});

test('invalid UTF-8 drops the line, including when a multi-byte character is split across chunks', () => {
  const { framer, lines, dropped } = collect();
  framer.push(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
  const snowman = Buffer.from('"☃"\n');
  framer.push(snowman.subarray(0, 2));
  framer.push(snowman.subarray(2));
  assert.deepEqual(dropped, [['invalid-utf8', 4]]);
  assert.deepEqual(lines, ['"☃"']);
});
