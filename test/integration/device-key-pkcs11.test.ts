/**
 * The PKCS#11 provider against a real SoftHSM2: zero-configuration token set-up and its PIN file,
 * keys that verify with Node and with openssl, private keys the token will not reveal, restarts
 * (same process and a fresh one), two worker threads signing at once, and the failures callers
 * see. Without SoftHSM2 every test says so and skips; none passes without it.
 */
import assert from 'node:assert/strict';
import { skippedFor } from '../helpers/skip-loudly.js';
import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pkcs11js from 'pkcs11js';
import { createPkcs11Provider } from '../../src/device-key/pkcs11/pkcs11-provider.js';
import type { KeyProvider, Pkcs11ProviderOptions } from '../../src/device-key/provider.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  showSlots,
  signInWorker,
  softhsmMissing,
  softhsmModule,
  TokenInspector,
  workerMessage,
  writeSofthsmConf,
} from '../helpers/softhsm.js';

const missing = softhsmMissing();
const work = mkdtempSync(join(tmpdir(), 'gatehouse-pkcs11-'));
// Read by SoftHSM2 at this process's first C_Initialize; set before any provider exists.
const conf = writeSofthsmConf(join(work, 'softhsm'));
process.env.SOFTHSM2_CONF = conf;

const open: KeyProvider[] = [];
after(async () => {
  for (const provider of open) await provider.close();
  rmSync(work, { recursive: true, force: true });
});

let labels = 0;
/** Options for a token of its own (labels isolate tests sharing one token folder). */
function tokenOptions(name: string): Pkcs11ProviderOptions {
  labels += 1;
  return {
    module: softhsmModule()!,
    tokenLabel: `gh-${name}-${labels}`,
    pinFile: join(work, 'state', `${name}-${labels}`, 'device-keys', 'pkcs11-pins.json'),
  };
}

async function provider(options: Pkcs11ProviderOptions): Promise<KeyProvider> {
  const created = await createPkcs11Provider(options);
  open.push(created);
  return created;
}

function readPinFile(path: string): { tokenLabel: string; soPin: string; userPin: string } {
  return JSON.parse(readFileSync(path, 'utf8')) as { tokenLabel: string; soPin: string; userPin: string };
}

function verifies(spki: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return verify(
    'sha256',
    message,
    { key: Buffer.from(spki), format: 'der', type: 'spki', dsaEncoding: 'der' },
    signature,
  );
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest();

function isPlatformError(pattern: RegExp) {
  return (error: unknown) =>
    error instanceof ProtocolError &&
    error.message.startsWith('device key platform error: ') &&
    pattern.test(error.message);
}

test('first use initialises the token and writes the PIN file (0600, folders 0700) first', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('first-use');
  assert.doesNotMatch(showSlots(conf), new RegExp(`Label:\\s+${options.tokenLabel}\\s`));

  await provider(options);

  const slots = showSlots(conf);
  assert.equal(slots.match(new RegExp(`Label:\\s+${options.tokenLabel}\\s`, 'g'))?.length, 1, slots);
  const pins = readPinFile(options.pinFile);
  assert.equal(pins.tokenLabel, options.tokenLabel);
  assert.match(pins.soPin, /^[\w-]{32}$/);
  assert.match(pins.userPin, /^[\w-]{32}$/);
  assert.notEqual(pins.soPin, pins.userPin);
  assert.equal(statSync(options.pinFile).mode & 0o777, 0o600);
  assert.equal(statSync(join(options.pinFile, '..')).mode & 0o777, 0o700);
  assert.equal(statSync(join(options.pinFile, '..', '..')).mode & 0o777, 0o700);

  // A second provider logs in to that token instead of making another one.
  await provider(options);
  assert.equal(showSlots(conf).match(new RegExp(`Label:\\s+${options.tokenLabel}\\s`, 'g'))?.length, 1);
  assert.deepEqual(readPinFile(options.pinFile), pins);
});

