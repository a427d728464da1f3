/**
 * The attestation envelope (spec D.3), encoded in the worker pool, and the attestation actor's
 * choices: who is asked, and which status each client outcome becomes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ActorSystem } from '../../src/runtime/actor-system.js';
import { BrokerError } from '../../src/protocol/errors.js';
import { pino } from 'pino';
import { silentLogger } from '../../src/util/logger.js';
import { createBroker } from '../../src/index.js';
import {
  AttestationStatus,
  MAX_ATTESTATION_TOKEN_LENGTH,
  attestationHeaderValue,
  type AttestationStatusCode,
} from '../../src/attestation/header.js';
import {
  ATTESTATION_ACTOR,
  AttestationMessage,
  askedConnection,
  attestationBehaviour,
} from '../../actors/attestation/attestation.actor.js';
import type { ScopedRequest } from '../../src/upstream/scoped-request.js';
import { checkAttestationHeader } from '../../src/backend/attestation-check.js';
import { Writable } from 'node:stream';

describe('the header value (spec D.3)', () => {
  test('compact JSON, v then s then t; t only with status ok', () => {
    assert.equal(
      attestationHeaderValue(AttestationStatus.ok, 'v1.test-token-1'),
      '{"v":1,"s":0,"t":"v1.test-token-1"}',
    );
    assert.equal(attestationHeaderValue(AttestationStatus.timeout), '{"v":1,"s":1}');
    assert.equal(attestationHeaderValue(AttestationStatus.requestFailed), '{"v":1,"s":2}');
    assert.equal(attestationHeaderValue(AttestationStatus.canceled), '{"v":1,"s":3}');
    assert.equal(attestationHeaderValue(AttestationStatus.malformed), '{"v":1,"s":4}');
    assert.equal(attestationHeaderValue(AttestationStatus.timeout, 'ignored'), '{"v":1,"s":1}');
  });

  test('quotes and control characters are JSON-escaped and stay legal', () => {
    assert.equal(
      attestationHeaderValue(AttestationStatus.ok, 'a"b\\c\n'),
      '{"v":1,"s":0,"t":"a\\"b\\\\c\\n"}',
    );
  });

  test('a value that is no legal header (non-ASCII, DEL) is left out', () => {
    assert.equal(attestationHeaderValue(AttestationStatus.ok, 'jeton-é'), null);
    assert.equal(attestationHeaderValue(AttestationStatus.ok, 'x\x7f'), null);
  });

  test('a token past the limit is sent as malformed, without the token', () => {
    const max = 'm'.repeat(MAX_ATTESTATION_TOKEN_LENGTH);
    assert.equal(attestationHeaderValue(AttestationStatus.ok, max), `{"v":1,"s":0,"t":"${max}"}`);
    assert.equal(attestationHeaderValue(AttestationStatus.ok, `${max}m`), '{"v":1,"s":4}');
  });

  test('the worker pool encodes it (the crypto actor), and refuses nonsense input', async (t) => {
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-attest-unit-'));
    const broker = createBroker({ codexHome: home, log: silentLogger() });
    t.after(async () => {
      await broker.close();
      rmSync(home, { recursive: true, force: true });
    });
    assert.equal(
      await broker.crypto('attestationHeader', { status: 0, token: 'v1.pool' }),
      '{"v":1,"s":0,"t":"v1.pool"}',
    );
    assert.equal(await broker.crypto('attestationHeader', { status: 1 }), '{"v":1,"s":1}');
    await assert.rejects(broker.crypto('attestationHeader', { status: 9 }), /unknown attestation status: 9/);
    await assert.rejects(
      broker.crypto('attestationHeader', { status: 0, token: 5 }),
      /attestation token must be a string/,
    );
  });
});

describe("the local backend's check of the header", () => {
  test('well-formed envelopes, and what each malformed one is told', () => {
    assert.deepEqual(checkAttestationHeader('{"v":1,"s":0,"t":"v1.x"}'), {
      ok: true,
      status: 0,
      token: 'v1.x',
    });
    assert.deepEqual(checkAttestationHeader('{"v":1,"s":3}'), { ok: true, status: 3 });
    const refused: [string, string][] = [
      ['v1.raw-token', 'not JSON'],
      ['[1]', 'not a JSON object'],
      ['{"v":2,"s":0,"t":"x"}', 'v is 2, expected 1'],
      ['{"v":1,"s":5}', 's is 5, expected 0..4'],
      ['{"v":1,"s":0}', 'status 0 without a string token'],
      ['{"v":1,"s":1,"t":"x"}', 'status 1 with a token'],
      ['{"v":1,"s":1,"x":true}', 'unexpected members: x'],
      ['{"s":1,"v":1}', 'not compact JSON in the order v, s, t'],
      ['{"v":1, "s":1}', 'not compact JSON in the order v, s, t'],
    ];
    for (const [value, reason] of refused)
      assert.deepEqual(checkAttestationHeader(value), { ok: false, reason }, value);
  });

  test('agrees with the encoder on every status', () => {
    for (const status of Object.values(AttestationStatus)) {
      const value = attestationHeaderValue(status, 'v1.tok')!;
      const check = checkAttestationHeader(value);
      assert.ok(check.ok && check.status === status, value);
    }
  });
});

describe('who is asked (spec D.1)', () => {
  test('the lowest connection id among the capable subscribers', () => {
    const capable = new Set(['3', '10', '12']);
    assert.equal(
      askedConnection(['12', '3', '10', '2'], (id) => capable.has(id)),
      '3',
    );
    assert.equal(
      askedConnection(['12', '10'], (id) => capable.has(id)),
      '10',
    );
    assert.equal(
      askedConnection(['2', '4'], (id) => capable.has(id)),
      undefined,
    );
    assert.equal(
      askedConnection([], () => true),
      undefined,
    );
  });
});

describe('the attestation actor: outcome -> status', () => {
  type Generate = (connectionId: string) => Promise<{ token: string }>;

  function harness(t: { after(fn: () => void): void }, generate: Generate, timeoutMs = 50) {
    const lines: string[] = [];
    const log = pino(
      { level: 'debug' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const system = new ActorSystem({ log: silentLogger() });
    t.after(() => system.stopAll());
    const asked: string[] = [];
    const attested: string[] = [];
    system.spawn(ATTESTATION_ACTOR, () =>
      attestationBehaviour({
        log,
        timeoutMs,
        capable: (id) => id !== '1',
        generate: (id) => {
          asked.push(id);
          return generate(id);
        },
        attested: (id) => {
          attested.push(id);
          return Promise.resolve();
        },
        encode: (status: AttestationStatusCode, token?: string) =>
          Promise.resolve(attestationHeaderValue(status, token)),
      }),
    );
    const headers = (request: Partial<ScopedRequest> = {}) =>
      system.ask<Record<string, string>>(ATTESTATION_ACTOR, AttestationMessage.headers, {
        kind: 'responses.ws',
        threadId: 'thread-1',
        connectionIds: ['1', '2'],
        authMode: 'chatgptAuthTokens',
        ...request,
      } satisfies ScopedRequest);
    return { headers, asked, attested, lines };
  }

  const header = (value: string) => ({ 'x-oai-attestation': value });

  test('a token: status 0, and the connection is marked attested', async (t) => {
    const h = harness(t, () => Promise.resolve({ token: 'v1.ok' }));
    assert.deepEqual(await h.headers(), header('{"v":1,"s":0,"t":"v1.ok"}'));
    assert.deepEqual(h.asked, ['2'], 'connection 1 is not capable');
    assert.deepEqual(h.attested, ['2']);
    assert.ok(!h.lines.join('').includes('v1.ok'), 'the token is not logged');
  });

  const failures: [string, BrokerError, string, RegExp][] = [
    [
      'a JSON-RPC error',
      new BrokerError('CLIENT_ERROR', 'failed', { code: -32000, message: 'x' }),
      '{"v":1,"s":2}',
      /attestation generation request failed code=-32000/,
    ],
    [
      'a malformed answer',
      new BrokerError('CLIENT_ERROR', 'malformed attestation/generate response'),
      '{"v":1,"s":4}',
      /failed to deserialize attestation generation response error_category=Data/,
    ],
    [
      'the server request timing out',
      new BrokerError('REQUEST_TIMEOUT', 'late'),
      '{"v":1,"s":1}',
      /attestation generation request timed out timeout_seconds=0/,
    ],
    [
      'the connection closing',
      new BrokerError('CONNECTION_CLOSED', 'connection closed'),
      '{"v":1,"s":3}',
      /attestation generation request canceled/,
    ],
  ];
  for (const [name, error, expected, logged] of failures) {
    test(`${name}: ${expected}, logged, not attested`, async (t) => {
      const h = harness(t, () => Promise.reject(error));
      assert.deepEqual(await h.headers(), header(expected));
      assert.deepEqual(h.attested, []);
      assert.match(h.lines.join(''), logged);
    });
  }

  test('a client whose ask never settles: the guard answers with status 1 shortly after the deadline', async (t) => {
    const h = harness(t, () => new Promise(() => {}), 30);
    assert.deepEqual(await h.headers(), header('{"v":1,"s":1}'));
  });

  test('a token past the limit: status 4 and a warning with its length only', async (t) => {
    const h = harness(t, () => Promise.resolve({ token: 'q'.repeat(MAX_ATTESTATION_TOKEN_LENGTH + 1) }));
    assert.deepEqual(await h.headers(), header('{"v":1,"s":4}'));
    assert.ok(!h.lines.join('').includes('qqqq'));
  });

  test('API-key auth or no capable subscriber: nobody is asked and no header', async (t) => {
    const h = harness(t, () => Promise.resolve({ token: 'unused' }));
    assert.deepEqual(await h.headers({ authMode: 'apikey' }), {});
    assert.deepEqual(await h.headers({ connectionIds: ['1'] }), {});
    assert.deepEqual(await h.headers({ connectionIds: [] }), {});
    assert.deepEqual(h.asked, []);
  });

  test('no caching, and asks run side by side: ten asks, ten requests, all answered', async (t) => {
    let n = 0;
    const h = harness(
      t,
      () => new Promise((resolve) => setTimeout(() => resolve({ token: `v1.${++n}` }), 10)),
    );
    const all = await Promise.all(Array.from({ length: 10 }, () => h.headers()));
    assert.equal(h.asked.length, 10);
    assert.deepEqual(
      all
        .map((x) => JSON.parse(x['x-oai-attestation']!) as { t: string })
        .map((e) => e.t)
        .sort(),
      Array.from({ length: 10 }, (_, i) => `v1.${i + 1}`).sort(),
    );
  });
});
