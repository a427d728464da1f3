/**
 * Chaos, worker threads: the piscina pool (the crypto actor) terminated and the comlink key-store
 * threads crashed (they exit between two calls; see src/runtime/thread-host.ts for why they are
 * never terminated from outside) while many requests are in flight, through the library API (a
 * worker thread cannot be killed from outside its process). Every request gets exactly one
 * answer, a result or a WORKER_FAILED / -32603 error naming the crash; then the same broker
 * serves the same requests again and its thread counts come back. `CHAOS_ROUNDS=N` repeats each scenario N times.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBroker, isBrokerError, type Broker } from '../../src/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import {
  ChaosTally,
  chaosRounds,
  eventually,
  within,
  inProcessCaller,
  settleWithin,
  startInFlight,
  signingWith,
} from '../helpers/chaos.js';

const WORKER_THREADS = 2;
const IN_FLIGHT = 200;
/** Far above what a digest or a SoftHSM2 signature takes, even on a loaded machine. */
const ANSWER_BOUND_MS = 30_000;
const POOL_CRASH =
  /^a worker-pool thread exited before the task was done \((worker exited with code: \d+|Terminating worker thread)\)$/;
const KEY_STORE_CRASH =
  /^device key platform error: the key-store worker stopped during the request \(device-key\/os_protected_nonextractable worker exited with code \d+\); retry$/;

function brokerFor(t: { after(fn: () => Promise<void>): void }, settings: Record<string, unknown>): Broker {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-chaos-workers-'));
  const broker = createBroker({
    codexHome: home,
    log: silentLogger(),
    settings: { workerThreads: WORKER_THREADS, ...settings },
  });
  t.after(async () => {
    await broker.close(100);
    await rm(home, { recursive: true, force: true });
  });
  return broker;
}

/** Distinct inputs big enough that a few are always on the threads when the crash comes. */
function digestInput(round: number, i: number): string {
  return `round ${round} request ${i} `.repeat(2048);
}

function sha256(data: string): string {
  return createHash('sha256').update(data).digest('base64url');
}

/** Starts `count` digests at once. */
function digests(broker: Broker, round: number, count: number) {
  return startInFlight(count, (i) =>
    broker.crypto<string>('digest', { algorithm: 'sha256', data: digestInput(round, i) }),
  );
}

/** Checks each digest answer and counts it; a wrong digest or an unexpected error fails. */
async function tallyDigests(tally: ChaosTally, round: number, calls: Promise<string>[]): Promise<void> {
  tally.sent += calls.length;
  const results = await settleWithin(calls, ANSWER_BOUND_MS);
  results.forEach((result, i) => {
    if (!result) tally.lost++;
    else if (result.status === 'fulfilled') {
      assert.equal(result.value, sha256(digestInput(round, i)));
      tally.succeeded++;
    } else {
      const e: unknown = result.reason;
      assert.ok(isBrokerError(e, 'WORKER_FAILED'), `unexpected failure: ${String(e)}`);
      assert.match(e.message, POOL_CRASH);
      tally.failed(e.message.replace(/\d+\)$/, 'N)'));
    }
  });
}