test('create returns a 91-byte SPKI; signatures verify with node:crypto and openssl', async (t) => {
  if (skippedFor(t, missing)) return;
  const keys = await provider(tokenOptions('sign'));

  const spki = await keys.create('key-sign');
  assert.equal(spki.length, 91);
  const publicKey = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  assert.equal(publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.deepEqual(await keys.publicKey('key-sign'), spki);

  const message = Buffer.from('device key payload to sign');
  const signature = await keys.signDigest('key-sign', sha256(message));
  assert.ok(signature);
  assert.equal(signature[0], 0x30, 'DER SEQUENCE');
  assert.ok(verifies(spki, message, signature));
  assert.ok(!verifies(spki, Buffer.from('another payload'), signature));

  const dir = mkdtempSync(join(work, 'openssl-'));
  writeFileSync(join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'sig.der'), signature);
  writeFileSync(join(dir, 'msg'), message);
  const verdict = execFileSync(
    'openssl',
    ['dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'sig.der', 'msg'],
    { cwd: dir, encoding: 'utf8' },
  );
  assert.equal(verdict.trim(), 'Verified OK');
});

test('the private key is sensitive and never extractable; the token refuses its value', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('sensitive');
  const keys = await provider(options);
  await keys.create('key-sensitive');

  const token = new TokenInspector(options.module, options.tokenLabel, readPinFile(options.pinFile).userPin);
  try {
    const privateKeys = token.find(pkcs11js.CKO_PRIVATE_KEY, 'key-sensitive');
    assert.equal(privateKeys.length, 1);
    const key = privateKeys[0]!;
    assert.equal(token.flag(key, pkcs11js.CKA_TOKEN), true);
    assert.equal(token.flag(key, pkcs11js.CKA_PRIVATE), true);
    assert.equal(token.flag(key, pkcs11js.CKA_EXTRACTABLE), false);
    assert.equal(token.flag(key, pkcs11js.CKA_SENSITIVE), true);
    assert.equal(token.flag(key, pkcs11js.CKA_NEVER_EXTRACTABLE), true);
    assert.equal(token.flag(key, pkcs11js.CKA_ALWAYS_SENSITIVE), true);
    assert.equal(token.flag(key, pkcs11js.CKA_SIGN), true);
    assert.throws(
      () => token.library.C_GetAttributeValue(token.session, key, [{ type: pkcs11js.CKA_VALUE }]),
      (error: unknown) =>
        error instanceof pkcs11js.Pkcs11Error && error.code === pkcs11js.CKR_ATTRIBUTE_SENSITIVE,
    );
    // Nor can it be made extractable after the fact. (pkcs11js throws a plain Error here: its
    // C_SetAttributeValue override bypasses the wrapper that makes Pkcs11Errors.)
    assert.throws(
      () =>
        token.library.C_SetAttributeValue(token.session, key, [
          { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        ]),
      { message: /^CKR_ATTRIBUTE_READ_ONLY:/ },
    );
    assert.equal(token.flag(key, pkcs11js.CKA_EXTRACTABLE), false);
    assert.equal(token.find(pkcs11js.CKO_PUBLIC_KEY, 'key-sensitive').length, 1);
  } finally {
    token.close();
  }
});

test('a restarted provider, in this process and in a fresh one, finds the key and signs', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('restart');
  const first = await createPkcs11Provider(options);
  const spki = await first.create('key-restart');
  await first.close();
  await assert.rejects(first.signDigest('key-restart', sha256(Buffer.from('x'))), isPlatformError(/closed/));

  const second = await provider(options);
  assert.deepEqual(await second.publicKey('key-restart'), spki);
  const message = Buffer.from('after restart');
  assert.ok(verifies(spki, message, (await second.signDigest('key-restart', sha256(message)))!));

  // A new process loads the library afresh, reads SOFTHSM2_CONF and the PIN file itself.
  const providerUrl = new URL('../../src/device-key/pkcs11/pkcs11-provider.ts', import.meta.url).href;
  const script = `
    import { createHash } from 'node:crypto';
    const { createPkcs11Provider } = await import(${JSON.stringify(providerUrl)});
    const keys = await createPkcs11Provider(${JSON.stringify(options)});
    const signature = await keys.signDigest('key-restart', createHash('sha256').update('fresh process').digest());
    await keys.close();
    process.stdout.write(Buffer.from(signature).toString('hex'));
  `;
  const output = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: { ...process.env, SOFTHSM2_CONF: conf },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.ok(verifies(spki, Buffer.from('fresh process'), Buffer.from(output.trim(), 'hex')));
});

