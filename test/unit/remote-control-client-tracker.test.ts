import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import {
  ClientTracker,
  type ClientTrackerOptions,
  REMOTE_CLIENT_IDLE_TIMEOUT_MS,
  REMOTE_CLIENT_SWEEP_INTERVAL_MS,
  type RemoteControlTransport,
  type TrackerTimers,
} from '../../src/remote-control/client-tracker.js';
import type { ServerEnvelope } from '../../src/remote-control/envelopes.js';
import type { Transport } from '../../src/transport/transport.js';
import { silentLogger } from '../../src/util/logger.js';

const C = 'cli_remote_1';
const S = 'stream-1';
const INIT_MESSAGE =
  '{"id":1,"method":"initialize","params":{"clientInfo":{"name":"remote-phone","title":null,"version":"1.0.0"}}}';
const SPEC_INITIALIZE = `{"type":"client_message","client_id":"cli_remote_1","stream_id":"stream-1","seq_id":0,"cursor":"cur_abc123","message":${INIT_MESSAGE}}`;

interface Connection {
  transport: RemoteControlTransport;
  messages: string[];
  closed: number;
}

/** A fake broker (records transports, sinks count what they get), a fake socket and a hand-driven clock. */
function harness(overrides: Partial<ClientTrackerOptions> = {}) {
  const connections: Connection[] = [];
  const frames: string[] = [];
  const intervals = new Map<object, { callback: () => void; ms: number }>();
  let now = 1_000_000;
  const timers: TrackerTimers = {
    now: () => now,
    setInterval: (callback, ms) => {
      const handle = {};
      intervals.set(handle, { callback, ms });
      return handle;
    },
    clearInterval: (handle) => void intervals.delete(handle as object),
  };
  const tracker = new ClientTracker({
    connect: (transport: Transport) => {
      const c: Connection = { transport: transport as RemoteControlTransport, messages: [], closed: 0 };
      connections.push(c);
      transport.start({ message: (text) => c.messages.push(text), closed: () => c.closed++ });
    },
    log: silentLogger(),
    maxClients: 8,
    maxUnackedBytes: 1024 * 1024,
    idleTimeoutMs: REMOTE_CLIENT_IDLE_TIMEOUT_MS,
    sweepIntervalMs: REMOTE_CLIENT_SWEEP_INTERVAL_MS,
    timers,
    ...overrides,
  });
  tracker.attach((frame) => frames.push(frame));
  return {
    tracker,
    connections,
    frames,
    intervals,
    /** Moves the clock and fires the sweep as often as its interval elapsed. */
    advance(ms: number) {
      const step = REMOTE_CLIENT_SWEEP_INTERVAL_MS;
      for (let left = ms; left > 0; left -= step) {
        now += Math.min(step, left);
        if (left >= step) for (const i of [...intervals.values()]) i.callback();
      }
    },
    /** Parsed frames written since the last call. */
    take(): ServerEnvelope[] {
      return frames.splice(0).map((f) => JSON.parse(f) as ServerEnvelope);
    },
  };
}

function clientMessage(seq: number, message: object | string, stream = S, client = C): string {
  const text = typeof message === 'string' ? message : JSON.stringify(message);
  return `{"type":"client_message","client_id":${JSON.stringify(client)},"stream_id":${JSON.stringify(stream)},"seq_id":${seq},"message":${text}}`;
}
const initialize = (seq: number, stream = S, id: number | string = 1) =>
  clientMessage(
    seq,
    { id, method: 'initialize', params: { clientInfo: { name: 'remote-phone', version: '1' } } },
    stream,
  );
const request = (seq: number, id: number, stream = S) =>
  clientMessage(seq, { id, method: 'thread/list' }, stream);
const ping = (stream = S) => JSON.stringify({ type: 'ping', client_id: C, stream_id: stream });
const ack = (seq: number, segment?: number, stream = S) =>
  JSON.stringify({
    type: 'ack',
    client_id: C,
    stream_id: stream,
    seq_id: seq,
    ...(segment === undefined ? {} : { segment_id: segment }),
  });
const seqs = (envs: ServerEnvelope[]) => envs.map((e) => [e.type, e.seq_id]);

