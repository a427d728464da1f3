/**
 * The fast path of the wire fuzzer: a real broker and the real stdio transport (LineFramer
 * included) in this process, with a pipe in place of stdin and a buffer in place of stdout. One
 * generated sequence is one connection; its bytes arrive in randomly cut chunks.
 */
import { PassThrough, Writable } from 'node:stream';
import type { Broker } from '../../src/broker/broker.js';
import { StdioTransport } from '../../src/transport/stdio-transport.js';
import type { Transport, TransportSink } from '../../src/transport/transport.js';
import type { Logger } from '../../src/util/logger.js';

/**
 * The stdio transport, plus a hang-up: on stdin EOF the CLI ends the whole process, while here
 * thousands of connections share one broker, so each must be closed as a client going away.
 */
class HangUpStdio implements Transport {
  readonly kind = 'stdio';
  private sink?: TransportSink;
  constructor(readonly inner: StdioTransport) {}
  start(sink: TransportSink): void {
    this.sink = sink;
    this.inner.start(sink);
  }
  send(text: string): void {
    this.inner.send(text);
  }
  stopReading(): void {
    this.inner.stopReading();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  hangUp(): void {
    this.sink?.closed();
  }
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface SequenceOutput {
  lines: string[];
  /** Whether stdout ended with a newline (a partial line is a fault). */
  terminated: boolean;
}

/**
 * Feeds `chunks` to a new stdio connection, ends its input, waits (bounded) until nothing is in
 * flight, and returns every output line.
 */
export async function runChunks(
  broker: Broker,
  chunks: Buffer[],
  maxLineBytes: number,
  log: Logger,
  timeoutMs = 10_000,
): Promise<SequenceOutput> {
  const input = new PassThrough();
  let out = '';
  const output = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out += chunk.toString('utf8');
      callback();
    },
  });
  const transport = new HangUpStdio(new StdioTransport(maxLineBytes, log, input, output));
  broker.connect(transport);
  try {
    for (let i = 0; i < chunks.length; i++) {
      input.write(chunks[i]);
      if (i % 8 === 7) await turn();
    }
    input.end();
    await transport.inner.ended;
    const deadline = Date.now() + timeoutMs;
    while (broker.inFlight > 0) {
      if (Date.now() > deadline)
        throw new Error(`still ${broker.inFlight} requests in flight after ${timeoutMs} ms`);
      await turn();
    }
    // Answers reach the transport by microtasks and leave it on the next turn.
    await turn();
    await turn();
  } finally {
    await transport.close();
    transport.hangUp();
  }
  const lines = out.split('\n');
  const last = lines.pop();
  return { lines, terminated: last === '' };
}
