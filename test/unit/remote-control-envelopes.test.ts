import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type ClientMessageChunkEnvelope,
  type ServerEnvelope,
  encodePong,
  encodeServerMessage,
  encodeServerMessageChunk,
  parseClientEnvelope,
} from '../../src/remote-control/envelopes.js';
import {
  ClientChunkReassembler,
  MAX_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
  SEGMENT_BYTES,
  serverMessageFrames,
} from '../../src/remote-control/segments.js';

const KEY = { clientId: 'cli_remote_1', streamId: 'stream-1' };

// The client frames of spec B.5, verbatim.
const SPEC_INITIALIZE =
  '{"type":"client_message","client_id":"cli_remote_1","stream_id":"stream-1","seq_id":0,"cursor":"cur_abc123","message":{"id":1,"method":"initialize","params":{"clientInfo":{"name":"remote-phone","title":null,"version":"1.0.0"}}}}';
const SPEC_CHUNK =
  '{"type":"client_message_chunk","client_id":"cli_remote_1","stream_id":"stream-1","seq_id":3,"segment_id":0,"segment_count":3,"message_size_bytes":48,"message_chunk_base64":"eyJpZCI6IDMsIA=="}';
const SPEC_ACK = '{"type":"ack","client_id":"cli_remote_1","stream_id":"stream-1","seq_id":2}';
const SPEC_PING = '{"type":"ping","client_id":"cli_remote_1","stream_id":"stream-1"}';
const SPEC_CLOSED = '{"type":"client_closed","client_id":"cli_remote_1","stream_id":"stream-1"}';

function parsed(text: string) {
  const result = parseClientEnvelope(text);
  assert.ok(result.ok, result.ok ? '' : result.reason);
  return result.envelope;
}

function reason(text: string): string {
  const result = parseClientEnvelope(text);
  assert.equal(result.ok, false, text);
  return result.ok ? '' : result.reason;
}

function chunk(
  fields: Partial<ClientMessageChunkEnvelope> & { message_chunk_base64: string },
): ClientMessageChunkEnvelope {
  return {
    type: 'client_message_chunk',
    client_id: 'c',
    stream_id: 's',
    seq_id: 1,
    segment_id: 0,
    segment_count: 1,
    message_size_bytes: Buffer.from(fields.message_chunk_base64, 'base64').length,
    ...fields,
  };
}

/** The client-side twin of a server chunk frame, as a remote client would send it back. */
function asClientChunk(serverFrame: string): ClientMessageChunkEnvelope {
  const env = JSON.parse(serverFrame) as ServerEnvelope;
  assert.equal(env.type, 'server_message_chunk');
  const e = parsed(JSON.stringify({ ...env, type: 'client_message_chunk' }));
  assert.equal(e.type, 'client_message_chunk');
  return e;
}

test('the spec client frames parse with every field, the message text kept verbatim', () => {
  const init = parsed(SPEC_INITIALIZE);
  assert.equal(init.type, 'client_message');
  assert.equal(init.client_id, 'cli_remote_1');
  assert.equal(init.stream_id, 'stream-1');
  assert.equal(init.cursor, 'cur_abc123');
  if (init.type !== 'client_message') return;
  assert.equal(init.seq_id, 0);
  assert.equal(init.message.method, 'initialize');
  assert.equal(
    init.messageText,
    '{"id":1,"method":"initialize","params":{"clientInfo":{"name":"remote-phone","title":null,"version":"1.0.0"}}}',
  );

  assert.deepEqual(parsed(SPEC_CHUNK), {
    type: 'client_message_chunk',
    client_id: 'cli_remote_1',
    stream_id: 'stream-1',
    seq_id: 3,
    segment_id: 0,
    segment_count: 3,
    message_size_bytes: 48,
    message_chunk_base64: 'eyJpZCI6IDMsIA==',
  });
  assert.deepEqual(parsed(SPEC_ACK), {
    type: 'ack',
    client_id: 'cli_remote_1',
    stream_id: 'stream-1',
    seq_id: 2,
  });
  assert.deepEqual(parsed(SPEC_PING), { type: 'ping', client_id: 'cli_remote_1', stream_id: 'stream-1' });
  assert.deepEqual(parsed(SPEC_CLOSED), {
    type: 'client_closed',
    client_id: 'cli_remote_1',
    stream_id: 'stream-1',
  });
  assert.deepEqual(
    parsed('{"type":"ack","client_id":"c","stream_id":"s","seq_id":4,"segment_id":2,"future":1}'),
    {
      type: 'ack',
      client_id: 'c',
      stream_id: 's',
      seq_id: 4,
      segment_id: 2,
    },
  );
});

