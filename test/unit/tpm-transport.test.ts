/**
 * The TPM transport against a loopback TCP server scripted per test: TCTI parsing, response
 * framing across arbitrary chunks, one command at a time, timeouts, dropped connections and
 * reconnection with a new generation. The real simulator is exercised in the integration tests.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { openTransport, parseTcti, TransportError } from '../../src/device-key/tpm/transport.js';

/** A 10-byte TPM response with `rc`, plus `extra` body bytes. */
function reply(rc: number, extra = 0): Buffer {
  const b = Buffer.alloc(10 + extra);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(b.length, 2);
  b.writeUInt32BE(rc, 6);
  return b;
}

/** A command whose 4 last bytes carry `n`, so the server can tell commands apart. */
function command(n: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(14, 2);
  b.writeUInt32BE(0x17a, 6);
  b.writeUInt32BE(n, 10);
  return b;
}

interface Stand {
  tcti: string;
  connections: Socket[];
}

/** Serves `onCommand` for every 14-byte command received on any connection. */
async function stand(t: TestContext, onCommand: (socket: Socket, n: number) => void): Promise<Stand> {
  const connections: Socket[] = [];
  const server: Server = createServer((socket) => {
    connections.push(socket);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 14) {
        onCommand(socket, buffered.readUInt32BE(10));
        buffered = buffered.subarray(14);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const c of connections) c.destroy();
    server.close();
  });
  return { tcti: `swtpm:host=127.0.0.1,port=${(server.address() as AddressInfo).port}`, connections };
}

const failsWith = (kind: string, message?: RegExp) => (e: unknown) =>
  e instanceof TransportError && e.kind === kind && (!message || message.test(e.message));

test('TCTI: the three accepted forms parse; anything else names them', () => {
  assert.deepEqual(parseTcti('swtpm:host=127.0.0.1,port=2321'), {
    kind: 'tcp',
    host: '127.0.0.1',
    port: 2321,
  });
  assert.deepEqual(parseTcti('swtpm:port=4000'), { kind: 'tcp', host: 'localhost', port: 4000 });
  assert.deepEqual(parseTcti('swtpm'), { kind: 'tcp', host: 'localhost', port: 2321 });
  assert.deepEqual(parseTcti('swtpm:path=/run/swtpm.sock'), { kind: 'unix', path: '/run/swtpm.sock' });
  assert.deepEqual(parseTcti('device:/dev/tpmrm0'), { kind: 'device', path: '/dev/tpmrm0' });
  for (const bad of [
    '',
    'tabrmd',
    'mssim:host=localhost,port=2321',
    'device:tpmrm0',
    'device',
    'swtpm:host=127.0.0.1,port=0',
    'swtpm:port=70000',
    'swtpm:port=12ab',
    'swtpm:host=a,host=b',
    'swtpm:path=/x.sock,port=1',
    'swtpm:address=1',
    'swtpm:host=',
  ]) {
    assert.throws(
      () => parseTcti(bad),
      /invalid TPM TCTI .*expected device:\/dev\/tpmrm0 .*swtpm:host=127\.0\.0\.1,port=2321 .*swtpm:path=/,
    );
  }
  assert.throws(() => parseTcti('mssim:'), /the mssim protocol is not supported/);
});

test('framing: a response trickling in byte by byte is assembled from its header size', async (t) => {
  const s = await stand(t, (socket) => {
    const answer = reply(0, 300);
    answer.fill(7, 10);
    let i = 0;
    const drip = () => {
      if (i < answer.length) socket.write(answer.subarray(i, ++i), drip);
    };
    drip();
  });
  const transport = openTransport(s.tcti);
  t.after(() => transport.close());
  const response = await transport.transmit(command(1));
  assert.equal(response.length, 310);
  assert.equal(response[309], 7);
});

test('queue: one command on the wire at a time, answered in order', async (t) => {
  let inFlight = 0;
  let maxInFlight = 0;
  const s = await stand(t, (socket, n) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    setTimeout(() => {
      inFlight--;
      socket.write(reply(n));
    }, 2);
  });
  const transport = openTransport(s.tcti);
  t.after(() => transport.close());
  const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => transport.transmit(command(n))));
  assert.deepEqual(
    answers.map((a) => a.readUInt32BE(6)),
    Array.from({ length: 20 }, (_, n) => n),
  );
  assert.equal(maxInFlight, 1);
  assert.equal(s.connections.length, 1);
});

test('a dropped connection rejects the pending command; the next command reconnects', async (t) => {
  const s = await stand(t, (socket, n) => {
    if (n === 1) socket.destroy();
    else socket.write(reply(0));
  });
  const transport = openTransport(s.tcti);
  t.after(() => transport.close());
  const first = await transport.connect();
  await assert.rejects(transport.transmit(command(1), first), failsWith('dropped'));
  // A caller holding handles from the old connection must not be sent to the new one.
  await assert.rejects(transport.transmit(command(2), first), failsWith('dropped', /lost/));
  await transport.transmit(command(2));
  assert.equal(await transport.connect(), first + 1);
  assert.equal(s.connections.length, 2);
});

test('a TPM that never answers times out, and the connection is replaced', async (t) => {
  const s = await stand(t, (socket, n) => {
    if (n !== 1) socket.write(reply(0));
  });
  const transport = openTransport(s.tcti, { timeoutMs: 150 });
  t.after(() => transport.close());
  await assert.rejects(transport.transmit(command(1)), failsWith('timeout', /no response within 0\.15 s/));
  await transport.transmit(command(2));
  assert.equal(s.connections.length, 2);
});

test('garbage: an impossible size field or unasked-for bytes break the connection', async (t) => {
  const s = await stand(t, (socket, n) => {
    if (n === 1) socket.write(Buffer.from('8001000000050000000000', 'hex'));
    else if (n === 2) socket.write(Buffer.concat([reply(0), Buffer.from('ff', 'hex')]));
    else socket.write(reply(0));
  });
  const transport = openTransport(s.tcti);
  t.after(() => transport.close());
  await assert.rejects(transport.transmit(command(1)), failsWith('protocol', /claiming 5 bytes/));
  await assert.rejects(transport.transmit(command(2)), failsWith('protocol', /more bytes/));
  await transport.transmit(command(3));
});

test('unreachable targets and a closed transport fail with their own kinds', async (t) => {
  const s = await stand(t, () => undefined);
  const port = Number(/port=(\d+)/.exec(s.tcti)![1]);
  const unused = openTransport(`swtpm:host=127.0.0.1,port=${port}`);
  await unused.close();
  await assert.rejects(unused.transmit(command(1)), failsWith('closed'));
  await assert.rejects(
    openTransport('device:/nonexistent/tpmrm0').connect(),
    failsWith('unreachable', /ENOENT/),
  );
  await assert.rejects(
    openTransport('swtpm:path=/nonexistent/swtpm.sock').connect(),
    failsWith('unreachable'),
  );
});