test('a stream opens with an initialize request: a remote-control transport gets the message text', () => {
  const h = harness();
  h.tracker.receive(SPEC_INITIALIZE);
  assert.equal(h.connections.length, 1);
  const [c] = h.connections;
  assert.equal(c!.transport.kind, 'remote-control');
  assert.equal(c!.transport.clientId, C);
  assert.equal(c!.transport.streamId, S);
  assert.deepEqual(c!.messages, [INIT_MESSAGE]);
  assert.equal(h.tracker.size, 1);
  assert.equal(h.tracker.cursor, 'cur_abc123');
  assert.deepEqual(h.frames, []);
});

test('messages for a stream that never opened are dropped; a notification named initialize opens nothing', () => {
  const h = harness();
  h.tracker.receive(request(1, 5));
  h.tracker.receive(clientMessage(2, { method: 'initialize' }));
  h.tracker.receive(clientMessage(3, { id: 1, result: {} }));
  h.tracker.receive(ack(1));
  assert.equal(h.connections.length, 0);
  assert.equal(h.tracker.size, 0);
  assert.deepEqual(h.frames, []);
});

test('inbound seq_ids only move forward: repeats and older ones are ignored', () => {
  const h = harness();
  h.tracker.receive(initialize(0));
  for (const seq of [1, 2, 2, 1, 5, 3, 5, 6]) h.tracker.receive(request(seq, 100 + seq));
  const ids = h.connections[0]!.messages.slice(1).map((m) => (JSON.parse(m) as { id: number }).id);
  assert.deepEqual(ids, [101, 102, 105, 106]);
});

test('a repeated initialize restarts the stream: the old connection closes, a new one opens, numbering goes on', () => {
  const h = harness();
  h.tracker.receive(initialize(0));
  h.tracker.receive(request(4, 7));
  const old = h.connections[0]!;
  old.transport.send('{"id":1,"result":{}}');
  // The restart may come with a lower seq_id: initialize is exempt from the ordering rule.
  h.tracker.receive(initialize(0, S, 'again'));
  assert.equal(old.closed, 1);
  assert.equal(h.connections.length, 2);
  const fresh = h.connections[1]!;
  assert.equal(fresh.closed, 0);
  assert.equal((JSON.parse(fresh.messages[0]!) as { id: string }).id, 'again');
  assert.equal(h.tracker.size, 1);
  // Late output of the old connection goes nowhere; the new one's continues the stream's numbering.
  old.transport.send('{"id":2,"result":{}}');
  fresh.transport.send('{"id":"again","result":{}}');
  assert.deepEqual(seqs(h.take()), [
    ['server_message', 1],
    ['server_message', 2],
  ]);
  // After the restart the stream accepts seq 1 again.
  h.tracker.receive(request(1, 8));
  assert.equal(fresh.messages.length, 2);
  // The replaced connection's replay buffer went with it.
  h.tracker.detach();
  h.tracker.attach((f) => h.frames.push(f));
  assert.deepEqual(seqs(h.take()), [['server_message', 2]]);
});

test('pongs: unknown before initialize, active after; one outbound counter per stream from 1, shared with messages', () => {
  const h = harness();
  h.tracker.receive(ping());
  assert.deepEqual(h.frames, [
    '{"type":"pong","status":"unknown","client_id":"cli_remote_1","stream_id":"stream-1","seq_id":1}',
  ]);
  h.frames.length = 0;
  h.tracker.receive(SPEC_INITIALIZE);
  h.connections[0]!.transport.send('{"id":1,"result":{"platformOs":"linux"}}');
  assert.deepEqual(h.frames, [
    '{"type":"server_message","message":{"id":1,"result":{"platformOs":"linux"}},"client_id":"cli_remote_1","stream_id":"stream-1","seq_id":2}',
  ]);
  h.frames.length = 0;
  h.tracker.receive(ping());
  h.connections[0]!.transport.send('{"method":"x","params":{}}');
  assert.deepEqual(
    h.take().map((e) => [e.type, e.type === 'pong' ? e.status : '', e.seq_id]),
    [
      ['pong', 'active', 3],
      ['server_message', '', 4],
    ],
  );
  // Another stream counts on its own, from 1.
  h.tracker.receive(initialize(0, 'stream-2'));
  h.connections[1]!.transport.send('{"id":1,"result":{}}');
  h.tracker.receive(ping('stream-2'));
  assert.deepEqual(
    h.take().map((e) => [e.stream_id, e.seq_id]),
    [
      ['stream-2', 1],
      ['stream-2', 2],
    ],
  );
});