test('a message id beyond 2^53 survives: the message text is cut from the frame, not re-serialized', () => {
  const e = parsed(
    '{"type":"client_message","client_id":"c","stream_id":"s","seq_id":1,"message":{"id":9223372036854775807,"method":"x"}}',
  );
  assert.equal(e.type === 'client_message' && e.messageText, '{"id":9223372036854775807,"method":"x"}');
});

test('invalid client frames are refused with a reason naming the field, never quoting the frame', () => {
  const secret = 'rct_secret_token';
  const notJson = reason(`{"type":"ping","client_id":"${secret}"`);
  assert.equal(notJson, 'frame is not valid JSON');
  assert.equal(reason('[1,2]'), 'frame is not a JSON object');
  assert.equal(reason('"ping"'), 'frame is not a JSON object');
  assert.equal(reason('{"client_id":"c","stream_id":"s"}'), 'type is missing or not a string');
  assert.equal(
    reason('{"type":"server_message","client_id":"c","stream_id":"s"}'),
    'unknown envelope type "server_message"',
  );
  assert.equal(reason('{"type":"ping","stream_id":"s"}'), 'ping: client_id must be a non-empty string');
  assert.equal(
    reason('{"type":"ping","client_id":"c","stream_id":""}'),
    'ping: stream_id must be a non-empty string',
  );
  assert.equal(
    reason('{"type":"ping","client_id":7,"stream_id":"s"}'),
    'ping: client_id must be a non-empty string',
  );
  assert.equal(
    reason('{"type":"ping","client_id":"c","stream_id":"s","cursor":1}'),
    'ping: cursor must be a string',
  );
  assert.equal(
    reason('{"type":"ping","client_id":"c","stream_id":"s","seq_id":"1"}'),
    'ping: seq_id must be a non-negative integer',
  );
  assert.equal(
    reason('{"type":"ack","client_id":"c","stream_id":"s","seq_id":-1}'),
    'ack: seq_id must be a non-negative integer',
  );
  assert.equal(
    reason('{"type":"ack","client_id":"c","stream_id":"s","seq_id":1.5}'),
    'ack: seq_id must be a non-negative integer',
  );
  assert.equal(reason('{"type":"ack","client_id":"c","stream_id":"s"}'), 'ack: seq_id is missing');
  assert.equal(
    reason('{"type":"ack","client_id":"c","stream_id":"s","seq_id":1,"segment_id":null}'),
    'ack: segment_id must be a non-negative integer',
  );
  assert.equal(
    reason(`{"type":"client_message","client_id":"c","stream_id":"s","message":{"token":"${secret}"}}`),
    'client_message: seq_id is missing',
  );
  assert.equal(
    reason('{"type":"client_message","client_id":"c","stream_id":"s","seq_id":1,"message":[1]}'),
    'client_message: message must be a JSON object',
  );
  assert.equal(
    reason('{"type":"client_message","client_id":"c","stream_id":"s","seq_id":1,"message":null}'),
    'client_message: message must be a JSON object',
  );
  const chunkBase = '"type":"client_message_chunk","client_id":"c","stream_id":"s","seq_id":1';
  assert.equal(
    reason(`{${chunkBase},"segment_count":1,"message_size_bytes":1,"message_chunk_base64":"QQ=="}`),
    'client_message_chunk: segment_id is missing',
  );
  assert.equal(
    reason(`{${chunkBase},"segment_id":0,"message_size_bytes":1,"message_chunk_base64":"QQ=="}`),
    'client_message_chunk: segment_count is missing',
  );
  assert.equal(
    reason(`{${chunkBase},"segment_id":0,"segment_count":1,"message_chunk_base64":"QQ=="}`),
    'client_message_chunk: message_size_bytes is missing',
  );
  assert.equal(
    reason(`{${chunkBase},"segment_id":0,"segment_count":1,"message_size_bytes":1}`),
    'client_message_chunk: message_chunk_base64 must be a string',
  );
  assert.equal(
    reason(
      `{${chunkBase},"segment_id":0,"segment_count":1.5,"message_size_bytes":1,"message_chunk_base64":"QQ=="}`,
    ),
    'client_message_chunk: segment_count must be a non-negative integer',
  );
});

