/**
 * Chaos, backend sockets, through the built CLI against the local backend: the Responses
 * WebSocket and HTTP streams cut under many concurrent turns, again while the retries run; and
 * remote control's backend socket dropped again and again under many remote requests. What the
 * other fault tests prove one at a time (relay.test.ts: one cut stream is retried;
 * remote-control-faults.test.ts: unacked answers are replayed after one drop) is here many in
 * flight at once with repeated drops: every turn ends (completed with its full text, or failed
 * with a reason), every remote request is answered, and the same broker serves new turns and
 * remote requests afterwards. `CHAOS_ROUNDS=N` repeats each scenario N times.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatgptToken, spawnAgainst, useLocalBackend } from '../helpers/local-backend.js';
import { initializeParams, type RpcMessage } from '../helpers/app-server-process.js';
import { loginWithTokens, startRemoteControlServer, statusReached } from '../helpers/remote-control.js';
import { ChaosTally, chaosRounds, eventually, processCaller, settleWithin } from '../helpers/chaos.js';

// Streamed events 20 ms apart: a turn takes long enough for cuts to land mid-stream.
const backend = useLocalBackend({ responseDelayMs: 20 });

const THREADS = 20;
const REMOTE_CLIENTS = 8;
const REQUESTS_PER_CLIENT = 10;
const BOUND_MS = 60_000;

interface TurnEnd {
  status: string;
  error: { message: string } | null;
}

test('Responses streams cut under 20 concurrent turns, and cut again while they retry: every turn ends, later turns succeed', async (t) => {
  const client = spawnAgainst(t, backend, ['-c', 'gatehouse.stream_max_retries=2']);
  const ends = new Map<string, TurnEnd>();
  const texts = new Map<string, string>();
  const call = processCaller(client, (m: RpcMessage) => {
    const params = m.params as {
      turnId?: string;
      turn?: { id: string } & TurnEnd;
      item?: { type: string; text: string };
    };
    if (m.method === 'turn/completed' && params.turn) ends.set(params.turn.id, params.turn);
    if (m.method === 'item/completed' && params.item?.type === 'agentMessage' && params.turnId)
      texts.set(params.turnId, params.item.text);
  });
  assert.ok((await call('initialize', initializeParams({ experimentalApi: true }))).result);
  const login = await call('account/login/start', {
    type: 'chatgptAuthTokens',
    accessToken: chatgptToken(),
    chatgptAccountId: 'acct-1',
  });
  assert.ok(login.result, JSON.stringify(login.error));
  const threads = await Promise.all(
    Array.from({ length: THREADS }, async () => {
      const started = await call('thread/start', {});
      return (started.result as unknown as { thread: { id: string } }).thread.id;
    }),
  );
  const tally = new ChaosTally('Responses sockets');

  /** One turn per thread at once; resolves with [turn id, the text it was sent] per thread. */
  const turns = (label: string) =>
    Promise.all(
      threads.map(async (threadId, i) => {
        const text = `${label} thread ${i}`;
        const reply = await call('turn/start', { threadId, input: [{ type: 'text', text }] });
        const turn = (reply.result as unknown as { turn?: { id: string } } | undefined)?.turn;
        assert.ok(turn, JSON.stringify(reply.error));
        return [turn.id, text] as const;
      }),
    );
  /** Waits for every turn to end; completed ones must carry their whole answer. */
  const ended = async (started: (readonly [string, string])[]) => {
    tally.sent += started.length;
    await eventually(() => started.every(([id]) => ends.has(id)), BOUND_MS);
    for (const [id, text] of started) {
      const end = ends.get(id);
      if (!end) tally.lost++;
      else if (end.status === 'completed') {
        assert.equal(texts.get(id), `Echo: ${text}`, 'a completed turn has its whole answer');
        tally.succeeded++;
      } else {
        assert.equal(end.status, 'failed', JSON.stringify(end));
        assert.ok(end.error && end.error.message.length > 0, 'a failed turn says why');
        tally.failed(end.error.message.replace(/https:\/\/127\.0\.0\.1:\d+/, 'https://backend'));
      }
    }
  };
  const faultsLeft = () => backend.faults.list().reduce((n, rule) => n + rule.times, 0);

  for (let round = 0; round < chaosRounds(); round++) {
    // Every response is cut after its second event; some retries are cut too, before any event,
    // and so are some of the HTTP fallbacks: repeated drops while the turns are in flight.
    const planned = 2 * THREADS + 10 + 5;
    backend.faults.add({
      route: 'responses.ws.create',
      action: { kind: 'disconnect', afterEvents: 2 },
      times: THREADS,
    });
    backend.faults.add({
      route: 'responses.ws.create',
      action: { kind: 'disconnect', afterEvents: 0 },
      times: THREADS,
    });
    backend.faults.add({ route: 'responses.ws', action: { kind: 'disconnect', afterEvents: 1 }, times: 10 });
    backend.faults.add({ route: 'responses.http', action: { kind: 'disconnect', afterEvents: 1 }, times: 5 });
    await ended(await turns(`round ${round}`));
    tally.faults += planned - faultsLeft();
    backend.faults.clear();

    const before = tally.failedCount;
    await ended(await turns(`round ${round} after`));
    assert.equal(tally.failedCount, before, `after the drops every turn completes: ${tally.summary()}`);
  }
  tally.report(t);
  tally.assertNoneLost();
  assert.ok(tally.faults >= THREADS, `the faults were met: ${tally.summary()}`);
});

