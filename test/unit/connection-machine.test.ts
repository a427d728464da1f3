import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock, createActor } from 'xstate';
import {
  connectionMachine,
  type CallRequest,
  type Session,
} from '../../actors/connection/connection.machine.js';
import { decodeClientRequest } from '../../src/protocol/request-decoder.js';

type Effect =
  | { effect: 'replyError'; id: unknown; message: string }
  | { effect: 'replyInitialize'; id: unknown; session: Session }
  | { effect: 'dispatch'; method: string }
  | { effect: 'expire'; key: string }
  | { effect: 'close' };

function start() {
  const effects: Effect[] = [];
  const clock = new SimulatedClock();
  const actor = createActor(connectionMachine, {
    clock,
    input: {
      effects: {
        replyError: (p) => effects.push({ effect: 'replyError', id: p.id, message: p.message }),
        replyInitialize: (p) =>
          effects.push({ effect: 'replyInitialize', id: p.request.id, session: p.session }),
        dispatch: (p: { request: CallRequest }) =>
          effects.push({ effect: 'dispatch', method: p.request.method }),
        expireServerRequest: (p) => effects.push({ effect: 'expire', key: p.key }),
        closeConnection: () => effects.push({ effect: 'close' }),
      },
    },
  }).start();
  const send = (id: number | string, method: string, params?: unknown) =>
    actor.send({
      type: 'rpc.request',
      request: decodeClientRequest({ id, method, params, hasParams: params !== undefined }),
    });
  return { actor, clock, effects, send };
}

const init = (extra: Record<string, unknown> = {}) => ({ clientInfo: { name: 'c', version: '1' }, ...extra });

test('before initialize: decode errors first, then the init gate (spec A.6)', () => {
  const { send, effects, actor } = start();
  send(1, 'no/such/method', {});
  send(2, 'initialize', 'nope');
  send(3, 'mock/experimentalMethod', {});
  assert.match(
    (effects[0] as { message: string }).message,
    /^Invalid request: unknown variant `no\/such\/method`/,
  );
  assert.deepEqual(effects[1], {
    effect: 'replyError',
    id: 2,
    message: 'Invalid request: invalid type: string "nope", expected struct InitializeParams',
  });
  // An experimental method decodes fine, so the init gate answers before the experimental gate.
  assert.deepEqual(effects[2], { effect: 'replyError', id: 3, message: 'Not initialized' });
  assert.equal(actor.getSnapshot().value, 'uninitialized');
});

test('an invalid clientInfo.name is refused and does not consume initialize', () => {
  const { send, effects, actor } = start();
  send(1, 'initialize', { clientInfo: { name: 'bad\nname', version: '1' } });
  assert.deepEqual(effects[0], {
    effect: 'replyError',
    id: 1,
    message: "Invalid clientInfo.name: 'bad\nname'. Must be a valid HTTP header value.",
  });
  assert.equal(actor.getSnapshot().value, 'uninitialized');
  send(2, 'initialize', init({ capabilities: { experimentalApi: true, optOutNotificationMethods: ['x'] } }));
  assert.equal(actor.getSnapshot().value, 'initialized');
  assert.deepEqual((effects[1] as { session: Session }).session, {
    clientName: 'c',
    clientVersion: '1',
    experimentalApi: true,
    requestAttestation: false,
    optOutNotificationMethods: ['x'],
  });
});

test('after initialize: Already initialized, experimental gate, then dispatch', () => {
  const { send, effects } = start();
  send(1, 'initialize', init());
  send(2, 'initialize', init());
  send(3, 'mock/experimentalMethod', { value: 'v' });
  send(4, 'no/such', {});
  assert.deepEqual(effects.slice(1), [
    { effect: 'replyError', id: 2, message: 'Already initialized' },
    { effect: 'replyError', id: 3, message: 'mock/experimentalMethod requires experimentalApi capability' },
    {
      effect: 'replyError',
      id: 4,
      message: (effects[3] as { message: string }).message,
    },
  ]);
  assert.match((effects[3] as { message: string }).message, /^Invalid request: unknown variant `no\/such`/);

  const opted = start();
  opted.send(1, 'initialize', init({ capabilities: { experimentalApi: true } }));
  opted.send(2, 'mock/experimentalMethod', {});
  assert.deepEqual(opted.effects[1], { effect: 'dispatch', method: 'mock/experimentalMethod' });
});

test('lifecycle: initialized -> authenticated -> attested -> initialized -> closed', () => {
  const { send, actor, effects } = start();
  actor.send({ type: 'auth.authenticated' });
  assert.equal(actor.getSnapshot().value, 'uninitialized', 'auth before initialize does not count');
  send(1, 'initialize', init());
  actor.send({ type: 'attestation.answered' });
  assert.equal(actor.getSnapshot().value, 'initialized', 'attestation needs authentication first');
  actor.send({ type: 'auth.authenticated' });
  assert.equal(actor.getSnapshot().value, 'authenticated');
  actor.send({ type: 'attestation.answered' });
  assert.equal(actor.getSnapshot().value, 'attested');
  send(2, 'initialize', init());
  assert.deepEqual(effects.at(-1), { effect: 'replyError', id: 2, message: 'Already initialized' });
  actor.send({ type: 'auth.cleared' });
  assert.equal(actor.getSnapshot().value, 'initialized');
  actor.send({ type: 'transport.closed' });
  assert.equal(actor.getSnapshot().value, 'closed');
  assert.equal(actor.getSnapshot().status, 'done');
  assert.deepEqual(effects.at(-1), { effect: 'close' });
});

test('server-request deadlines run on the clock: expiry at the deadline, not before', () => {
  const { actor, clock, effects, send } = start();
  send(1, 'initialize', init());
  actor.send({ type: 'serverRequest.sent', key: '0', timeoutMs: 100 });
  actor.send({ type: 'serverRequest.sent', key: '1', timeoutMs: 10_000 });
  clock.increment(99);
  assert.equal(effects.filter((e) => e.effect === 'expire').length, 0);
  clock.increment(1);
  assert.deepEqual(
    effects.filter((e) => e.effect === 'expire'),
    [{ effect: 'expire', key: '0' }],
  );
  clock.increment(9_899);
  assert.equal(effects.filter((e) => e.effect === 'expire').length, 1);
  clock.increment(1);
  assert.deepEqual(
    effects.filter((e) => e.effect === 'expire').map((e) => (e as { key: string }).key),
    ['0', '1'],
  );
});

test('an answered server request never expires', () => {
  const { actor, clock, effects, send } = start();
  send(1, 'initialize', init());
  actor.send({ type: 'serverRequest.sent', key: '7', timeoutMs: 100 });
  clock.increment(50);
  actor.send({ type: 'serverRequest.settled', key: '7' });
  clock.increment(1_000);
  assert.equal(effects.filter((e) => e.effect === 'expire').length, 0);
});