test('acks release what they cover; the rest is re-sent after a reconnect with its original seq_id', () => {
  const h = harness();
  h.tracker.receive(initialize(0));
  const t = h.connections[0]!.transport;
  h.tracker.receive(ping()); // pong 1: never kept
  for (let i = 1; i <= 3; i++) t.send(`{"id":${i},"result":{}}`);
  const sent = h.frames.splice(0);
  assert.equal(sent.length, 4);
  h.tracker.receive(ack(2));
  h.tracker.detach();
  t.send('{"id":4,"result":{}}'); // queued while detached
  assert.deepEqual(h.frames, []);
  h.tracker.attach((f) => h.frames.push(f));
  assert.deepEqual(h.frames, [
    sent[2],
    sent[3],
    '{"type":"server_message","message":{"id":4,"result":{}},"client_id":"cli_remote_1","stream_id":"stream-1","seq_id":5}',
  ]);
  h.frames.length = 0;
  h.tracker.receive(ack(5));
  h.tracker.detach();
  h.tracker.attach((f) => h.frames.push(f));
  assert.deepEqual(h.frames, []);
  // An ack for a stream that is not open changes nothing and answers nothing.
  h.tracker.receive(ack(9, undefined, 'nope'));
  assert.deepEqual(h.frames, []);
});

test('a large outbound message goes in chunks; an ack with segment_id releases those chunks only', () => {
  const h = harness({ maxUnackedBytes: 10 * 1024 * 1024 });
  h.tracker.receive(initialize(0));
  const t = h.connections[0]!.transport;
  const big = `{"id":1,"result":{"blob":"${'z'.repeat(350 * 1024)}"}}`;
  t.send(big);
  t.send('{"id":2,"result":{}}');
  const chunks = h.take();
  assert.deepEqual(
    chunks.map((e) => [e.type, e.seq_id, e.type === 'server_message_chunk' ? e.segment_id : -1]),
    [
      ['server_message_chunk', 1, 0],
      ['server_message_chunk', 1, 1],
      ['server_message_chunk', 1, 2],
      ['server_message_chunk', 1, 3],
      ['server_message', 2, -1],
    ],
  );
  h.tracker.receive(ack(1, 1));
  h.tracker.detach();
  h.tracker.attach((f) => h.frames.push(f));
  assert.deepEqual(
    h.take().map((e) => [e.seq_id, e.type === 'server_message_chunk' ? e.segment_id : -1]),
    [
      [1, 2],
      [1, 3],
      [2, -1],
    ],
  );
});

test('client_closed: the connection sees closed() once and the stream is forgotten', () => {
  const h = harness();
  h.tracker.receive(initialize(0));
  const c = h.connections[0]!;
  c.transport.send('{"id":1,"result":{}}');
  h.frames.length = 0;
  h.tracker.receive(JSON.stringify({ type: 'client_closed', client_id: C, stream_id: S }));
  assert.equal(c.closed, 1);
  assert.equal(h.tracker.size, 0);
  h.tracker.receive(request(5, 5));
  c.transport.send('{"id":2,"result":{}}');
  h.tracker.receive(JSON.stringify({ type: 'client_closed', client_id: C, stream_id: S }));
  assert.equal(c.messages.length, 1);
  assert.equal(c.closed, 1);
  // Nothing of the old stream is replayed; a ping now hears `unknown`, numbered after what was sent.
  h.tracker.detach();
  h.tracker.attach((f) => h.frames.push(f));
  h.tracker.receive(ping());
  assert.deepEqual(
    h.take().map((e) => [e.type, e.type === 'pong' ? e.status : '', e.seq_id]),
    [['pong', 'unknown', 2]],
  );
});

test('transport.close() by the broker forgets the stream; the connection hears closed() once', async () => {
  const h = harness();
  h.tracker.receive(initialize(0));
  const c = h.connections[0]!;
  await c.transport.close();
  await c.transport.close();
  assert.equal(c.closed, 1);
  assert.equal(h.tracker.size, 0);
  h.tracker.receive(request(1, 2));
  assert.equal(c.messages.length, 1);
});

