import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ActorSystem } from '../../src/runtime/actor-system.js';
import { later, type Behaviour } from '../../src/runtime/actor.js';
import { createWorkerPool, poolHost } from '../../src/runtime/worker-pool.js';
import { createActorCodec, forThread } from '../../src/codec/msgpack.js';
import {
  BrokerError,
  ProtocolError,
  isBrokerError,
  isProtocolError,
  toWireError,
} from '../../src/protocol/errors.js';
import { silentLogger } from '../../src/util/logger.js';

function system(onEscalation?: (address: string) => void) {
  return new ActorSystem({ log: silentLogger(), ...(onEscalation ? { onEscalation } : {}) });
}

test('a mailbox delivers in order, one message at a time, even when processing is async', async () => {
  const s = system();
  const seen: number[] = [];
  let active = 0;
  let maxActive = 0;
  s.spawn('a', () => ({
    async receive(m) {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((r) => setTimeout(r, (10 - (m.body as number)) % 3));
      seen.push(m.body as number);
      active--;
      return m.body;
    },
  }));
  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => s.ask('a', 'n', i)));
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(replies, seen);
  assert.equal(maxActive, 1);
});

test('past its bound a mailbox refuses with MAILBOX_FULL, which the wire shows as -32001', async () => {
  const s = system();
  s.spawn('slow', () => ({ receive: () => new Promise((r) => setTimeout(r, 5)) }), { capacity: 3 });
  const asks = Array.from({ length: 5 }, (_, i) =>
    s.ask('slow', 'n', i).then(
      () => 'ok',
      (e: unknown) => e,
    ),
  );
  const results = await Promise.all(asks);
  assert.deepEqual(results.slice(0, 3), ['ok', 'ok', 'ok']);
  for (const e of results.slice(3)) {
    assert.ok(isBrokerError(e, 'MAILBOX_FULL'));
    assert.deepEqual(toWireError(e), { code: -32001, message: 'Server overloaded; retry later.' });
  }
  assert.equal(await s.ask('slow', 'n', 9), undefined, 'the actor keeps serving after refusing');
});

test('expected errors are replies, not failures', async () => {
  const s = system();
  let created = 0;
  s.spawn('e', () => {
    created++;
    return {
      receive() {
        throw new ProtocolError(-32600, 'Invalid request: nope');
      },
    };
  });
  await assert.rejects(
    s.ask('e', 'x', null),
    (e) => isProtocolError(e) && e.message === 'Invalid request: nope',
  );
  assert.equal(created, 1, 'no restart for an ordinary error reply');
});

test('a failing actor is restarted; the request it held gets an error reply and later ones are served', async () => {
  const s = system();
  let instances = 0;
  s.spawn('r', () => {
    const instance = ++instances;
    let count = 0;
    return {
      receive(m) {
        if (m.type === 'boom') throw new Error('bug');
        return { instance, count: ++count };
      },
    };
  });
  assert.deepEqual(await s.ask('r', 'ok', null), { instance: 1, count: 1 });
  await assert.rejects(s.ask('r', 'boom', null), (e) => isBrokerError(e, 'ACTOR_FAILED'));
  assert.deepEqual(await s.ask('r', 'ok', null), { instance: 2, count: 1 }, 'fresh state after restart');
});

test('escalation stops the actor and answers everything it held; the system is told', async () => {
  const escalated: string[] = [];
  const s = system((a) => escalated.push(a));
  s.spawn(
    'x',
    (): Behaviour => ({
      async receive(m) {
        await new Promise((r) => setTimeout(r, 1));
        if (m.type === 'boom') throw new Error('bug');
        return 'served';
      },
    }),
    { supervision: { strategy: 'escalate' } },
  );
  const held = [s.ask('x', 'boom', null), s.ask('x', 'ok', null), s.ask('x', 'ok', null)];
  const results = await Promise.allSettled(held);
  assert.ok(results.every((r) => r.status === 'rejected' && isBrokerError(r.reason, 'ACTOR_FAILED')));
  assert.deepEqual(escalated, ['x']);
  assert.equal(s.has('x'), false);
  await assert.rejects(s.ask('x', 'ok', null), (e) => isBrokerError(e, 'ACTOR_NOT_FOUND'));
});

test('a restart budget exhausted within the window escalates', async () => {
  const escalated: string[] = [];
  const s = system((a) => escalated.push(a));
  s.spawn(
    'f',
    () => ({
      receive: () => {
        throw new Error('always');
      },
    }),
    {
      supervision: { strategy: 'restart', maxRestarts: 2, windowMs: 60_000 },
    },
  );
  for (let i = 0; i < 3; i++) await assert.rejects(s.ask('f', 'x', null));
  assert.deepEqual(escalated, ['f']);
});

