/** `--listen ws://IP:PORT`: one connection actor per accepted socket. */
import { WebSocketServer } from 'ws';
import type { Broker } from '../broker/broker.js';
import { WebSocketTransport } from './websocket-transport.js';

export interface WebSocketListener {
  /** The bound address (useful with port 0). */
  readonly url: string;
  /** Stops accepting sockets; existing connections are closed by the broker. */
  close(): Promise<void>;
}

export function parseListenUrl(raw: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`invalid --listen URL: ${raw} (expected stdio:// or ws://IP:PORT)`);
  }
  if (url.protocol !== 'ws:')
    throw new Error(`unsupported --listen URL: ${raw} (expected stdio:// or ws://IP:PORT)`);
  if (!url.port) throw new Error(`--listen ${raw} needs a port, for example ws://127.0.0.1:4500`);
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) };
}

export async function listenWebSocket(broker: Broker, raw: string): Promise<WebSocketListener> {
  const { host, port } = parseListenUrl(raw);
  const server = new WebSocketServer({
    host,
    port,
    maxPayload: broker.settings.maxLineBytes,
    perMessageDeflate: false,
    // One message per socket per event-loop turn. By default ws hands over every frame of a read
    // at once, and libuv reads up to 32 chunks per turn: a client flooding thousands of frames
    // then held every other connection for the whole burst (p99 0.4 s in the backpressure test).
    allowSynchronousEvents: false,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  server.on('connection', (socket) => {
    try {
      broker.connect(new WebSocketTransport(socket, broker.log, broker.settings.maxPendingOutputBytes));
    } catch {
      socket.close(1013, 'server shutting down');
    }
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address : { address: host, port };
  const shownHost = bound.address.includes(':') ? `[${bound.address}]` : bound.address;
  return {
    url: `ws://${shownHost}:${bound.port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