test('past maxClients an initialize is answered with -32001 and opens nothing; a restart is still allowed', () => {
  const h = harness({ maxClients: 1 });
  h.tracker.receive(initialize(0));
  h.tracker.receive(initialize(0, 'stream-2', 42));
  assert.equal(h.connections.length, 1);
  assert.equal(h.tracker.size, 1);
  assert.deepEqual(h.frames, [
    '{"type":"server_message","message":{"error":{"code":-32001,"message":"Server overloaded; retry later."},"id":42},"client_id":"cli_remote_1","stream_id":"stream-2","seq_id":1}',
  ]);
  h.tracker.receive(initialize(3));
  assert.equal(h.connections.length, 2);
  assert.equal(h.connections[0]!.closed, 1);
  assert.equal(h.tracker.size, 1);
});

test('unacknowledged output beyond maxUnackedBytes closes the stream, whether attached or not', () => {
  const one = '{"id":1,"result":{"pad":"' + 'p'.repeat(200) + '"}}';
  const frameBytes = Buffer.byteLength(
    `{"type":"server_message","message":${one},"client_id":"${C}","stream_id":"${S}","seq_id":1}`,
  );
  const h = harness({ maxUnackedBytes: 3 * frameBytes });
  h.tracker.receive(initialize(0));
  const c = h.connections[0]!;
  for (let i = 0; i < 3; i++) c.transport.send(one);
  assert.equal(h.frames.length, 3);
  assert.equal(c.closed, 0);
  h.tracker.receive(ack(1)); // frees one frame's worth
  h.tracker.detach();
  c.transport.send(one); // queued: three frames kept, at the limit
  assert.equal(c.closed, 0);
  c.transport.send(one);
  assert.equal(c.closed, 1);
  assert.equal(h.tracker.size, 0);
  h.tracker.attach((f) => h.frames.push(f));
  assert.equal(h.frames.length, 3); // nothing of a closed stream is re-sent
});

test('a stream idle for the timeout is closed by the sweep; pings and messages keep it alive', () => {
  const h = harness();
  assert.equal(h.intervals.size, 0);
  h.tracker.receive(initialize(0));
  assert.deepEqual(
    [...h.intervals.values()].map((i) => i.ms),
    [REMOTE_CLIENT_SWEEP_INTERVAL_MS],
  );
  h.tracker.receive(initialize(0, 'stream-2'));
  const [a, b] = h.connections;
  h.advance(9 * 60_000);
  h.tracker.receive(ping());
  h.advance(60_000);
  assert.equal(a!.closed, 0);
  assert.equal(b!.closed, 1, 'stream-2 was silent for 10 minutes');
  h.advance(8 * 60_000);
  h.tracker.receive(request(1, 2));
  h.advance(9 * 60_000);
  assert.equal(a!.closed, 0);
  h.advance(60_000);
  assert.equal(a!.closed, 1);
  assert.equal(h.tracker.size, 0);
  // Once nothing is left to sweep (remembered counters expire too), the interval stops.
  h.advance(REMOTE_CLIENT_IDLE_TIMEOUT_MS);
  assert.equal(h.intervals.size, 0);
});

test('closeAll closes every stream and stops the sweep', () => {
  const h = harness();
  h.tracker.receive(initialize(0));
  h.tracker.receive(initialize(0, 'stream-2'));
  h.connections[0]!.transport.send('{"id":1,"result":{}}');
  h.tracker.closeAll();
  assert.deepEqual(
    h.connections.map((c) => c.closed),
    [1, 1],
  );
  assert.equal(h.tracker.size, 0);
  assert.equal(h.intervals.size, 0);
  h.frames.length = 0;
  h.tracker.detach();
  h.tracker.attach((f) => h.frames.push(f));
  assert.deepEqual(h.frames, []);
});

test('an initialize sent in chunks opens the stream with the reassembled text', () => {
  const h = harness();
  const bytes = Buffer.from(INIT_MESSAGE);
  const cut = [0, 7, 50, bytes.length];
  for (let i = 0; i < 3; i++) {
    h.tracker.receive(
      JSON.stringify({
        type: 'client_message_chunk',
        client_id: C,
        stream_id: S,
        seq_id: 0,
        segment_id: i,
        segment_count: 3,
        message_size_bytes: bytes.length,
        message_chunk_base64: bytes.subarray(cut[i], cut[i + 1]).toString('base64'),
        cursor: `cur_${i}`,
      }),
    );
    assert.equal(h.connections.length, i === 2 ? 1 : 0);
  }
  assert.deepEqual(h.connections[0]!.messages, [INIT_MESSAGE]);
  assert.equal(h.tracker.cursor, 'cur_2');
  // The spec example: a 3-chunk request on the open stream reaches the connection whole.
  const message = '{"id": 3, "method": "thread/list", "params": {}}';
  const raw = Buffer.from(message);
  [
    [0, 10],
    [10, 30],
    [30, 48],
  ].forEach(([from, to], i) =>
    h.tracker.receive(
      JSON.stringify({
        type: 'client_message_chunk',
        client_id: C,
        stream_id: S,
        seq_id: 3,
        segment_id: i,
        segment_count: 3,
        message_size_bytes: 48,
        message_chunk_base64: raw.subarray(from, to).toString('base64'),
      }),
    ),
  );
  assert.deepEqual(h.connections[0]!.messages, [INIT_MESSAGE, message]);
});

