/**
 * The enrollment machine of spec B.4, every transition on a SimulatedClock: effects are scripted
 * (each call takes the next scripted outcome) and recorded, so a test reads as the sequence of
 * backend calls and published statuses it expects.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimulatedClock, createActor } from 'xstate';
import {
  DEFAULT_TIMING,
  enrollmentMachine,
  retryDelayMs,
  type CachedToken,
  type EnrollmentEffects,
  type EnrollmentIds,
  StepFailure,
} from '../../actors/remote-control/enrollment.machine.js';

const IDS: EnrollmentIds = { serverId: 'srv_e_1', environmentId: 'env_1' };
const NEW_IDS: EnrollmentIds = { serverId: 'srv_e_2', environmentId: 'env_2' };
const T0 = 1_800_000_000_000;

type Outcome<T> = T | StepFailure;
const fail = (kind: StepFailure['kind'], message = `${kind} failure`, retryAfterMs?: number): StepFailure =>
  new StepFailure(kind, message, retryAfterMs === undefined ? {} : { retryAfterMs });

function start(script: {
  load?: Outcome<EnrollmentIds | null>[];
  enroll?: Outcome<{ ids: EnrollmentIds; token: CachedToken }>[];
  refresh?: Outcome<CachedToken>[];
  connect?: Outcome<null>[];
}) {
  const clock = new SimulatedClock();
  clock.set(T0);
  const calls: string[] = [];
  const statuses: string[] = [];
  const settled: (string | null)[] = [];
  const connectedWith: string[] = [];
  const take = <T>(name: string, queue: Outcome<T>[] | undefined): Promise<T> => {
    calls.push(name);
    const next = queue?.shift();
    if (next === undefined) return Promise.reject(fail('fatal', `unscripted ${name}`));
    return next instanceof StepFailure ? Promise.reject(next) : Promise.resolve(next as T);
  };
  const effects: EnrollmentEffects = {
    now: () => clock.now(),
    random: () => 0.5,
    load: () => take('load', script.load),
    enroll: () => take('enroll', script.enroll),
    refresh: () => take('refresh', script.refresh),
    connect: (_ids, token) => {
      connectedWith.push(token.value);
      return take<null>('connect', script.connect).then(() => undefined);
    },
    forget: () => void calls.push('forget'),
    disconnect: () => void calls.push('disconnect'),
    publish: (status, env) => void statuses.push(`${status}:${env}`),
    settleEnable: (failure) => void settled.push(failure ? failure.message : null),
  };
  const actor = createActor(enrollmentMachine, { input: { effects }, clock });
  actor.start();
  const state = () => actor.getSnapshot().value as string;
  return { actor, clock, calls, statuses, settled, connectedWith, state };
}

/** Lets invoked promises settle. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const token = (value: string, ttlMs: number): CachedToken => ({ value, expiresAtMs: T0 + ttlMs });
const HOUR = 3_600_000;

test('enable with no enrollment: enroll, then connect with the enrolled token (no refresh)', async () => {
  const m = start({ load: [null], enroll: [{ ids: IDS, token: token('t1', HOUR) }], connect: [null] });
  assert.equal(m.state(), 'disabled');
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'connected');
  assert.deepEqual(m.calls, ['load', 'enroll', 'connect']);
  assert.deepEqual(m.connectedWith, ['t1']);
  assert.deepEqual(m.settled, [null], 'the waiting enable is answered once, with success');
  assert.deepEqual(m.statuses, [
    'disabled:null',
    'connecting:null',
    'connecting:env_1',
    'connecting:env_1',
    'connected:env_1',
  ]);
});

test('a failed enroll answers the enable with its error and leaves remote control disabled', async () => {
  const m = start({ load: [null], enroll: [fail('unauthorized', 'HTTP 401')] });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'disabled');
  assert.deepEqual(m.settled, ['HTTP 401']);
  assert.deepEqual(m.statuses.at(-1), 'disabled:null');
});

test('no ChatGPT account: load fails, the enable gets the error, nothing is called', async () => {
  const m = start({ load: [fail('fatal', 'remote control requires ChatGPT authentication')] });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'disabled');
  assert.deepEqual(m.calls, ['load']);
  assert.deepEqual(m.settled, ['remote control requires ChatGPT authentication']);
});

test('a persisted enrollment without a token: required refresh, then the handshake with the new token', async () => {
  const m = start({ load: [IDS], refresh: [token('t2', HOUR)], connect: [null] });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'connected');
  assert.deepEqual(m.calls, ['load', 'refresh', 'connect']);
  assert.deepEqual(m.connectedWith, ['t2']);
  assert.deepEqual(m.settled, [null], 'the enable is answered as soon as the enrollment is known');
});

test('refresh window: 310 s left connects as is, 290 s left refreshes first (spec B.3)', async () => {
  for (const [ttlSec, refreshes] of [
    [310, false],
    [290, true],
  ] as const) {
    const m = start({
      load: [IDS, IDS],
      enroll: [],
      refresh: [token('fresh', HOUR)],
      connect: [null, null],
    });
    // Enrolled earlier in this process: the token is cached from the disable/enable below.
    m.actor.send({ type: 'enable' });
    await flush(); // refresh (no token yet) then connect
    m.actor.send({ type: 'disable' });
    m.calls.length = 0;
    m.connectedWith.length = 0;
    // The cached token now has ttlSec left.
    m.clock.set(T0 + HOUR - ttlSec * 1000);
    m.actor.send({ type: 'enable' });
    await flush();
    const script = refreshes ? ['load', 'refresh', 'connect'] : ['load', 'connect'];
    // Only one refresh was scripted: a second one would fail the attempt.
    if (refreshes) assert.equal(m.state(), 'retrying', `${ttlSec}s: the scripted refresh was used up`);
    else assert.deepEqual(m.calls, script, `${ttlSec}s`);
    if (!refreshes) assert.equal(m.state(), 'connected');
  }
});

test('proactive refresh: inside the window the token is refreshed before the handshake', async () => {
  const m = start({
    load: [IDS, IDS],
    refresh: [token('t1', 200_000), token('t2', HOUR)],
    connect: [null, null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.deepEqual(m.connectedWith, ['t1']);
  m.actor.send({ type: 'disable' });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.deepEqual(m.calls, ['load', 'refresh', 'connect', 'disconnect', 'load', 'refresh', 'connect']);
  assert.deepEqual(m.connectedWith, ['t1', 't2']);
});

test('a failed proactive refresh still connects with the old token and defers the next refresh', async () => {
  const m = start({
    load: [IDS, IDS],
    refresh: [token('t1', 200_000), fail('transient', 'HTTP 502')],
    connect: [null, null, null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  m.actor.send({ type: 'disable' });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'connected');
  assert.deepEqual(m.connectedWith, ['t1', 't1']);
  // Lost socket: the next attempt is inside the window but refresh is deferred (24-36 s): no refresh.
  m.calls.length = 0;
  m.actor.send({ type: 'socket.closed', reason: 'closed by the backend' });
  assert.equal(m.state(), 'retrying');
  m.clock.increment(retryDelayMs(DEFAULT_TIMING, 1, 0.5));
  await flush();
  assert.deepEqual(m.calls, ['disconnect', 'connect'], 'no refresh before next_refresh_at');
  assert.equal(m.state(), 'connected');
});

test('a failed required refresh fails the attempt; later attempts wait for next_refresh_at (Retry-After)', async () => {
  const m = start({
    load: [IDS],
    refresh: [fail('transient', 'HTTP 503', 40_000), token('t2', HOUR)],
    connect: [null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'retrying');
  assert.equal(m.statuses.at(-1), 'errored:env_1');
  // The backoff (about 4 s) ends before next_refresh_at (40 s): the attempt waits, still errored.
  m.clock.increment(m.actor.getSnapshot().context.retryDelayMs);
  await flush();
  assert.equal(m.state(), 'waitingToRefresh');
  assert.deepEqual(m.calls, ['load', 'refresh', 'disconnect']);
  m.clock.set(T0 + 39_999);
  await flush();
  assert.equal(m.state(), 'waitingToRefresh');
  m.clock.set(T0 + 40_000);
  await flush();
  assert.deepEqual(m.calls, ['load', 'refresh', 'disconnect', 'refresh', 'connect']);
  assert.equal(m.state(), 'connected');
});

test('refresh 404: the enrollment is forgotten and a new server enrolled in the same attempt', async () => {
  const m = start({
    load: [IDS],
    refresh: [fail('notFound', 'HTTP 404')],
    enroll: [{ ids: NEW_IDS, token: token('t3', HOUR) }],
    connect: [null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.deepEqual(m.calls, ['load', 'refresh', 'forget', 'enroll', 'connect']);
  assert.equal(m.state(), 'connected');
  assert.equal(m.statuses.at(-1), 'connected:env_2');
});

test('refresh 401: the attempt fails and the next one refreshes again after the backoff', async () => {
  const m = start({
    load: [IDS],
    refresh: [fail('unauthorized', 'HTTP 401'), token('t2', HOUR)],
    connect: [null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'retrying');
  m.clock.increment(m.actor.getSnapshot().context.retryDelayMs);
  await flush();
  assert.deepEqual(m.calls, ['load', 'refresh', 'disconnect', 'refresh', 'connect']);
  assert.equal(m.state(), 'connected');
});

test('handshake 401/403: only the token is dropped; the next attempt refreshes, then connects', async () => {
  const m = start({
    load: [null],
    enroll: [{ ids: IDS, token: token('t1', HOUR) }],
    refresh: [token('t2', HOUR)],
    connect: [fail('unauthorized', 'HTTP 403'), null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'retrying');
  assert.equal(m.statuses.at(-1), 'errored:env_1', 'the environment id is kept while errored');
  assert.equal(m.actor.getSnapshot().context.token, null);
  assert.deepEqual(m.actor.getSnapshot().context.ids, IDS, 'the enrollment stays');
  m.clock.increment(m.actor.getSnapshot().context.retryDelayMs);
  await flush();
  assert.deepEqual(m.connectedWith, ['t1', 't2']);
  assert.ok(!m.calls.includes('forget'));
  assert.equal(m.state(), 'connected');
});

test('handshake 404 "Remote app server not found": forget, enroll at once, connect after the backoff', async () => {
  const m = start({
    load: [IDS],
    refresh: [token('t1', HOUR)],
    enroll: [{ ids: NEW_IDS, token: token('t9', HOUR) }],
    connect: [fail('serverGone', 'HTTP 404'), null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.deepEqual(m.calls, ['load', 'refresh', 'connect', 'forget', 'enroll', 'disconnect']);
  assert.equal(m.state(), 'retrying');
  assert.equal(m.statuses.at(-1), 'errored:env_2', 'the new environment id, errored until the handshake');
  m.clock.increment(m.actor.getSnapshot().context.retryDelayMs);
  await flush();
  assert.deepEqual(m.connectedWith, ['t1', 't9']);
  assert.equal(m.state(), 'connected');
});

test('other handshake failures back off, doubling to the cap, and a Retry-After lengthens the wait', async () => {
  const failures = Array.from({ length: 6 }, (_, i) =>
    fail('transient', `HTTP 503 #${i}`, i === 5 ? 50_000 : undefined),
  );
  const m = start({ load: [IDS], refresh: [token('t1', HOUR)], connect: [...failures, null] });
  m.actor.send({ type: 'enable' });
  await flush();
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    assert.equal(m.state(), 'retrying');
    const delay = m.actor.getSnapshot().context.retryDelayMs;
    delays.push(delay);
    m.clock.increment(delay - 1);
    await flush();
    assert.equal(m.state(), 'retrying', 'not a millisecond early');
    m.clock.increment(1);
    await flush();
  }
  assert.equal(m.state(), 'connected');
  // random 0.5 gives 0.925 of the base: 4, 8, 16, 30 (cap), 30, then the Retry-After of 50 s.
  assert.deepEqual(delays, [3700, 7400, 14800, 27750, 27750, 50000]);
  assert.equal(m.actor.getSnapshot().context.failures, 0, 'a success resets the backoff');
});

test('a lost socket: status connecting, a new attempt after a short delay, no refresh for a valid token', async () => {
  const m = start({ load: [null], enroll: [{ ids: IDS, token: token('t1', HOUR) }], connect: [null, null] });
  m.actor.send({ type: 'enable' });
  await flush();
  m.actor.send({ type: 'socket.closed', reason: 'pong timeout' });
  assert.equal(m.statuses.at(-1), 'connecting:env_1', 'a clean socket loss is not an error');
  m.clock.increment(m.actor.getSnapshot().context.retryDelayMs);
  await flush();
  assert.equal(m.state(), 'connected');
  assert.deepEqual(m.connectedWith, ['t1', 't1']);
});

test('a token that expired while connected is refreshed (required) on the next attempt', async () => {
  const m = start({
    load: [null],
    enroll: [{ ids: IDS, token: token('t1', HOUR) }],
    refresh: [token('t2', 3 * HOUR)],
    connect: [null, null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  // Nothing happens while the socket stays open, even past the expiry.
  m.clock.set(T0 + 2 * HOUR);
  await flush();
  assert.equal(m.state(), 'connected');
  assert.deepEqual(m.calls, ['load', 'enroll', 'connect']);
  m.actor.send({ type: 'socket.closed', reason: 'closed by the backend' });
  m.clock.increment(m.actor.getSnapshot().context.retryDelayMs);
  await flush();
  assert.deepEqual(m.calls, ['load', 'enroll', 'connect', 'disconnect', 'refresh', 'connect']);
  assert.deepEqual(m.connectedWith, ['t1', 't2']);
  assert.equal(m.state(), 'connected');
});

test('disable drops the socket and keeps the token: a later enable connects without refreshing', async () => {
  const m = start({
    load: [null, IDS],
    enroll: [{ ids: IDS, token: token('t1', HOUR) }],
    connect: [null, null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  m.actor.send({ type: 'disable' });
  assert.equal(m.state(), 'disabled');
  assert.equal(m.statuses.at(-1), 'disabled:null');
  m.actor.send({ type: 'enable' });
  await flush();
  assert.deepEqual(m.calls, ['load', 'enroll', 'connect', 'disconnect', 'load', 'connect']);
  assert.deepEqual(m.connectedWith, ['t1', 't1']);
  assert.deepEqual(m.settled, [null, null]);
});

test('enable while already enabled answers at once; enable while backing off tries now', async () => {
  const m = start({ load: [IDS], refresh: [token('t1', HOUR)], connect: [fail('transient', 'down'), null] });
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'retrying');
  m.actor.send({ type: 'enable' });
  await flush();
  assert.equal(m.state(), 'connected');
  m.actor.send({ type: 'enable' });
  assert.deepEqual(m.settled, [null, null, null]);
});

test('an account change while connected starts over from the enrollment lookup', async () => {
  const m = start({
    load: [IDS, NEW_IDS],
    refresh: [token('t1', HOUR), token('t2', HOUR)],
    connect: [null, null],
  });
  m.actor.send({ type: 'enable' });
  await flush();
  m.actor.send({ type: 'account.changed' });
  await flush();
  assert.deepEqual(m.calls, ['load', 'refresh', 'connect', 'disconnect', 'load', 'refresh', 'connect']);
  assert.equal(m.statuses.at(-1), 'connected:env_2');
});

test('retry delays stay within 0.75..1.1 of the doubled base and never pass the cap', () => {
  for (let failures = 1; failures < 10; failures++) {
    for (const r of [0, 0.5, 0.999]) {
      const d = retryDelayMs(DEFAULT_TIMING, failures, r);
      const base = Math.min(30_000, 4_000 * 2 ** (failures - 1));
      assert.ok(d >= base * 0.75 - 1 && d <= Math.min(30_000, base * 1.1) + 1, `${failures}/${r}: ${d}`);
    }
  }
});
