import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SseParser, type SseEvent } from '../../src/upstream/sse.js';

/** Feeds `bytes` in pieces cut at `cuts` (offsets, any order) and returns every event. */
function parseInPieces(bytes: Uint8Array, cuts: number[]): SseEvent[] {
  const parser = new SseParser();
  const offsets = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const events: SseEvent[] = [];
  let start = 0;
  for (const end of [...offsets, bytes.length]) {
    events.push(...parser.push(bytes.subarray(start, end)));
    start = end;
  }
  events.push(...parser.end());
  return events;
}

const encode = (s: string) => new TextEncoder().encode(s);

test('events, names, multi-line data, comments and ids', () => {
  const stream =
    ': keep-alive\n' +
    'event: response.created\ndata: {"a":1}\n\n' +
    'data: line one\ndata: line two\nid: 7\n\n' +
    'data\n\n' + // a field without a colon: empty data
    'retry: 1500\ndata:no space\n\n' +
    'event: ignored\n\n'; // no data: not dispatched
  assert.deepEqual(parseInPieces(encode(stream), []), [
    { event: 'response.created', data: '{"a":1}' },
    { event: 'message', data: 'line one\nline two', id: '7' },
    { event: 'message', data: '', id: '7' },
    { event: 'message', data: 'no space', id: '7', retry: 1500 },
  ]);
});

test('CRLF, lone CR and LF line ends are all line ends; a CRLF split across chunks is one', () => {
  const stream = 'data: a\r\n\r\ndata: b\r\rdata: c\n\n';
  const expected = [
    { event: 'message', data: 'a' },
    { event: 'message', data: 'b' },
    { event: 'message', data: 'c' },
  ];
  assert.deepEqual(parseInPieces(encode(stream), []), expected);
  // Cut between every CR and LF.
  const bytes = encode(stream);
  const cuts = [...bytes.keys()].filter((i) => bytes[i - 1] === 0x0d);
  assert.deepEqual(parseInPieces(bytes, cuts), expected);
});

test('an unfinished event at the end of the stream is dropped; a leading BOM is skipped', () => {
  assert.deepEqual(parseInPieces(encode('\uFEFFdata: x\n\ndata: half'), []), [
    { event: 'message', data: 'x' },
  ]);
});

// Arbitrary events written with arbitrary line ends, comments and UTF-8 text, cut anywhere.
const text = fc.string({
  unit: fc.constantFrom('a', 'é', '€', '😀', ' ', ':', '{', '"', 'z'),
  maxLength: 12,
});
const eventArb = fc.record({
  event: fc.option(fc.stringMatching(/^[a-z.]{1,12}$/), { nil: undefined }),
  lines: fc.array(text, { minLength: 1, maxLength: 3 }),
  comment: fc.boolean(),
});
const lineEnd = fc.constantFrom('\n', '\r\n', '\r');

test('property: random splits (inside UTF-8 sequences and CRLFs included) never change the events', () => {
  fc.assert(
    fc.property(
      fc.array(eventArb, { maxLength: 6 }),
      lineEnd,
      fc.array(fc.nat(), { maxLength: 20 }),
      (events, eol, cuts) => {
        let stream = '';
        for (const e of events) {
          if (e.comment) stream += `: note${eol}`;
          if (e.event) stream += `event: ${e.event}${eol}`;
          for (const line of e.lines) stream += `data: ${line}${eol}`;
          stream += eol;
        }
        const bytes = encode(stream);
        const expected = events.map((e) => ({ event: e.event ?? 'message', data: e.lines.join('\n') }));
        assert.deepEqual(parseInPieces(bytes, []), expected);
        assert.deepEqual(parseInPieces(bytes, cuts), expected);
        // One byte at a time, the hardest split of all.
        assert.deepEqual(
          parseInPieces(
            bytes,
            [...bytes.keys()].map((i) => i),
          ),
          expected,
        );
      },
    ),
    { numRuns: 300 },
  );
});