test('receive never throws: bad frames, a broker that refuses, a sink that throws, a socket write that throws', () => {
  let refuse = true;
  let writes = 0;
  const tracker = new ClientTracker({
    connect: (transport) => {
      if (refuse) throw new Error('the broker is shutting down');
      transport.start({
        message: () => {
          throw new Error('sink failed');
        },
        closed: () => undefined,
      });
    },
    log: silentLogger(),
    maxClients: 2,
    maxUnackedBytes: 1 << 20,
    idleTimeoutMs: 1000,
    sweepIntervalMs: 100,
    timers: { now: () => 0, setInterval: () => ({}), clearInterval: () => undefined },
  });
  tracker.attach(() => {
    writes++;
    throw new Error('socket gone');
  });
  for (const frame of ['', 'nope', '{}', '[]', 'null', '{"type":"ping"}', '\u0000\u0001'])
    tracker.receive(frame);
  tracker.receive(initialize(0));
  assert.equal(tracker.size, 0, 'a refused connection is not kept');
  refuse = false;
  tracker.receive(initialize(0));
  assert.equal(tracker.size, 1);
  tracker.receive(request(1, 2));
  tracker.receive(ping());
  assert.equal(writes, 1, 'the pong was attempted');
  assert.equal(tracker.size, 1);
});

test('a connection that starts late still gets the messages that came first', () => {
  const pending: Transport[] = [];
  const tracker = new ClientTracker({
    connect: (transport) => void pending.push(transport),
    log: silentLogger(),
    maxClients: 2,
    maxUnackedBytes: 1 << 20,
    idleTimeoutMs: 1000,
    sweepIntervalMs: 100,
    timers: { now: () => 0, setInterval: () => ({}), clearInterval: () => undefined },
  });
  tracker.receive(initialize(0));
  tracker.receive(request(1, 9));
  const got: string[] = [];
  pending[0]!.start({ message: (m) => got.push(m), closed: () => undefined });
  assert.equal(got.length, 2);
  assert.equal((JSON.parse(got[1]!) as { id: number }).id, 9);
});

test('logs carry ids, sizes and reasons, never message contents', () => {
  const lines: string[] = [];
  const log = pino({ level: 'trace' }, { write: (s: string) => void lines.push(s) });
  const h = harness({ log, maxClients: 1, maxUnackedBytes: 400 });
  const secret = 'rct_top_secret_value';
  h.tracker.receive(`{"type":"client_message","client_id":"c","message":{"token":"${secret}"`);
  h.tracker.receive(`{"type":"bogus","client_id":"c","stream_id":"s","cursor":"${secret}"}`);
  h.tracker.receive(clientMessage(1, { id: 1, method: 'x', params: { token: secret } }));
  h.tracker.receive(initialize(0));
  h.tracker.receive(clientMessage(1, { id: 2, method: 'x', params: { token: secret } }));
  h.tracker.receive(clientMessage(1, { id: 2, method: 'x', params: { token: secret } }));
  h.tracker.receive(initialize(0, 'other'));
  h.connections[0]!.transport.send(`{"id":1,"result":{"token":"${secret}","pad":"${'x'.repeat(400)}"}}`);
  h.tracker.receive(
    JSON.stringify({
      type: 'client_message_chunk',
      client_id: C,
      stream_id: S,
      seq_id: 9,
      segment_id: 0,
      segment_count: 1,
      message_size_bytes: 3,
      message_chunk_base64: Buffer.from(secret).toString('base64'),
    }),
  );
  assert.ok(lines.length >= 5, `only ${lines.length} log lines`);
  for (const line of lines) assert.ok(!line.includes(secret) && !line.includes('cnRjX3RvcF9'), line);
  assert.ok(lines.some((l) => l.includes('unacknowledged')));
});