test('server envelopes are written in the key order of the spec examples', () => {
  assert.equal(
    encodeServerMessage(
      KEY,
      2,
      '{"id":1,"result":{"userAgent":"…","codexHome":"…","platformFamily":"unix","platformOs":"linux"}}',
    ),
    '{"type":"server_message","message":{"id":1,"result":{"userAgent":"…","codexHome":"…","platformFamily":"unix","platformOs":"linux"}},"client_id":"cli_remote_1","stream_id":"stream-1","seq_id":2}',
  );
  assert.equal(
    encodePong(KEY, 1, 'unknown'),
    '{"type":"pong","status":"unknown","client_id":"cli_remote_1","stream_id":"stream-1","seq_id":1}',
  );
  assert.equal(
    encodeServerMessageChunk({ clientId: '…', streamId: '…' }, 7, {
      segmentId: 0,
      segmentCount: 2,
      messageSizeBytes: 200000,
      base64: '…',
    }),
    '{"type":"server_message_chunk","segment_id":0,"segment_count":2,"message_size_bytes":200000,"message_chunk_base64":"…","client_id":"…","stream_id":"…","seq_id":7}',
  );
  const odd = { clientId: 'a"b\\c', streamId: 'line\nbreak' };
  const env = JSON.parse(encodePong(odd, 3, 'active')) as ServerEnvelope;
  assert.deepEqual(env, {
    type: 'pong',
    status: 'active',
    client_id: 'a"b\\c',
    stream_id: 'line\nbreak',
    seq_id: 3,
  });
});

test('a server message goes whole up to a 150 KiB envelope, in chunks one byte above it', () => {
  const envelopeFor = (pad: number) => `{"p":"${'x'.repeat(pad)}"}`;
  const overhead = Buffer.byteLength(encodeServerMessage(KEY, 5, envelopeFor(0)));
  const atLimit = serverMessageFrames(KEY, 5, envelopeFor(MAX_FRAME_BYTES - overhead));
  assert.ok(atLimit.ok);
  assert.equal(atLimit.frames.length, 1);
  assert.equal(atLimit.frames[0]!.bytes, MAX_FRAME_BYTES);
  assert.equal(atLimit.frames[0]!.segmentId, undefined);
  const above = serverMessageFrames(KEY, 5, envelopeFor(MAX_FRAME_BYTES - overhead + 1));
  assert.ok(above.ok);
  assert.equal(above.frames.length, 2);
  assert.deepEqual(
    above.frames.map((f) => f.segmentId),
    [0, 1],
  );
});

test('chunks: ≤ 100 KiB of raw bytes each, one seq_id, numbered 0..n-1; multi-byte characters split and rejoined', () => {
  // 3-byte characters after 6 ASCII bytes: the first 100 KiB slice ends inside a character.
  const text = `{"s":"${'€'.repeat(150_000)}😀${'é'.repeat(10_001)}"}`;
  const total = Buffer.byteLength(text);
  const result = serverMessageFrames(KEY, 9, text);
  assert.ok(result.ok);
  const n = Math.ceil(total / SEGMENT_BYTES);
  assert.equal(result.frames.length, n);
  const raw: Buffer[] = [];
  result.frames.forEach((f, i) => {
    const env = JSON.parse(f.frame) as ServerEnvelope;
    assert.equal(env.type, 'server_message_chunk');
    if (env.type !== 'server_message_chunk') return;
    assert.deepEqual(
      [env.segment_id, env.segment_count, env.message_size_bytes, env.seq_id, env.client_id, env.stream_id],
      [i, n, total, 9, 'cli_remote_1', 'stream-1'],
    );
    assert.equal(f.segmentId, i);
    assert.equal(f.bytes, Buffer.byteLength(f.frame));
    assert.ok(f.bytes <= MAX_FRAME_BYTES, `frame ${i} is ${f.bytes} bytes`);
    const bytes = Buffer.from(env.message_chunk_base64, 'base64');
    assert.equal(env.message_chunk_base64, bytes.toString('base64'));
    assert.ok(bytes.length <= SEGMENT_BYTES);
    raw.push(bytes);
  });
  // The first boundary really cuts a character in two.
  assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(raw[0]));
  assert.equal(Buffer.concat(raw).toString('utf8'), text);

  const reassembler = new ClientChunkReassembler(4);
  const outcomes = result.frames.map((f) => reassembler.accept(asClientChunk(f.frame), f.bytes, 0));
  assert.deepEqual(
    outcomes.slice(0, -1).map((o) => o.kind),
    Array<string>(n - 1).fill('pending'),
  );
  assert.deepEqual(outcomes.at(-1), { kind: 'complete', text });
});