test('pool threads terminated with tasks in flight: all answered, the crypto actor lives, the pool recovers', async (t) => {
  const broker = brokerFor(t, { deviceKeyTpm: 'off', deviceKeyPkcs11Module: 'off' });
  const tally = new ChaosTally('pool threads');
  assert.equal(broker.workerPool.threadCount, 0, 'the pool is made on the first task');
  assert.equal(await broker.crypto('digest', { algorithm: 'sha256', data: 'warm' }), sha256('warm'));

  const rssBefore = process.memoryUsage().rss;
  // Every other round crashes twice, so even the short form has both kinds.
  const rounds = 2 * chaosRounds();
  for (let round = 0; round < rounds; round++) {
    const batch = digests(broker, round, IN_FLIGHT);
    await within(batch.reached(10), ANSWER_BOUND_MS, 'the batch got going');
    tally.faults++;
    await broker.workerPool.crashThreads();
    if (round % 2 === 1) {
      // Again while piscina's replacements are still starting: a crash during bootstrap is the
      // case where piscina stops replacing threads on its own.
      await new Promise((resolve) => setTimeout(resolve, 5));
      tally.faults++;
      await broker.workerPool.crashThreads();
    }
    await tallyDigests(tally, round, batch.calls);
    // The same broker serves the same kind of request again, every one of them.
    const after = digests(broker, round + rounds, 20);
    const before = tally.failedCount;
    await tallyDigests(tally, round + rounds, after.calls);
    assert.equal(tally.failedCount, before, `after the crash every digest succeeds: ${tally.summary()}`);
  }
  tally.assertNoneLost();
  assert.ok(tally.failedCount > 0, 'the crashes hit tasks in flight');
  assert.ok(broker.system.has('crypto'), 'the crypto actor was not stopped by supervision');
  assert.ok(
    await eventually(() => broker.workerPool.threadCount >= 1, ANSWER_BOUND_MS),
    'the pool has threads again',
  );
  assert.ok(broker.workerPool.threadCount <= WORKER_THREADS);
  const rssGrowthMiB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  tally.report(
    t,
    `pool threads now ${broker.workerPool.threadCount}; RSS ${rssGrowthMiB.toFixed(1)} MiB more than after the first task`,
  );
});

test('key-store threads crashed and pool threads terminated together mid-sign: all answered, same key signs again', async (t) => {
  if (skippedFor(t, softhsmMissing())) return;
  const broker = brokerFor(t, { deviceKeyTpm: 'off' });
  const tally = new ChaosTally('key-store + pool threads');
  const call = inProcessCaller(broker.connectInProcess());
  await call('initialize', { clientInfo: { name: 'chaos', version: '1' } });
  const created = await call('device/key/create', {
    accountUserId: 'account-user-1',
    clientId: 'cli_123',
    protectionPolicy: 'allow_os_protected_nonextractable',
  });
  const key = created.result;
  assert.ok(key, JSON.stringify(created.error));
  const { sign, check: checkSigns } = signingWith(
    call,
    key,
    tally,
    (error) => {
      assert.equal(error?.code, -32603, JSON.stringify(error));
      assert.match(error.message, KEY_STORE_CRASH);
      return error.message.replace(/code \d+/, 'code N');
    },
    ANSWER_BOUND_MS,
  );

  // Both pools warm, so the crash meets requests on running threads rather than starting ones.
  await checkSigns([sign()]);
  await tallyDigests(tally, -1, digests(broker, -1, 1).calls);
  const rounds = chaosRounds();
  for (let round = 0; round < rounds; round++) {
    const signs = startInFlight(IN_FLIGHT, sign);
    const batch = digests(broker, round, IN_FLIGHT / 2);
    await within(Promise.all([signs.reached(5), batch.reached(5)]), ANSWER_BOUND_MS, 'both got going');
    tally.faults += 2;
    await Promise.all([broker.deviceKeys.crashWorkers(), broker.workerPool.crashThreads()]);
    await Promise.all([checkSigns(signs.calls), tallyDigests(tally, round, batch.calls)]);

    const before = tally.failedCount;
    await checkSigns(Array.from({ length: 20 }, sign));
    assert.equal(tally.failedCount, before, `after the crash every sign succeeds: ${tally.summary()}`);
    const threads = broker.deviceKeys.threadCount;
    assert.ok(threads >= 1 && threads <= WORKER_THREADS, `key-store threads back: ${threads}`);
    const again = await call('device/key/public', { keyId: key.keyId });
    assert.equal(again.result?.publicKeySpkiDerBase64, key.publicKeySpkiDerBase64, 'same public key');
  }
  tally.assertNoneLost();
  assert.ok(tally.failedCount > 0, 'the crashes hit requests in flight');
  tally.report(
    t,
    `key-store threads ${broker.deviceKeys.threadCount}, pool threads ${broker.workerPool.threadCount}`,
  );
});
