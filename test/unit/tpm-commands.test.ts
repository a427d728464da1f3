/**
 * TPM 2.0 marshalling against byte layouts worked out from the TPM 2.0 Library spec (Part 2
 * structures, Part 3 commands) and one real blob written by `tpm2_create` (tpm2-tools 5.4).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { p256Spki } from '../../src/device-key/provider.js';
import {
  ALG,
  createSigningKey,
  describeResponseCode,
  flushContext,
  getTransientHandles,
  load,
  parseEccPublic,
  PRIMARY_TEMPLATE,
  sign,
  SIGNING_KEY_TEMPLATE,
  startup,
  TpmCommandError,
} from '../../src/device-key/tpm/commands.js';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** A response: tag, size, rc, then the body. */
function response(rc: number, body = '', tag = 0x8001): Buffer {
  const b = hex(body);
  const header = Buffer.alloc(10);
  header.writeUInt16BE(tag, 0);
  header.writeUInt32BE(10 + b.length, 2);
  header.writeUInt32BE(rc, 6);
  return Buffer.concat([header, b]);
}

test('templates: the storage primary and the ECDSA signing key, byte for byte', () => {
  // size, ECC, SHA-256, attributes 0x30072, empty policy, AES-128-CFB, scheme NULL, P-256, kdf NULL, empty x/y
  assert.deepEqual(
    PRIMARY_TEMPLATE,
    hex('001a 0023 000b 00030072 0000 0006 0080 0043 0010 0003 0010 0000 0000'),
  );
  // attributes 0x40072, symmetric NULL, scheme ECDSA/SHA-256
  assert.deepEqual(
    SIGNING_KEY_TEMPLATE,
    hex('0018 0023 000b 00040072 0000 0010 0018 000b 0003 0010 0000 0000'),
  );
});

test('commands: Startup, Sign and FlushContext marshal as Part 3 lays them out', () => {
  assert.deepEqual(startup().bytes, hex('8001 0000000c 00000144 0000'));
  assert.deepEqual(flushContext(0x80000001).bytes, hex('8001 0000000e 00000165 80000001'));
  const digest = Buffer.alloc(32, 0xab);
  assert.deepEqual(
    sign(0x80000002, digest).bytes,
    Buffer.concat([
      // sessions tag, size 0x49, TPM2_Sign, key handle, 9-byte password session
      hex('8002 00000049 0000015d 80000002 00000009 40000009 0000 00 0000'),
      hex('0020'),
      digest,
      // ECDSA/SHA-256 scheme, NULL hashcheck ticket
      hex('0018 000b 8024 40000007 0000'),
    ]),
  );
  const created = createSigningKey(0x80000000).bytes;
  assert.equal(created.readUInt32BE(2), created.length);
  assert.deepEqual(created.subarray(6, 10), hex('00000153'));
  assert.deepEqual(
    created.subarray(-(6 + SIGNING_KEY_TEMPLATE.length + 6)),
    Buffer.concat([hex('0004 0000 0000'), SIGNING_KEY_TEMPLATE, hex('0000 00000000')]),
  );
  const loaded = load(0x80000000, hex('0002 aabb'), hex('0001 cc')).bytes;
  assert.deepEqual(loaded.subarray(-7), hex('0002 aabb 0001 cc'));
});

test('responses: Sign yields r and s, bounded by the parameter size (the session area is not read)', () => {
  const r = 'ff'.repeat(32);
  const s = '01'.repeat(31);
  const params = `0018 000b 0020 ${r} 001f ${s}`;
  const paramSize = hex(params).length.toString(16).padStart(8, '0');
  const parsed = sign(0x80000001, Buffer.alloc(32)).parse(
    response(0, `${paramSize} ${params} 0000 01 0000`, 0x8002),
  );
  assert.equal(parsed.r.toString('hex'), r);
  assert.equal(parsed.s.toString('hex'), s);
});

test('responses: GetCapability lists transient handles and says whether more follow', () => {
  const parsed = getTransientHandles().parse(response(0, '01 00000001 00000002 80000000 80000002'));
  assert.deepEqual(parsed, { handles: [0x80000000, 0x80000002], more: true });
  assert.deepEqual(getTransientHandles().bytes.subarray(10), hex('00000001 80000000 00000040'));
});

test('response codes: Startup accepts TPM_RC_INITIALIZE; failures name the code and its position', () => {
  startup().parse(response(0x100));
  const failure = (rc: number) => {
    try {
      flushContext(0x80000000).parse(response(rc));
    } catch (error) {
      assert.ok(error instanceof TpmCommandError);
      assert.equal(error.rc, rc);
      return error.message;
    }
    assert.fail('expected a TpmCommandError');
  };
  assert.equal(failure(0x902), 'TPM FlushContext failed: TPM_RC 0x902 (TPM_RC_OBJECT_MEMORY)');
  assert.equal(failure(0x18b), 'TPM FlushContext failed: TPM_RC 0x18b (TPM_RC_HANDLE, handle 1)');
  assert.equal(failure(0x1c4), 'TPM FlushContext failed: TPM_RC 0x1c4 (TPM_RC_VALUE, parameter 1)');
  assert.equal(failure(0x9a2), 'TPM FlushContext failed: TPM_RC 0x9a2 (TPM_RC_BAD_AUTH, session 1)');
  assert.equal(describeResponseCode(0x7ff), '0x7ff');
});

test('responses: wrong sizes, truncation and trailing bytes are malformed, not misread', () => {
  const malformed = (bytes: Buffer) =>
    assert.throws(
      () => flushContext(0x80000000).parse(bytes),
      (e: unknown) =>
        e instanceof TpmCommandError && e.rc === undefined && /malformed response/.test(e.message),
    );
  malformed(Buffer.from('80010000', 'hex'));
  const wrongSize = response(0);
  wrongSize.writeUInt32BE(12, 2);
  malformed(wrongSize);
  malformed(response(0, '00'));
  assert.throws(
    () => sign(0x80000001, Buffer.alloc(32)).parse(response(0, '00000004 0018 000b', 0x8002)),
    /truncated/,
  );
});

test('public areas: a tpm2_create blob parses, and its point is on P-256', () => {
  // `tpm2_create -G ecc256 -a fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign -u k.pub`
  const blob = hex(`0056 0023 000b 00040072 0000 0010 0010 0003 0010
    0020 9ff4c04febc1dd9e8c7ca834f8080679f4fefb02da995aae9bc0a948cedfc1ec
    0020 0f58cb8c277042689c6a3377f38c7ce435958b5d72ca95d86f52341a73bbb776`);
  const area = parseEccPublic(blob);
  assert.equal(area.attributes, 0x40072);
  assert.equal(area.scheme, ALG.NULL);
  assert.equal(area.schemeHash, undefined);
  assert.equal(area.nameAlg, ALG.SHA256);
  assert.equal(p256Spki(area.x, area.y).length, 91);
  assert.throws(() => parseEccPublic(blob.subarray(0, 40)), /malformed TPM2B_PUBLIC: truncated/);
  assert.throws(() => parseEccPublic(Buffer.concat([blob, hex('00')])), /trailing/);
});
