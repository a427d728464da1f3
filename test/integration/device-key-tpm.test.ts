/**
 * The `hardware_tpm` provider against a real TPM 2.0 simulator (swtpm), cross-checked with
 * openssl and tpm2-tools: signatures verify outside Node, the stored blobs load with tpm2_load
 * into a key tpm2-tools reports as fixed to the TPM, keys survive provider and simulator restarts,
 * and the handle cache neither leaks nor breaks under concurrent signing.
 *
 * swtpm serves one connection at a time, so at most one provider (or tpm2-tools) talks to it at
 * any moment and every test closes what it opens.
 */
import assert from 'node:assert/strict';
import { skippedFor } from '../helpers/skip-loudly.js';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { ErrorCode, ProtocolError } from '../../src/protocol/errors.js';
import { createPrimary, flushContext, parseEccPublic, startup } from '../../src/device-key/tpm/commands.js';
import {
  createTpmProvider,
  keyFolderName,
  PRIVATE_BLOB,
  PUBLIC_BLOB,
  type TpmKeyProvider,
} from '../../src/device-key/tpm/tpm-provider.js';
import { openTransport } from '../../src/device-key/tpm/transport.js';
import {
  startSwtpm,
  SWTPM_INSTALL_HINT,
  swtpmMissing,
  tpm2ToolsMissing,
  type Swtpm,
} from '../helpers/swtpm.js';

const run = promisify(execFile);
const missing = swtpmMissing();
const toolsMissing = tpm2ToolsMissing();

function unavailable(t: TestContext, needTools = false): boolean {
  const reason = missing ?? (needTools ? toolsMissing : undefined);
  return skippedFor(t, reason && `${reason}; install with: ${SWTPM_INSTALL_HINT}`);
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest();

function verifies(spki: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const key = { key: Buffer.from(spki), format: 'der', type: 'spki', dsaEncoding: 'der' } as const;
  return verify('sha256', message, key, signature);
}

/** The same check by openssl, from files, so the DER is judged by a second implementation. */
async function opensslVerifies(dir: string, spki: Uint8Array, message: Uint8Array, signature: Uint8Array) {
  const pem = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).export({
    type: 'spki',
    format: 'pem',
  });
  await writeFile(join(dir, 'pub.pem'), pem);
  await writeFile(join(dir, 'sig.der'), signature);
  await writeFile(join(dir, 'msg'), message);
  const { stdout } = await run(
    'openssl',
    ['dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'sig.der', 'msg'],
    {
      cwd: dir,
    },
  );
  return stdout.trim();
}

let swtpm: Swtpm | undefined;
let scratch: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'gatehouse-tpm-test-'));
  if (missing === undefined) swtpm = await startSwtpm();
});

