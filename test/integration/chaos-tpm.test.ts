/**
 * Chaos, TPM: a real swtpm killed (SIGKILL) and paused (SIGSTOP) while many device/key/sign
 * requests are in flight through the library API. Every sign is answered, with a signature or
 * with -32603 "device key platform error: TPM unavailable (…)", within a bound (a paused TPM
 * is caught by `gatehouse.device_key_tpm_timeout_ms`, and the signs queued behind it fail at once
 * instead of each waiting that long). After swtpm is restarted on the same state, or resumed, the
 * same key signs again and device/key/public returns the same public key: the key's blobs and
 * binding survived. `CHAOS_ROUNDS=N` repeats both faults N times.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createBroker } from '../../src/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { skippedFor } from '../helpers/skip-loudly.js';
import { startSwtpm, SWTPM_INSTALL_HINT, swtpmMissing, tpm2ToolsMissing } from '../helpers/swtpm.js';
import {
  ChaosTally,
  chaosRounds,
  within,
  inProcessCaller,
  startInFlight,
  signingWith,
} from '../helpers/chaos.js';

const IN_FLIGHT = 50;
/** The TPM deadline under test: long for swtpm (a sign takes milliseconds), short for a test. */
const TPM_TIMEOUT_MS = 2_000;
/** Every answer comes within this; without the fail-fast, 50 queued signs would need 100 s. */
const ANSWER_BOUND_MS = 30_000;

/**
 * A SIGKILL is a power cut to the TPM, and a TPM counts an unorderly shutdown as a failed
 * authorization when DA-protected objects were in use (the storage primary is one, as under
 * tpm2-tools). With swtpm's defaults a few cuts put it in dictionary-attack lockout for a long
 * time (TPM_RC_LOCKOUT), so the long form, which cuts power once per round, first raises the
 * number of tries and shortens the recovery time, as an owner may with this same tool.
 */
async function allowManyPowerCuts(tcti: string): Promise<void> {
  if (tpm2ToolsMissing()) {
    if (chaosRounds() > 2)
      console.error(`*** chaos-tpm: tpm2-tools missing; swtpm may lock out after a few SIGKILL rounds ***`);
    return;
  }
  await promisify(execFile)('tpm2_dictionarylockout', [
    '-s',
    '-n',
    '100000',
    '-t',
    '1',
    '-l',
    '1',
    '-T',
    tcti,
  ]);
}

test('swtpm killed and paused mid-sign: every sign answered, the same key signs after restart', async (t) => {
  const missing = swtpmMissing();
  if (skippedFor(t, missing && `${missing}; install with: ${SWTPM_INSTALL_HINT}`)) return;
  const swtpm = await startSwtpm();
  await allowManyPowerCuts(swtpm.tcti);
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-chaos-tpm-'));
  const broker = createBroker({
    codexHome: home,
    log: silentLogger(),
    settings: {
      deviceKeyTpm: swtpm.tcti,
      deviceKeyTpmTimeoutMs: TPM_TIMEOUT_MS,
      deviceKeyPkcs11Module: 'off',
    },
  });
  t.after(async () => {
    await broker.close(100);
    await swtpm.dispose();
    await rm(home, { recursive: true, force: true });
  });
  const tally = new ChaosTally('swtpm SIGKILL/SIGSTOP');
  const unavailable = new RegExp(
    `^device key platform error: TPM unavailable \\(${swtpm.tcti.replace(/[.]/g, '\\.')}\\): `,
  );

  const call = inProcessCaller(broker.connectInProcess());
  await call('initialize', { clientInfo: { name: 'chaos', version: '1' } });
  const created = await call('device/key/create', { accountUserId: 'account-user-1', clientId: 'cli_123' });
  const key = created.result;
  assert.ok(key, JSON.stringify(created.error));
  assert.equal(key.protectionClass, 'hardware_tpm');
  /** Counts each answer; a signature must verify, an error must be the TPM's. */
  const { sign, check: check } = signingWith(
    call,
    key,
    tally,
    (error) => {
      assert.equal(error?.code, -32603, JSON.stringify(error));
      assert.match(error.message, unavailable);
      return error.message.replace(unavailable, 'TPM unavailable (tcti): ');
    },
    ANSWER_BOUND_MS,
  );
  /** Signs already in flight when `fault` runs; resolves once all are answered (or lost). */
  const signsThrough = async (fault: () => Promise<void> | void): Promise<number> => {
    const signs = startInFlight(IN_FLIGHT, sign);
    await within(signs.reached(3), ANSWER_BOUND_MS, 'signing got going');
    tally.faults++;
    const started = performance.now();
    await fault();
    await check(signs.calls);
    return performance.now() - started;
  };
  /** The same key signs again, every time, with the same public key. */
  const recovered = async (what: string) => {
    const before = tally.failedCount;
    await check(Array.from({ length: 10 }, sign));
    assert.equal(tally.failedCount, before, `after ${what} every sign succeeds: ${tally.summary()}`);
    const again = await call('device/key/public', { keyId: key.keyId });
    assert.equal(again.result?.publicKeySpkiDerBase64, key.publicKeySpkiDerBase64, `same key after ${what}`);
  };

  const hangMs: number[] = [];
  for (let round = 0; round < chaosRounds(); round++) {
    await signsThrough(() => swtpm.stop('SIGKILL'));
    // While it is down, a sign fails at once with the same clear error.
    await check([sign()]);
    await swtpm.start();
    await recovered('a SIGKILL and a restart on the same state');

    hangMs.push(await signsThrough(() => swtpm.pause(true)));
    swtpm.pause(false);
    await recovered('a SIGSTOP and a SIGCONT');
  }
  tally.assertNoneLost();
  assert.ok(tally.failedCount > 0, 'the faults hit signs in flight');
  tally.report(
    t,
    `paused TPM: every in-flight sign answered within ${Math.round(Math.max(...hangMs))} ms (deadline ${TPM_TIMEOUT_MS} ms)`,
  );
});