test('two worker threads, each with its own provider, sign concurrently and every signature verifies', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('threads');
  const keys = await provider(options);
  const spki = await keys.create('key-threads');

  const workers = 2;
  const count = 1_000;
  const gate = new SharedArrayBuffer(4);
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: workers }, (_, worker) =>
      signInWorker({ worker, options, keyId: 'key-threads', count, gate, workers }),
    ),
  );
  const wallMs = performance.now() - started;

  for (const [worker, result] of results.entries()) {
    assert.equal(result.signatures.length, count);
    result.signatures.forEach((signature, index) =>
      assert.ok(verifies(spki, workerMessage(worker, index), signature), `worker ${worker} #${index}`),
    );
  }
  const slowestMs = Math.max(...results.map((r) => r.signingMs));
  console.log(
    `pkcs11 throughput, ${workers} threads: ${Math.round((workers * count) / (slowestMs / 1000))} signs/s ` +
      `(${workers * count} signatures, ${slowestMs.toFixed(0)} ms signing, ${wallMs.toFixed(0)} ms with worker start-up)`,
  );
  // The main thread's provider still works after the workers' providers closed their sessions.
  const message = Buffer.from('main thread after workers');
  assert.ok(verifies(spki, message, (await keys.signDigest('key-threads', sha256(message)))!));
});

test('unknown keys are undefined; delete removes both objects, is idempotent, and other providers notice', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('delete');
  const keys = await provider(options);
  const digest = sha256(Buffer.from('m'));

  assert.equal(await keys.publicKey('never-created'), undefined);
  assert.equal(await keys.signDigest('never-created', digest), undefined);
  await keys.delete('never-created');

  await keys.create('key-delete');
  await assert.rejects(keys.create('key-delete'), isPlatformError(/already exists/));
  const other = await provider(options);
  assert.ok(await other.publicKey('key-delete')); // caches the handles and the SPKI
  assert.ok(await other.signDigest('key-delete', digest));

  await keys.delete('key-delete');
  assert.equal(await keys.publicKey('key-delete'), undefined);
  assert.equal(await keys.signDigest('key-delete', digest), undefined);
  // `other` holds stale handles: it must report the key gone, not fail or answer from its cache.
  assert.equal(await other.publicKey('key-delete'), undefined);
  assert.equal(await other.signDigest('key-delete', digest), undefined);
  await keys.delete('key-delete');

  const token = new TokenInspector(options.module, options.tokenLabel, readPinFile(options.pinFile).userPin);
  try {
    assert.equal(token.find(pkcs11js.CKO_PRIVATE_KEY, 'key-delete').length, 0);
    assert.equal(token.find(pkcs11js.CKO_PUBLIC_KEY, 'key-delete').length, 0);
  } finally {
    token.close();
  }

  // A new key under the same id is a new key.
  const again = await keys.create('key-delete');
  assert.ok(verifies(again, Buffer.from('m'), (await other.signDigest('key-delete', digest))!));
  await assert.rejects(
    keys.signDigest('key-delete', new Uint8Array(20)),
    (error: unknown) =>
      error instanceof ProtocolError && /cryptography error: digest is 20 bytes/.test(error.message),
  );
});