after(async () => {
  await swtpm?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

let dirs = 0;
async function freshDir(name: string): Promise<string> {
  return mkdtemp(join(scratch, `${name}-${++dirs}-`));
}

/** A provider on the shared simulator, closed after the test. */
async function provider(t: TestContext, stateDir: string, loadedKeys?: number): Promise<TpmKeyProvider> {
  const p = await createTpmProvider({ tcti: swtpm!.tcti, stateDir }, loadedKeys ? { loadedKeys } : {});
  t.after(() => p.close());
  return p;
}

function platformFailure(prefix: string) {
  return (e: unknown) =>
    e instanceof ProtocolError &&
    e.code === ErrorCode.Internal &&
    e.message.startsWith(`device key platform error: ${prefix}`);
}

describe('hardware_tpm provider on swtpm', () => {
  test('create: a 91-byte P-256 SPKI; signatures verify with node and with openssl', async (t) => {
    if (unavailable(t)) return;
    const p = await provider(t, await freshDir('keys'));
    assert.equal(p.protectionClass, 'hardware_tpm');
    const spki = await p.create('key-one');
    assert.equal(spki.length, 91);
    const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(await p.publicKey('key-one'), spki);

    const message = Buffer.from('device/key/sign payload');
    const signature = await p.signDigest('key-one', sha256(message));
    assert.ok(signature);
    assert.ok(verifies(spki, message, signature));
    assert.ok(!verifies(spki, Buffer.from('another payload'), signature));
    assert.equal(await opensslVerifies(await freshDir('openssl'), spki, message, signature), 'Verified OK');
    // ECDSA is randomised: two signatures differ and both verify.
    const again = await p.signDigest('key-one', sha256(message));
    assert.notDeepEqual(again, signature);
    assert.ok(verifies(spki, message, again!));
  });

  test('tpm2-tools load the stored blobs into a fixedTPM signing key with the same public key', async (t) => {
    if (unavailable(t, true)) return;
    const stateDir = await freshDir('keys');
    const p = await createTpmProvider({ tcti: swtpm!.tcti, stateDir });
    const spki = await p.create('cross-check');
    await p.close(); // frees the simulator's single connection for tpm2-tools

    // Our primary's public key, straight from CreatePrimary, to compare with tpm2-tools'.
    const raw = openTransport(swtpm!.tcti);
    startup().parse(await raw.transmit(startup().bytes));
    const primary = createPrimary().parse(await raw.transmit(createPrimary().bytes));
    flushContext(primary.handle).parse(await raw.transmit(flushContext(primary.handle).bytes));
    await raw.close();

    const work = await freshDir('tpm2-tools');
    const keyDir = join(stateDir, keyFolderName('cross-check'));
    const tool = async (...args: string[]) =>
      (
        await run(args[0]!, args.slice(1), {
          cwd: work,
          env: { ...process.env, TPM2TOOLS_TCTI: swtpm!.tcti },
        })
      ).stdout;
    const flush = () => tool('tpm2_flushcontext', '-t');
    const created = await tool(
      'tpm2_createprimary',
      // tpm2-tools' own default template: the blobs load without knowing anything of Gatehouse.
      ...['-C', 'o', '-G', 'ecc256', '-c', 'primary.ctx'],
    );
    await flush(); // no resource manager: each tool leaves its objects loaded
    assert.match(created, new RegExp(`^x: ${parseEccPublic(primary.outPublic).x.toString('hex')}$`, 'm'));
    await tool(
      'tpm2_load',
      ...[
        '-C',
        'primary.ctx',
        '-u',
        join(keyDir, PUBLIC_BLOB),
        '-r',
        join(keyDir, PRIVATE_BLOB),
        '-c',
        'key.ctx',
      ],
    );
    await flush();
    const readpublic = await tool('tpm2_readpublic', '-c', 'key.ctx', '-f', 'pem', '-o', 'key.pem');
    await flush();
    const attributes = /attributes:\s*\n\s*value: (\S+)/.exec(readpublic)?.[1]?.split('|') ?? [];
    for (const bound of ['fixedtpm', 'fixedparent', 'sensitivedataorigin', 'userwithauth', 'sign'])
      assert.ok(attributes.includes(bound), `${bound} in ${attributes.join('|')}`);
    for (const absent of ['decrypt', 'restricted']) assert.ok(!attributes.includes(absent), `no ${absent}`);
    assert.match(readpublic, /scheme:\s*\n\s*value: ecdsa/);
    const toolsSpki = createPublicKey(await readFile(join(work, 'key.pem'))).export({
      type: 'spki',
      format: 'der',
    });
    assert.deepEqual(toolsSpki, Buffer.from(spki));
    assert.equal((await tool('tpm2_getcap', 'handles-transient')).trim(), '');
  });

  test('keys survive a new provider instance and an swtpm restart on the same state', async (t) => {
    if (unavailable(t)) return;
    const stateDir = await freshDir('keys');
    const first = await createTpmProvider({ tcti: swtpm!.tcti, stateDir });
    const spki = await first.create('durable');
    await first.close();

    const second = await provider(t, stateDir);
    assert.deepEqual(await second.publicKey('durable'), spki);
    const message = Buffer.from('after a provider restart');
    assert.ok(verifies(spki, message, (await second.signDigest('durable', sha256(message)))!));

    await swtpm!.stop();
    await swtpm!.start();
    const later = Buffer.from('after an swtpm restart');
    assert.ok(verifies(spki, later, (await second.signDigest('durable', sha256(later)))!));
  });

  test('unknown key ids: publicKey and signDigest are undefined, without touching the TPM', async (t) => {
    const p = await createTpmProvider({
      tcti: 'swtpm:host=127.0.0.1,port=1',
      stateDir: await freshDir('keys'),
    });
    t.after(() => p.close());
    assert.equal(await p.publicKey('nobody'), undefined);
    assert.equal(await p.signDigest('nobody', sha256(Buffer.from('x'))), undefined);
  });

  test('delete removes the key and its folder; blobs are 0600 in 0700 folders', async (t) => {
    if (unavailable(t)) return;
    const stateDir = join(await freshDir('keys'), 'not-yet');
    const p = await provider(t, stateDir);
    await p.create('doomed');
    await p.create('kept');
    const folder = join(stateDir, keyFolderName('doomed'));
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.equal((await stat(folder)).mode & 0o777, 0o700);
    assert.deepEqual((await readdir(folder)).sort(), [PRIVATE_BLOB, PUBLIC_BLOB]); // no temp files left
    for (const blob of [PRIVATE_BLOB, PUBLIC_BLOB])
      assert.equal((await stat(join(folder, blob))).mode & 0o777, 0o600);
    await assert.rejects(p.create('doomed'), platformFailure('a device key with this id already exists'));

    assert.ok(await p.signDigest('doomed', sha256(Buffer.from('loaded'))));
    const loaded = (await p.transientHandles()).length;
    await p.delete('doomed');
    assert.equal((await p.transientHandles()).length, loaded - 1); // its handle was flushed
    await assert.rejects(stat(folder), { code: 'ENOENT' });
    assert.equal(await p.publicKey('doomed'), undefined);
    assert.equal(await p.signDigest('doomed', sha256(Buffer.from('gone'))), undefined);
    await p.delete('doomed'); // absent: not an error
    assert.ok(await p.publicKey('kept'));
    await assert.rejects(p.signDigest('kept', Buffer.alloc(20)), /a SHA-256 digest has 32 bytes/);
  });

  test('eight keys, signed round-robin and 16 at a time: all verify, and no handle leaks', async (t) => {
    if (unavailable(t)) return;
    const p = await provider(t, await freshDir('keys'));
    const ids = Array.from({ length: 8 }, (_, i) => `many-${i}`);
    const spkis = new Map<string, Uint8Array>();
    for (const id of ids) spkis.set(id, await p.create(id));

    const signAndCheck = async (i: number) => {
      const id = ids[(i * 5) % ids.length]!; // interleaved, so the two-key cache keeps evicting
      const message = Buffer.from(`message ${i}`);
      const signature = await p.signDigest(id, sha256(message));
      assert.ok(verifies(spkis.get(id)!, message, signature!), `signature ${i} by ${id}`);
    };

    const timed = async (label: string, count: number, inFlight: number, pick: (i: number) => number) => {
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < count) await signAndCheck(pick(next++));
        }),
      );
      const ms = performance.now() - started;
      t.diagnostic(
        `${label}: ${count} signs in ${ms.toFixed(0)} ms (${(ms / count).toFixed(2)} ms each, ${((count * 1000) / ms).toFixed(0)}/s)`,
      );
    };
    await timed('one key, sequential', 100, 1, () => 0);
    await timed('8 keys round-robin (LRU misses), sequential', 64, 1, (i) => i);
    await timed('8 keys interleaved, 16 in flight', 128, 16, (i) => i);

    const handles = await p.transientHandles();
    assert.ok(handles.length <= 3, `primary + at most 2 keys loaded, found ${handles.length}`);
  });

  test('objects an earlier client left behind are flushed on TPM_RC_OBJECT_MEMORY', async (t) => {
    if (unavailable(t)) return;
    const stateDir = await freshDir('keys');
    const setup = await createTpmProvider({ tcti: swtpm!.tcti, stateDir });
    const spki = await setup.create('survivor');
    await setup.close();

    // Fill every transient slot and disconnect without flushing, as a crashed process would.
    const raw = openTransport(swtpm!.tcti);
    startup().parse(await raw.transmit(startup().bytes));
    let leaked = 0;
    for (; leaked < 16; leaked++) {
      const response = await raw.transmit(createPrimary().bytes);
      if (response.readUInt32BE(6) === 0x902) break;
      createPrimary().parse(response);
    }
    await raw.close();
    assert.ok(leaked >= 3, `swtpm held ${leaked} objects`);

    const p = await provider(t, stateDir);
    const message = Buffer.from('after a leak');
    assert.ok(verifies(spki, message, (await p.signDigest('survivor', sha256(message)))!));
    assert.equal((await p.transientHandles()).length, 2); // our primary and key; the leak is gone
  });

  test('swtpm stopped mid-run: -32603 "TPM unavailable"; after start() the same key signs again', async (t) => {
    if (unavailable(t)) return;
    const p = await provider(t, await freshDir('keys'));
    const spki = await p.create('resilient');
    assert.ok(await p.signDigest('resilient', sha256(Buffer.from('before'))));

    await swtpm!.stop();
    t.after(() => swtpm!.start()); // the next test needs it even if this one fails
    const unavailableNow = platformFailure(`TPM unavailable (${swtpm!.tcti}): `);
    await assert.rejects(p.signDigest('resilient', sha256(Buffer.from('during'))), unavailableNow);
    await assert.rejects(p.create('another'), unavailableNow);
    assert.deepEqual(await p.publicKey('resilient'), spki); // public keys need no TPM

    await swtpm!.start();
    const message = Buffer.from('after');
    assert.ok(verifies(spki, message, (await p.signDigest('resilient', sha256(message)))!));
  });

  test('a TPM that is down does not fail the factory, only the first operation', async (t) => {
    if (unavailable(t)) return;
    const stopped = await startSwtpm();
    await stopped.dispose();
    for (const tcti of [stopped.tcti, 'device:/nonexistent/tpmrm0']) {
      const p = await createTpmProvider({ tcti, stateDir: await freshDir('keys') });
      await assert.rejects(p.create('k'), platformFailure(`TPM unavailable (${tcti}): `));
      await p.close();
      await assert.rejects(p.create('k'), platformFailure('the TPM provider is closed'));
    }
  });

  test('swtpm over a UNIX socket (tcti swtpm:path=…)', async (t) => {
    if (unavailable(t)) return;
    const unix = await startSwtpm({ unix: true });
    t.after(() => unix.dispose());
    const p = await createTpmProvider({ tcti: unix.tcti, stateDir: await freshDir('keys') });
    t.after(() => p.close());
    const spki = await p.create('over-unix');
    const message = Buffer.from('unix');
    assert.ok(verifies(spki, message, (await p.signDigest('over-unix', sha256(message)))!));
  });
});

test('malformed TCTI strings fail the factory with the accepted forms', async () => {
  for (const tcti of [
    '',
    'mssim:host=127.0.0.1,port=2321',
    'swtpm:host=127.0.0.1,port=http',
    'device:tpm0',
  ]) {
    await assert.rejects(
      createTpmProvider({ tcti, stateDir: join(tmpdir(), 'unused') }),
      (e: unknown) =>
        platformFailure('invalid TPM TCTI ')(e) &&
        /expected device:\/dev\/tpmrm0 .*swtpm:host=127\.0\.0\.1,port=2321 .*swtpm:path=/.test(
          (e as Error).message,
        ),
    );
  }
});
