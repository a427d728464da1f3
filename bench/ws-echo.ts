/**
 * Raw WebSocket echo child: the ceiling of the WebSocket handshake figure. Listens on a free
 * loopback port (printed as one line on stdout), answers each `{"id":..,"params":..}` text frame
 * with `{"id":..,"result":params}`. Exits when stdin closes.
 */
import { WebSocketServer } from 'ws';

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
server.on('connection', (socket) => {
  socket.on('message', (data: Buffer) => {
    const msg = JSON.parse(data.toString('utf8')) as { id?: unknown; params?: unknown };
    socket.send(JSON.stringify({ id: msg.id, result: msg.params ?? {} }));
  });
});
server.on('listening', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`ws://127.0.0.1:${port}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
