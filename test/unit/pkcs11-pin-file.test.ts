/**
 * The PIN file and the start-up lock of the PKCS#11 provider, on a real file system but without
 * a token: modes, atomic replacement, errors that name files but never PINs, and a lock that
 * serialises holders and recovers from a dead one.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { withInitLock } from '../../src/device-key/pkcs11/init-lock.js';
import {
  ensurePrivateFolder,
  randomPin,
  readPins,
  writePinsAtomically,
} from '../../src/device-key/pkcs11/pin-file.js';
import { ProtocolError } from '../../src/protocol/errors.js';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-pins-'));
after(() => rmSync(work, { recursive: true, force: true }));

const pins = { tokenLabel: 'gatehouse', soPin: 'so-secret-0123456789', userPin: 'user-secret-0123456789' };

function platformFailure(check: (message: string) => boolean) {
  return (error: unknown) =>
    error instanceof ProtocolError &&
    error.message.startsWith('device key platform error: ') &&
    check(error.message);
}

test('PINs are written 0600 into new 0700 folders, replaced atomically, and read back', () => {
  const file = join(work, 'a', 'b', 'pins.json');
  writePinsAtomically(file, pins);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(work, 'a')).mode & 0o777, 0o700);
  assert.equal(statSync(join(work, 'a', 'b')).mode & 0o777, 0o700);
  assert.deepEqual(readPins(file), pins);

  const replaced = { ...pins, userPin: 'another-user-pin' };
  writePinsAtomically(file, replaced);
  assert.deepEqual(readPins(file), replaced);
  assert.deepEqual(readdirSync(join(work, 'a', 'b')), ['pins.json'], 'no temporary file left');
});

test('an existing folder keeps its mode', () => {
  const folder = mkdtempSync(join(work, 'existing-'));
  const before = statSync(folder).mode & 0o777;
  ensurePrivateFolder(folder);
  assert.equal(statSync(folder).mode & 0o777, before);
});

test('unreadable and malformed PIN files name the file and never echo their content', () => {
  const absent = join(work, 'absent', 'pins.json');
  assert.throws(
    () => readPins(absent),
    platformFailure((m) => m.includes(absent) && m.includes('ENOENT')),
  );
  const garbled = join(work, 'garbled.json');
  writeFileSync(garbled, `{"userPin": ${pins.userPin}`);
  assert.throws(
    () => readPins(garbled),
    platformFailure((m) => m.includes(garbled) && !m.includes(pins.userPin)),
  );
  const partial = join(work, 'partial.json');
  writeFileSync(partial, JSON.stringify({ soPin: pins.soPin }));
  assert.throws(
    () => readPins(partial),
    platformFailure((m) => m.includes('soPin and userPin') && !m.includes(pins.soPin)),
  );
});

test('random PINs respect the token limits', () => {
  assert.equal(randomPin(4, 255).length, 32);
  assert.equal(randomPin(4, 8).length, 8);
  assert.equal(randomPin(40, 64).length, 40);
  assert.notEqual(randomPin(4, 255), randomPin(4, 255));
});

test('the start-up lock runs holders one at a time and is released after a failure', async () => {
  const lock = join(work, 'serial.lock');
  const timing = { timeoutMs: 5_000, staleMs: 60_000, pollMs: 2 };
  let inside = 0;
  let most = 0;
  const holder = async (n: number) => {
    await sleep(n);
    return withInitLock(
      lock,
      () => {
        inside += 1;
        most = Math.max(most, inside);
        // Work under the lock is synchronous, as C_Initialize and C_InitToken are.
        const until = Date.now() + 5;
        while (Date.now() < until);
        inside -= 1;
        return n;
      },
      timing,
    );
  };
  assert.deepEqual(await Promise.all([0, 0, 1, 1, 2].map(holder)), [0, 0, 1, 1, 2]);
  assert.equal(most, 1);

  assert.throws(() => statSync(lock), /ENOENT/);
  await assert.rejects(
    withInitLock(lock, () => {
      throw new Error('work failed');
    }),
    /work failed/,
  );
  assert.equal(await withInitLock(lock, () => 'free again', timing), 'free again');
});

test('a lock left by a dead process is taken over; a live holder makes others wait, then time out', async () => {
  const lock = join(work, 'stale.lock');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  writeFileSync(lock, dead.stdout);
  assert.equal(await withInitLock(lock, () => 'taken over'), 'taken over');

  writeFileSync(lock, String(process.pid));
  await assert.rejects(
    withInitLock(lock, () => 'never', { timeoutMs: 50, staleMs: 60_000, pollMs: 5 }),
    platformFailure((m) => m.includes(`timed out waiting for lock ${lock}`)),
  );
  rmSync(lock);
});