test('remote control socket dropped again and again under 80 remote requests: all answered, then served again', async (t) => {
  const client = await startRemoteControlServer(t, backend);
  await loginWithTokens(client);
  const enabled = await client.request('remoteControl/enable');
  assert.ok(enabled.result, JSON.stringify(enabled.error));
  await statusReached(client, 'connected');
  const remotes = Array.from({ length: REMOTE_CLIENTS }, () => backend.remoteControl.openClient());
  t.after(() => remotes.forEach((remote) => remote.close()));
  for (const remote of remotes) {
    const init = await remote.request('initialize', {
      clientInfo: { name: 'remote-phone', title: null, version: '1.0.0' },
    });
    assert.ok(init.result, JSON.stringify(init.error));
  }
  const tally = new ChaosTally('remote-control socket');
  /** Every remote client sends its requests at once; `during` runs while they are in flight. */
  const burst = async (during: () => Promise<void>) => {
    const calls = remotes.flatMap((remote) =>
      Array.from({ length: REQUESTS_PER_CLIENT }, () => remote.request('account/read', {}, BOUND_MS)),
    );
    tally.sent += calls.length;
    await during();
    for (const result of await settleWithin(calls, BOUND_MS + 1_000)) {
      if (
        !result ||
        (result.status === 'rejected' && /^no response to/.test(String((result.reason as Error).message)))
      )
        tally.lost++;
      else if (result.status === 'rejected') tally.failed(`remote stream closed: ${String(result.reason)}`);
      else if (result.value.result) tally.succeeded++;
      else tally.failed(JSON.stringify(result.value.error));
    }
  };

  const drop = async () => {
    backend.remoteControl.dropSockets();
    tally.faults++;
    await statusReached(client, 'connected', BOUND_MS);
  };
  for (let round = 0; round < chaosRounds(); round++) {
    // The socket is cut first, so the burst reaches the backend while it is down (the backend
    // queues client envelopes for a server with no socket; it does not replay from the subscribe
    // cursor, so an envelope cut in transit towards Gatehouse would be lost by the backend, not
    // by Gatehouse). Then it is cut twice more while Gatehouse answers: its answers in flight and
    // not yet acked must be replayed after each reconnect.
    backend.remoteControl.dropSockets();
    tally.faults++;
    await burst(async () => {
      await statusReached(client, 'connected', BOUND_MS);
      await drop();
      await drop();
    });
    const before = tally.failedCount;
    await burst(async () => {});
    assert.equal(
      tally.failedCount,
      before,
      `after the drops every remote request succeeds: ${tally.summary()}`,
    );
  }
  for (const remote of remotes) {
    const ids = remote.received.filter((m) => m.method === undefined).map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, 'no request answered twice to the remote client');
  }
  const replayed = backend.remoteControl.serverEnvelopes.filter((e) => e.outcome === 'replayed').length;
  tally.report(t, `${replayed} answers replayed by Gatehouse after a reconnect (acked, not delivered twice)`);
  tally.assertNoneLost();
  assert.ok((await client.request('account/read', {})).result, 'the local client is served');
});