test('later() replies when the promise settles without holding the mailbox', async () => {
  const s = system();
  let release!: (v: string) => void;
  const gate = new Promise<string>((r) => (release = r));
  s.spawn('l', () => ({ receive: (m) => (m.type === 'wait' ? later(gate) : 'quick') }));
  const slow = s.ask('l', 'wait', null);
  assert.equal(await s.ask('l', 'now', null), 'quick', 'the next message is served while the first waits');
  release('done');
  assert.equal(await slow, 'done');
});

test('stopping an actor answers what it still holds with ACTOR_STOPPED', async () => {
  const s = system();
  s.spawn('p', () => ({ receive: () => later(new Promise(() => {})) }));
  const pending = s.ask('p', 'x', null);
  await new Promise((r) => setImmediate(r));
  s.stop('p');
  await assert.rejects(pending, (e) => isBrokerError(e, 'ACTOR_STOPPED'));
});

test('replies are routed to an asking actor as reply envelopes', async () => {
  const s = system();
  const got: unknown[] = [];
  s.spawn('echo', () => ({ receive: (m) => ({ echoed: m.body }) }));
  s.spawn('asker', () => ({
    receive: (m) => {
      if (m.type === 'reply') got.push(m.body);
    },
  }));
  s.tell('echo', 'x', 42n, { address: 'asker', correlation: 'c-1' });
  await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(got, [{ correlation: 'c-1', reply: { ok: true, value: { echoed: 42n } } }]);
});

test('envelopes round-trip between two independently created codecs (main thread and worker)', () => {
  const a = createActorCodec();
  const b = createActorCodec();
  const envelope = {
    to: 'crypto',
    type: 'digest',
    body: { data: new Uint8Array([1, 2, 3]), id: 9223372036854775807n, nested: { s: 'é', n: null } },
    replyTo: { address: 'wire/1', correlation: -5 },
  };
  const bytes = a.encode(envelope);
  // Encoded views stay valid while the encoder keeps working (mailboxes hold them as they are).
  const later = Array.from({ length: 2_000 }, (_, i) => a.encode({ i, pad: 'x'.repeat(i % 500) }));
  // Binary comes back as the input's kind (Buffer or Uint8Array): compare bytes, not classes.
  const normalized = (v: unknown): unknown =>
    v instanceof Uint8Array
      ? [...v]
      : typeof v === 'object' && v !== null
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalized(x)]))
        : v;
  assert.deepEqual(normalized(b.decode(bytes)), normalized(envelope));
  later.forEach((v, i) => assert.equal(b.decode<{ i: number }>(v).i, i));
  // What crosses a thread is an exact-size copy, not the pooled buffer behind the view.
  const copy = forThread(bytes);
  assert.equal(copy.buffer.byteLength, bytes.byteLength);
  assert.deepEqual(normalized(b.decode(copy)), normalized(envelope));
});

test('the crypto actor runs in worker threads and is supervised like any actor', async (t) => {
  const s = system();
  const pool = createWorkerPool({ maxThreads: 2 });
  t.after(() => pool.destroy());
  s.spawnHost('crypto', poolHost(pool, s.codec), { concurrency: 4, supervision: { maxRestarts: 5 } });
  const data = new TextEncoder().encode('hello');
  const digest = await s.ask('crypto', 'digest', { algorithm: 'sha256', data });
  assert.equal(digest, createHash('sha256').update('hello').digest('base64url'));
  const id = await s.ask<string>('crypto', 'randomId', { prefix: 'dk_', bytes: 32 });
  assert.match(id, /^dk_[A-Za-z0-9_-]{43}$/);
  // Bad input is an ordinary error reply from the worker.
  await assert.rejects(s.ask('crypto', 'digest', { algorithm: 'md4', data }), (e) => {
    return (
      e instanceof BrokerError && e.code === 'INVALID_INPUT' && /unsupported digest algorithm/.test(e.message)
    );
  });
  // A message the worker cannot handle throws there: a failure, answered, and the actor keeps working.
  await assert.rejects(s.ask('crypto', 'bogus', {}), (e) => isBrokerError(e, 'ACTOR_FAILED'));
  const many = await Promise.all(
    Array.from({ length: 50 }, (_, i) => s.ask('crypto', 'digest', { algorithm: 'sha256', data: String(i) })),
  );
  assert.deepEqual(
    many,
    Array.from({ length: 50 }, (_, i) => createHash('sha256').update(String(i)).digest('base64url')),
  );
});
