import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { namedBits, objectIdentifier, time, tlv, unsignedInteger } from '../../src/codec/der.js';
import { CA_COMMON_NAME, createLocalCertificates, ipAddressBytes } from '../../src/backend/tls-ca.js';

const hex = (b: Buffer) => b.toString('hex');

test('DER: integers stay positive and minimal, OIDs use base 128, lengths switch to long form', () => {
  assert.equal(hex(unsignedInteger(0)), '020100');
  assert.equal(hex(unsignedInteger(0x7f)), '02017f');
  assert.equal(hex(unsignedInteger(0x80)), '02020080');
  assert.equal(hex(unsignedInteger(Buffer.from([0, 0, 1, 2]))), '02020102');
  assert.equal(hex(objectIdentifier('1.2.840.10045.2.1')), '06072a8648ce3d0201');
  assert.equal(hex(objectIdentifier('2.5.29.19')), '0603551d13');
  assert.throws(() => objectIdentifier('1.x'), /invalid object identifier/);
  assert.equal(hex(tlv(0x04, Buffer.alloc(127))).slice(0, 4), '047f');
  assert.equal(hex(tlv(0x04, Buffer.alloc(128))).slice(0, 6), '048180');
  assert.equal(hex(tlv(0x04, Buffer.alloc(300))).slice(0, 8), '0482012c');
  // keyCertSign (5) + cRLSign (6): one byte 0000 0110, one unused bit.
  assert.equal(hex(namedBits([5, 6])), '03020106');
  assert.equal(hex(namedBits([0])), '03020780');
  assert.equal(time(new Date('2026-01-02T03:04:05.678Z')).toString('latin1').slice(2), '260102030405Z');
  assert.equal(time(new Date('2050-01-01T00:00:00Z')).toString('latin1').slice(2), '20500101000000Z');
  assert.equal(time(new Date('2050-01-01T00:00:00Z'))[0], 0x18); // GeneralizedTime from 2050 on
});

test('IP addresses become 4 or 16 bytes, including :: and embedded IPv4', () => {
  assert.equal(hex(ipAddressBytes('127.0.0.1')), '7f000001');
  assert.equal(hex(ipAddressBytes('::1')), '00000000000000000000000000000001');
  assert.equal(hex(ipAddressBytes('fe80::1:2')), 'fe800000000000000000000000010002');
  assert.equal(hex(ipAddressBytes('::ffff:127.0.0.1')), '00000000000000000000ffff7f000001');
  assert.equal(hex(ipAddressBytes('1:2:3:4:5:6:7:8')), '00010002000300040005000600070008');
  assert.throws(() => ipAddressBytes('localhost'), /not an IP address/);
});

test('the CA and the server certificate parse, chain, and name 127.0.0.1, ::1 and localhost', () => {
  const now = new Date();
  const certs = createLocalCertificates({ now });
  const ca = new X509Certificate(certs.caPem);
  const leaf = new X509Certificate(certs.certPem);

  assert.equal(ca.subject, `CN=${CA_COMMON_NAME}`);
  assert.equal(ca.ca, true);
  assert.equal(ca.verify(ca.publicKey), true); // self-signed
  assert.equal(leaf.ca, false);
  assert.equal(leaf.subject, 'CN=127.0.0.1');
  assert.equal(leaf.issuer, `CN=${CA_COMMON_NAME}`);
  assert.equal(leaf.verify(ca.publicKey), true);
  assert.equal(leaf.checkIssued(ca), true);
  assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(leaf.checkIP('::1'), '::1');
  assert.equal(leaf.checkHost('localhost'), 'localhost');
  assert.equal(leaf.checkHost('example.com'), undefined);
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']); // extKeyUsage serverAuth
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const from = Date.parse(leaf.validFrom);
  const to = Date.parse(leaf.validTo);
  assert.ok(Math.abs(from - (now.getTime() - 3600_000)) < 2000, leaf.validFrom);
  assert.ok(Math.abs(to - (now.getTime() + 30 * 86400_000)) < 2000, leaf.validTo);

  const again = createLocalCertificates();
  assert.notEqual(new X509Certificate(again.certPem).serialNumber, leaf.serialNumber);
  assert.equal(new X509Certificate(again.certPem).verify(ca.publicKey), false); // another CA
});

test('extra IP addresses are named too', () => {
  const leaf = new X509Certificate(createLocalCertificates({ extraIpAddresses: ['127.0.0.2'] }).certPem);
  assert.equal(leaf.checkIP('127.0.0.2'), '127.0.0.2');
  assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
});

test('a TLS client that trusts only the CA connects; one that does not is refused', async (t) => {
  const certs = createLocalCertificates();
  const server = createServer({ cert: certs.certPem, key: certs.keyPem }, (socket) => socket.end('hello'));
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;

  const trusted = await new Promise<{ authorized: boolean; data: string }>((resolve, reject) => {
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, ca: [certs.caPem] }, () => {
      let data = '';
      socket.setEncoding('utf8').on('data', (c: string) => (data += c));
      socket.on('end', () => resolve({ authorized: socket.authorized, data }));
    });
    socket.on('error', reject);
  });
  assert.deepEqual(trusted, { authorized: true, data: 'hello' });

  const refused = await new Promise<Error>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => reject(new Error('connected without the CA')));
    socket.on('error', resolve);
  });
  assert.match(
    (refused as NodeJS.ErrnoException).code ?? '',
    /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY/,
  );

  // The wrong name is refused as well, even with the CA trusted.
  const wrongName = await new Promise<Error>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: [certs.caPem], servername: 'example.com' }, () =>
      reject(new Error('connected under another name')),
    );
    socket.on('error', resolve);
  });
  assert.equal((wrongName as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
});