test('an envelope pushed over the limit by long ids still goes as two chunks', () => {
  const key = { clientId: 'c'.repeat(MAX_FRAME_BYTES), streamId: 's' };
  const result = serverMessageFrames(key, 1, '{"id":1,"result":{}}');
  assert.ok(result.ok);
  assert.equal(result.frames.length, 2);
});

test('an outbound message above 100 MiB cannot be segmented', () => {
  const result = serverMessageFrames(KEY, 1, `"${'x'.repeat(MAX_MESSAGE_BYTES - 1)}"`);
  assert.equal(result.ok, false);
  assert.match(result.ok ? '' : result.reason, /104857601 bytes is above the 104857600-byte limit/);
});

test('the spec chunk example: three in-order segments give the 48-byte message', () => {
  const message = '{"id": 3, "method": "thread/list", "params": {}}';
  const bytes = Buffer.from(message);
  assert.equal(bytes.length, 48);
  const first = parsed(SPEC_CHUNK) as ClientMessageChunkEnvelope;
  assert.equal(Buffer.from(first.message_chunk_base64, 'base64').toString(), '{"id": 3, ');
  const next = (segment_id: number, from: number, to: number) => ({
    ...first,
    segment_id,
    message_chunk_base64: bytes.subarray(from, to).toString('base64'),
  });
  const r = new ClientChunkReassembler(4);
  assert.deepEqual(r.accept(first, SPEC_CHUNK.length, 0), { kind: 'pending' });
  assert.deepEqual(r.accept(next(1, 10, 30), 200, 0), { kind: 'pending' });
  assert.deepEqual(r.accept(next(2, 30, 48), 200, 0), { kind: 'complete', text: message });
  // The same message sent again (a backend replay) is not delivered twice.
  assert.deepEqual(r.accept(first, SPEC_CHUNK.length, 0), {
    kind: 'ignored',
    reason: 'seq 3 was already delivered',
  });
});