test('a token whose PIN file is missing is a platform error naming the file, never a PIN', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('no-pins');
  await provider(options);
  const pins = readPinFile(options.pinFile);

  const lostPins = join(work, 'elsewhere', 'pins.json');
  await assert.rejects(createPkcs11Provider({ ...options, pinFile: lostPins }), (error: unknown) => {
    assert.ok(isPlatformError(/PIN file/)(error), String(error));
    const message = (error as ProtocolError).message;
    assert.ok(message.includes(lostPins), message);
    assert.ok(!message.includes(pins.soPin) && !message.includes(pins.userPin));
    return true;
  });

  // A PIN file that is not JSON must not be quoted back either.
  const garbled = join(work, 'garbled', 'pins.json');
  mkdirSync(join(work, 'garbled'), { recursive: true });
  writeFileSync(garbled, `not-json-${pins.userPin}`);
  await assert.rejects(createPkcs11Provider({ ...options, pinFile: garbled }), (error: unknown) => {
    const message = (error as ProtocolError).message;
    assert.ok(isPlatformError(/not valid JSON/)(error), message);
    assert.ok(message.includes(garbled) && !message.includes(pins.userPin), message);
    return true;
  });
});

test('a module path that does not exist is a platform error naming it', async (t) => {
  if (skippedFor(t, missing)) return;
  const modulePath = join(work, 'no-such-dir', 'libnothing-pkcs11.so');
  await assert.rejects(
    createPkcs11Provider({ ...tokenOptions('no-module'), module: modulePath }),
    isPlatformError(
      new RegExp(`PKCS#11 module not found: ${modulePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    ),
  );
});

test('a token left half-initialised by a crash (no user PIN yet) is finished from the PIN file', async (t) => {
  if (skippedFor(t, missing)) return;
  const options = tokenOptions('half-init');
  // What the provider leaves behind when it dies between C_InitToken and C_InitPIN.
  const soPin = 'so-pin-from-a-crashed-start';
  const userPin = 'user-pin-from-a-crashed-start';
  mkdirSync(join(options.pinFile, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(options.pinFile, JSON.stringify({ tokenLabel: options.tokenLabel, soPin, userPin }), {
    mode: 0o600,
  });
  const library = new pkcs11js.PKCS11();
  library.load(options.module);
  try {
    library.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (!(error instanceof pkcs11js.Pkcs11Error && error.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED))
      throw error;
  }
  const free = library
    .C_GetSlotList(true)
    .find((slot) => (library.C_GetTokenInfo(slot).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0)!;
  library.C_InitToken(free, soPin, options.tokenLabel.padEnd(32, ' '));

  const keys = await provider(options);
  const spki = await keys.create('key-half-init');
  assert.ok(
    verifies(spki, Buffer.from('m'), (await keys.signDigest('key-half-init', sha256(Buffer.from('m'))))!),
  );
  assert.equal(readPinFile(options.pinFile).userPin, userPin);
});

test('throughput: sequential signatures on one provider (printed, not asserted)', async (t) => {
  if (skippedFor(t, missing)) return;
  const keys = await provider(tokenOptions('throughput'));
  const spki = await keys.create('key-throughput');
  const digest = sha256(Buffer.from('throughput'));
  for (let i = 0; i < 200; i++) await keys.signDigest('key-throughput', digest); // warm-up

  const count = 3_000;
  const started = performance.now();
  let last: Uint8Array | undefined;
  for (let i = 0; i < count; i++) last = await keys.signDigest('key-throughput', digest);
  const elapsedMs = performance.now() - started;
  assert.ok(verifies(spki, Buffer.from('throughput'), last!));
  console.log(
    `pkcs11 throughput, 1 thread: ${Math.round(count / (elapsedMs / 1000))} signs/s ` +
      `(${count} signatures in ${elapsedMs.toFixed(0)} ms, ${((elapsedMs * 1000) / count).toFixed(1)} µs each)`,
  );
});
