/**
 * The pieces behind `thread/compact/start` and `thread/realtime/start` on their own: what a
 * compaction leaves as the conversation (compaction.ts), how a realtime call answer is read, and
 * call creation against the local backend (credentials, the 401 loop, the scoped headers asked
 * once per attempt, failures as data).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  COMPACTION_TRIGGER,
  approxTokens,
  compactedHistory,
  compactionInput,
  retainedUserMessages,
} from '../../actors/thread/compaction.js';
import { LOCAL_ANSWER_SDP } from '../../src/backend/handlers.js';
import { startLocalBackend, type LocalBackend } from '../../src/backend/local-backend.js';
import { chatgptClaims, mintJwt } from '../../src/backend/tokens.js';
import { assistantMessage, developerMessage, userMessage } from '../../src/relay/outbound-headers.js';
import type { AuthSource, UpstreamAuth } from '../../src/upstream/auth-source.js';
import { UpstreamAgents } from '../../src/upstream/http-request.js';
import { createRealtimeCall, readAnswer, realtimeCallsUrl } from '../../src/upstream/realtime-call.js';
import { trustedContext } from '../../src/upstream/trust.js';

// --- compaction ----------------------------------------------------------------------------------

test('the compaction request is the conversation and the trigger, last', () => {
  const history = [developerMessage('d'), userMessage('u')];
  assert.deepEqual(compactionInput(history), [...history, { type: 'compaction_trigger' }]);
  assert.deepEqual(compactionInput([]), [COMPACTION_TRIGGER]);
  assert.equal(history.length, 2, 'the conversation itself is not changed');
});

test('a compaction item is the summary: user messages kept, assistant, developer and old compactions dropped', () => {
  const history = [
    developerMessage('dev'),
    userMessage('one'),
    assistantMessage('answer one'),
    { type: 'compaction', encrypted_content: 'old' },
    userMessage('two'),
    assistantMessage('answer two'),
  ];
  const outputs = [
    { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'ignored' }] },
    { type: 'compaction', id: 'cmp_1', encrypted_content: 'new' },
  ];
  assert.deepEqual(compactedHistory(history, outputs, 'dev'), {
    ok: true,
    history: [
      userMessage('one'),
      userMessage('two'),
      { type: 'compaction', encrypted_content: 'new' },
      developerMessage('dev'),
    ],
  });
  // Without developer instructions nothing is re-injected.
  const bare = compactedHistory(history, outputs, null);
  assert.ok(bare.ok && bare.history.at(-1)!.type === 'compaction');
});

test('without a compaction item the assistant text is the summary; nothing usable fails with codex text', () => {
  const text = (t: string) => ({
    type: 'message',
    role: 'assistant',
    content: [{ type: 'output_text', text: t }],
  });
  assert.deepEqual(compactedHistory([userMessage('q')], [text('Compacted.')], null), {
    ok: true,
    history: [userMessage('q'), assistantMessage('Compacted.')],
  });
  assert.deepEqual(compactedHistory([userMessage('q')], [{ type: 'reasoning' }], null), {
    ok: false,
    message: 'remote compaction v2 expected exactly one compaction output item, got 0 from 1 output items',
  });
  const two = [
    { type: 'compaction', encrypted_content: 'a' },
    { type: 'compaction', encrypted_content: 'b' },
    text('x'),
  ];
  assert.deepEqual(compactedHistory([], two, null), {
    ok: false,
    message: 'remote compaction v2 expected exactly one compaction output item, got 2 from 3 output items',
  });
});

test('retained user messages: newest first within the token budget, in their order', () => {
  const eight = userMessage('12345678'); // 2 tokens
  const history = [userMessage('oldest'), eight, assistantMessage('x'.repeat(400)), userMessage('abcd')];
  assert.equal(approxTokens('12345678'), 2);
  assert.equal(approxTokens('é'), 1);
  assert.deepEqual(retainedUserMessages(history, 3), [eight, userMessage('abcd')]);
  // The message that does not fit whole stops the walk: older ones are not considered.
  assert.deepEqual(
    retainedUserMessages([userMessage('a'), userMessage('x'.repeat(40)), userMessage('b')], 5),
    [userMessage('b')],
  );
  assert.deepEqual(retainedUserMessages(history, 0), []);
});

// --- realtime call answers -----------------------------------------------------------------------

test('a realtime call answer: SDP body and rtc_ Location (the real backend), or JSON (the local one)', () => {
  assert.deepEqual(readAnswer('application/sdp', 'v=0\r\n', '/v1/realtime/calls/calls/rtc_abc?x=1'), {
    ok: true,
    callId: 'rtc_abc',
    sdp: 'v=0\r\n',
  });
  assert.deepEqual(readAnswer('application/sdp', 'v=0', undefined), {
    ok: false,
    message: 'realtime call response missing Location',
  });
  assert.deepEqual(readAnswer('text/plain', 'v=0', '/calls/call_1'), {
    ok: false,
    message: 'realtime call Location does not contain a call id: /calls/call_1',
  });
  assert.deepEqual(readAnswer('application/json; charset=utf-8', '{"id":"call_1","sdp":"v=0"}', undefined), {
    ok: true,
    callId: 'call_1',
    sdp: 'v=0',
  });
  assert.equal(readAnswer('application/json', '{"id":"call_1"}', undefined).ok, false);
});

// --- realtime call creation against the local backend --------------------------------------------

let backend: LocalBackend;
let agents: UpstreamAgents;

before(async () => {
  backend = await startLocalBackend({ port: 0, recordBodies: true });
  agents = new UpstreamAgents(trustedContext({ CODEX_CA_CERTIFICATE: backend.caCertPath }));
});
after(async () => {
  agents.destroy();
  await backend.close();
});

const jwt = () =>
  mintJwt(
    chatgptClaims({ email: 'a@b.c', accountId: 'acct-9', userId: 'u', planType: 'plus', expiresInSec: 600 }),
  );

class RefreshingAuth implements AuthSource {
  refreshes = 0;
  constructor(
    public auth: UpstreamAuth | null,
    private readonly fresh: string,
  ) {}
  current() {
    return Promise.resolve(this.auth);
  }
  unauthorized(failed: UpstreamAuth) {
    this.refreshes++;
    this.auth = { ...failed, bearer: this.fresh, generation: failed.generation + 1 };
    return Promise.resolve(this.auth);
  }
}

test('call creation: a 401 is refreshed once, the scoped headers are asked for each attempt', async () => {
  backend.requests.length = 0;
  const stale = jwt();
  const fresh = jwt();
  backend.revokeBearer(stale);
  const auth = new RefreshingAuth(
    { mode: 'chatgptAuthTokens', bearer: stale, accountId: 'acct-9', generation: 1 },
    fresh,
  );
  const scopedFor: string[] = [];
  const answer = await createRealtimeCall(
    {
      auth,
      agents,
      chatgptBaseUrl: backend.chatgptBaseUrl,
      timeoutMs: 5_000,
      scoped: (a) => {
        scopedFor.push(a.bearer);
        return Promise.resolve({ 'x-oai-attestation': `{"v":1,"s":0,"t":"tok-${scopedFor.length}"}` });
      },
    },
    { sdp: 'v=offer', session: { type: 'realtime' }, headers: { originator: 'unit' } },
  );
  assert.equal(answer.ok, true, JSON.stringify(answer));
  assert.ok(answer.ok && /^call_[0-9a-f]+$/.test(answer.callId) && answer.sdp === LOCAL_ANSWER_SDP);
  assert.equal(auth.refreshes, 1);
  assert.deepEqual(scopedFor, [stale, fresh]);
  const calls = backend.requests.filter((r) => r.route === 'realtime.calls');
  assert.deepEqual(
    calls.map((r) => [r.status, r.headers.authorization, r.headers['x-oai-attestation']]),
    [
      [401, `Bearer ${stale}`, '{"v":1,"s":0,"t":"tok-1"}'],
      [201, `Bearer ${fresh}`, '{"v":1,"s":0,"t":"tok-2"}'],
    ],
  );
  assert.equal(calls[1]!.headers['chatgpt-account-id'], 'acct-9');
  assert.equal(
    calls[1]!.path,
    new URL(realtimeCallsUrl(backend.chatgptBaseUrl)).pathname + '?intent=quicksilver&architecture=avas',
  );
});

test('call creation failures are data: not logged in, a refused status, a dead port', async () => {
  const deps = (auth: AuthSource, base = backend.chatgptBaseUrl) => ({
    auth,
    agents,
    chatgptBaseUrl: base,
    timeoutMs: 2_000,
    scoped: () => Promise.resolve({}),
  });
  const request = { sdp: 'v=0', session: {}, headers: {} };
  assert.deepEqual(await createRealtimeCall(deps(new RefreshingAuth(null, 'x')), request), {
    ok: false,
    message: 'not logged in: log in with account/login/start first',
  });
  backend.faults.add({ route: 'realtime.calls', action: { kind: 'status', status: 429, body: 'slow down' } });
  const auth = new RefreshingAuth({ mode: 'chatgpt', bearer: jwt(), accountId: null, generation: 1 }, 'x');
  assert.deepEqual(await createRealtimeCall(deps(auth), request), {
    ok: false,
    message: `unexpected status 429 Too Many Requests: slow down, url: ${backend.chatgptBaseUrl}/codex/realtime/calls`,
  });
  const dead = await createRealtimeCall(deps(auth, 'https://127.0.0.1:1/backend-api'), request);
  assert.equal(dead.ok, false);
  assert.match(
    (dead as { message: string }).message,
    /^stream disconnected before completion: .*ECONNREFUSED/,
  );
});