test('each fault drops the assembly with its reason; the rest of a dropped message is ignored quietly', () => {
  const ab = Buffer.from('ab').toString('base64');
  const two = (fields: Partial<ClientMessageChunkEnvelope>) =>
    chunk({ segment_count: 2, message_size_bytes: 4, message_chunk_base64: ab, ...fields });
  const cases: [string, (r: ClientChunkReassembler) => ReturnType<ClientChunkReassembler['accept']>][] = [
    [
      'chunk frame of 153601 bytes is above 153600',
      (r) => r.accept(two({ segment_id: 1 }), MAX_FRAME_BYTES + 1, 0),
    ],
    ['out-of-order segment 2 of seq 1 (expected 1)', (r) => r.accept(two({ segment_id: 2 }), 100, 0)],
    [
      'segment 1 of seq 2 arrived while seq 1 was incomplete',
      (r) => r.accept(two({ seq_id: 2, segment_id: 1 }), 100, 0),
    ],
    [
      'segment 1 of seq 1 changes segment_count or message_size_bytes',
      (r) => r.accept(two({ segment_id: 1, segment_count: 3 }), 100, 0),
    ],
    [
      'segment 1 of seq 1 changes segment_count or message_size_bytes',
      (r) => r.accept(two({ segment_id: 1, message_size_bytes: 5 }), 100, 0),
    ],
    [
      'segment 1 of seq 1 is not valid base64',
      (r) => r.accept(two({ segment_id: 1, message_chunk_base64: '@@@@' }), 100, 0),
    ],
    [
      'segment 1 of seq 1 is not valid base64',
      (r) => r.accept(two({ segment_id: 1, message_chunk_base64: 'YWJ' }), 100, 0),
    ],
    [
      'seq 1 carries more than message_size_bytes 4',
      (r) =>
        r.accept(two({ segment_id: 1, message_chunk_base64: Buffer.from('abc').toString('base64') }), 100, 0),
    ],
    [
      'seq 1 carried 3 of 4 bytes',
      (r) =>
        r.accept(two({ segment_id: 1, message_chunk_base64: Buffer.from('a').toString('base64') }), 100, 0),
    ],
    [
      'seq 1 is not valid UTF-8',
      (r) =>
        r.accept(
          two({ segment_id: 1, message_chunk_base64: Buffer.from([0xff, 0xfe]).toString('base64') }),
          100,
          0,
        ),
    ],
  ];
  for (const [expected, second] of cases) {
    const r = new ClientChunkReassembler(4);
    // Segment 0 is fine (except where the case is about a first segment): the assembly is under way.
    assert.deepEqual(r.accept(two({}), 100, 0), { kind: 'pending' });
    const outcome = second(r);
    assert.deepEqual(outcome, { kind: 'dropped', reason: expected });
    // Nothing is left half-built: a fresh message on the stream goes through.
    const fresh = chunk({ seq_id: 9, message_chunk_base64: Buffer.from('{}').toString('base64') });
    assert.deepEqual(r.accept(fresh, 100, 0), { kind: 'complete', text: '{}' });
  }

  const r = new ClientChunkReassembler(4);
  assert.equal(r.accept(two({ segment_id: 1 }), 100, 0).kind, 'dropped');
  assert.deepEqual(r.accept(two({ segment_id: 1 }), 100, 0), {
    kind: 'ignored',
    reason: 'seq 1 was dropped earlier',
  });

  const header = new ClientChunkReassembler(4);
  assert.deepEqual(header.accept(chunk({ segment_count: 1025, message_chunk_base64: ab }), 100, 0), {
    kind: 'dropped',
    reason: 'segment_count 1025 is outside 1..1024',
  });
  assert.deepEqual(header.accept(chunk({ seq_id: 2, segment_count: 0, message_chunk_base64: ab }), 100, 0), {
    kind: 'dropped',
    reason: 'segment_count 0 is outside 1..1024',
  });
  assert.deepEqual(
    header.accept(
      chunk({
        seq_id: 3,
        segment_count: 2,
        message_size_bytes: MAX_MESSAGE_BYTES + 1,
        message_chunk_base64: ab,
      }),
      100,
      0,
    ),
    { kind: 'dropped', reason: 'message_size_bytes 104857601 is above 104857600' },
  );
  assert.deepEqual(
    header.accept(
      chunk({ seq_id: 4, segment_count: 1, message_chunk_base64: '', message_size_bytes: 0 }),
      100,
      0,
    ),
    {
      kind: 'complete',
      text: '',
    },
  );
});

test('a new first segment starts the message over (a resend after reconnect), reporting the abandoned one', () => {
  const bytes = Buffer.from('{"a":1}');
  const part = (segment_id: number, from: number, to: number) =>
    chunk({
      seq_id: 5,
      segment_id,
      segment_count: 2,
      message_size_bytes: 7,
      message_chunk_base64: bytes.subarray(from, to).toString('base64'),
    });
  const r = new ClientChunkReassembler(4);
  assert.deepEqual(r.accept(part(0, 0, 3), 100, 0), { kind: 'pending' });
  assert.deepEqual(r.accept(part(0, 0, 3), 100, 0), {
    kind: 'pending',
    abandoned: 'seq 5 was incomplete (1/2) when a new first segment arrived',
  });
  assert.deepEqual(r.accept(part(1, 3, 7), 100, 0), { kind: 'complete', text: '{"a":1}' });
});

test('assemblies are bounded in number, forgotten per stream and when idle', () => {
  const first = (client_id: string) =>
    chunk({
      client_id,
      segment_count: 2,
      message_size_bytes: 4,
      message_chunk_base64: Buffer.from('ab').toString('base64'),
    });
  const r = new ClientChunkReassembler(2);
  assert.equal(r.accept(first('a'), 100, 0).kind, 'pending');
  assert.equal(r.accept(first('b'), 100, 10).kind, 'pending');
  assert.deepEqual(r.accept(first('c'), 100, 20), {
    kind: 'dropped',
    reason: '2 messages are already being reassembled',
  });
  r.forget('a', 's');
  assert.equal(r.accept(first('c'), 100, 30).kind, 'pending');
  assert.equal(r.forgetIdle(10), 1); // b, last touched at 10
  assert.equal(r.size, 1);
  assert.equal(r.accept(first('d'), 100, 40).kind, 'pending');
  assert.equal(r.forgetIdle(Number.POSITIVE_INFINITY), 2);
  assert.equal(r.size, 0);
});
