/** The retry policy of a turn (spec C.8 step 4) on a simulated clock. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock, createActor } from 'xstate';
import { turnMachine, type TurnEffects, type TurnInput } from '../../actors/thread/turn.machine.js';
import type { FailureData } from '../../src/upstream/failure.js';

const failure = (message: string, extra: Partial<FailureData> = {}): FailureData => ({
  message,
  kind: 'status',
  status: 503,
  retryable: true,
  retryAfterMs: null,
  ...extra,
});

function start(input: Partial<TurnInput> = {}) {
  const log: string[] = [];
  const clock = new SimulatedClock();
  const effects: TurnEffects = {
    prewarm: () => log.push('prewarm'),
    attempt: (transport) => log.push(`attempt ${transport}`),
    abort: () => log.push('abort'),
    retrying: ({ retry, max, delayMs, transport, failure: f }) =>
      log.push(`retry ${retry}/${max} ${transport} in ${delayMs} (${f.message})`),
    fallingBack: ({ failure: f }) => log.push(`fallback (${f.message})`),
    finish: ({ outcome, failure: f }) => log.push(`finish ${outcome}${f ? ` (${f.message})` : ''}`),
  };
  const actor = createActor(turnMachine, {
    clock,
    input: {
      effects,
      transport: 'ws',
      fallback: true,
      maxRetries: 2,
      baseDelayMs: 200,
      random: () => 0.5,
      ...input,
    },
  }).start();
  return { actor, clock, log };
}

test('prewarm, WebSocket retries with doubling delays, fallback to HTTP, HTTP retries, then failure', () => {
  const { actor, clock, log } = start();
  actor.send({ type: 'prewarm.done' });
  actor.send({ type: 'attempt.failed', failure: failure('ws 1') });
  assert.deepEqual(log, ['prewarm', 'attempt ws', 'retry 1/2 ws in 200 (ws 1)']);
  clock.increment(199);
  assert.equal(log.length, 3, 'nothing before the delay');
  clock.increment(1);
  actor.send({ type: 'attempt.failed', failure: failure('ws 2') });
  clock.increment(400);
  actor.send({ type: 'attempt.failed', failure: failure('ws 3') });
  actor.send({ type: 'attempt.failed', failure: failure('http 1') });
  clock.increment(200);
  actor.send({ type: 'attempt.failed', failure: failure('http 2') });
  clock.increment(400);
  actor.send({ type: 'attempt.failed', failure: failure('http 3') });
  assert.deepEqual(log.slice(3), [
    'attempt ws',
    'retry 2/2 ws in 400 (ws 2)',
    'attempt ws',
    'fallback (ws 3)',
    'attempt http',
    'retry 1/2 http in 200 (http 1)',
    'attempt http',
    'retry 2/2 http in 400 (http 2)',
    'attempt http',
    'finish failed (http 3)',
  ]);
  assert.equal(actor.getSnapshot().status, 'done');
});

test('Retry-After wins over the backoff; a success ends the turn', () => {
  const { actor, clock, log } = start({ transport: 'http', fallback: false });
  actor.send({ type: 'attempt.failed', failure: failure('slow down', { status: 429, retryAfterMs: 1500 }) });
  clock.increment(1499);
  assert.equal(log.at(-1), 'retry 1/2 http in 1500 (slow down)');
  clock.increment(1);
  actor.send({ type: 'attempt.succeeded' });
  assert.deepEqual(log, [
    'attempt http',
    'retry 1/2 http in 1500 (slow down)',
    'attempt http',
    'finish completed',
  ]);
});

test('a failure no attempt can fix ends the turn at once, without fallback', () => {
  const { actor, log } = start();
  actor.send({ type: 'prewarm.done' });
  actor.send({
    type: 'attempt.failed',
    failure: failure('context too long', { kind: 'response', retryable: false }),
  });
  assert.deepEqual(log, ['prewarm', 'attempt ws', 'finish failed (context too long)']);
});

test('with no retries and no fallback, the first failure is the last', () => {
  const { actor, log } = start({ transport: 'http', fallback: false, maxRetries: 0 });
  actor.send({ type: 'attempt.failed', failure: failure('down') });
  assert.deepEqual(log, ['attempt http', 'finish failed (down)']);
});

test('an interrupt stops the attempt, or the wait, and ends the turn as interrupted', () => {
  const during = start();
  during.actor.send({ type: 'prewarm.done' });
  during.actor.send({ type: 'interrupt' });
  assert.deepEqual(during.log, ['prewarm', 'attempt ws', 'abort', 'finish interrupted']);

  const waiting = start();
  waiting.actor.send({ type: 'prewarm.done' });
  waiting.actor.send({ type: 'attempt.failed', failure: failure('x') });
  waiting.actor.send({ type: 'interrupt' });
  waiting.clock.increment(10_000);
  assert.deepEqual(waiting.log.slice(-2), ['abort', 'finish interrupted']);
  assert.equal(
    waiting.log.filter((l) => l.startsWith('attempt')).length,
    1,
    'no attempt after the interrupt',
  );
});
