/**
 * StdioTransport's output bound over in-memory streams: unread output past the mark stops the
 * reading of input until the reader catches up, with one 'drain' listener however many writes
 * wait; a failing stdout (EPIPE) ends the connection instead of throwing; a close whose output is
 * never read gives up after its flush timeout.
 */
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { StdioTransport } from '../../src/transport/stdio-transport.js';
import { silentLogger } from '../../src/util/logger.js';

const MARK = 1024 * 1024;

/** A stdout whose reader does not read until told to. */
class SlowReader extends Writable {
  private held: (() => void) | undefined;
  private reading = false;
  constructor() {
    super({ highWaterMark: 16 * 1024 });
  }
  override _write(_chunk: unknown, _enc: BufferEncoding, done: () => void): void {
    if (this.reading) done();
    else this.held = done;
  }
  /** The reader starts reading (and keeps reading). */
  readAll(): void {
    this.reading = true;
    const done = this.held;
    this.held = undefined;
    done?.();
  }
}

function setup() {
  const input = new PassThrough();
  const output = new SlowReader();
  const transport = new StdioTransport(1024 * 1024, silentLogger(), input, output, MARK);
  const events = { lines: 0, closed: 0 };
  transport.start({ message: () => events.lines++, closed: () => events.closed++ });
  return { input, output, transport, events };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('unread output past the mark stops the reading of input until the reader catches up', async () => {
  const { input, output, transport, events } = setup();
  const answer = 'x'.repeat(1000);
  for (let i = 0; i < 1100; i++) transport.send(answer);
  await tick();
  assert.ok(output.writableLength > MARK, `${output.writableLength} unread`);
  assert.ok(input.isPaused(), 'input still read with more than the mark unread');
  // A single drain listener, however many writes were refused.
  assert.ok(output.listenerCount('drain') <= 1, `${output.listenerCount('drain')} drain listeners`);

  input.write('{"id":1,"method":"x"}\n');
  await tick();
  assert.equal(events.lines, 0, 'a line was read while paused');

  output.readAll();
  await tick();
  assert.equal(input.isPaused(), false);
  await tick();
  assert.equal(events.lines, 1, 'the line written meanwhile is read once the output is taken');
  assert.equal(events.closed, 0);
});

test('a stdout that fails (EPIPE) closes the connection and settles `ended`; later sends are dropped', async () => {
  const { output, transport, events } = setup();
  const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  output.emit('error', epipe);
  assert.equal(events.closed, 1);
  await transport.ended;
  transport.send('{"id":1,"result":{}}');
  await tick();
  assert.equal(output.writableLength, 0);
  await transport.close(10);
});

test('close() with a flush timeout returns although the reader never reads', { timeout: 5_000 }, async () => {
  const { output, transport } = setup();
  for (let i = 0; i < 100; i++) transport.send('y'.repeat(1000));
  const started = Date.now();
  await transport.close(100);
  assert.ok(Date.now() - started < 2_000);
  assert.ok(output.destroyed, 'the unread output is dropped');
});
