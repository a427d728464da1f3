/**
 * The backend's side of remote control (spec B.2, B.5): the server WebSocket an enrolled
 * app-server holds (`GET /backend-api/wham/remote/control/server` with an upgrade). This is the
 * other party of Gatehouse's remote-control transport, written from the spec alone so that the
 * two are checked against each other rather than against a shared misreading.
 *
 * - The handshake takes an issued, unexpired remote-control token (remote-control.ts decides),
 *   after the `remote.ws` faults; one socket per server, a newer one terminates the older.
 * - Each text frame is an envelope (remote-envelopes.ts), handled in order and handed to the
 *   relay (remote-relay.ts), which routes it to its remote client. It is recorded twice: in
 *   `requests` under `remote.ws.envelope`, and in `serverEnvelopes` with what became of it.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData, type WebSocketServer } from 'ws';
import { noteRequest, type BackendState } from './exchange.js';
import { refuseUpgrade, sleep } from './http-io.js';
import { ackFor, parseServerEnvelope } from './remote-envelopes.js';
import { frameText, takeUpgradeFault } from './upgrade.js';

export async function handleRemoteControlUpgrade(
  state: BackendState,
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  socket.on('error', () => socket.destroy()); // a peer that resets mid-handshake is not our error
  const path = req.url ?? '/';
  const note = (status: number) =>
    noteRequest(state, {
      route: 'remote.ws',
      method: req.method ?? 'GET',
      path,
      status,
      headers: req.headers,
    });

  const budget = await takeUpgradeFault(state, 'remote.ws', socket, note);
  if (budget === null) return;

  const serverId = req.headers['x-codex-server-id'];
  const admission = state.remoteEnrollments.admit(
    req.headers.authorization,
    typeof serverId === 'string' ? serverId : undefined,
  );
  if (!admission.ok) {
    note(admission.status);
    refuseUpgrade(socket, admission.status, JSON.stringify({ detail: admission.detail }));
    return;
  }
  if (socket.destroyed) return;
  note(101);
  const id = admission.enrollment.serverId;
  wss.handleUpgrade(req, socket, head, (ws) => new ServerSocketSession(state, ws, id, path, budget));
}

/** Text frames of one server socket, handled one after the other (a `slow` fault holds the rest). */
class ServerSocketSession {
  private queue: Promise<void> = Promise.resolve();
  private received = 0;

  constructor(
    private readonly state: BackendState,
    private readonly ws: WebSocket,
    private readonly serverId: string,
    private readonly path: string,
    /** Envelopes after which a `remote.ws` disconnect fault cuts the socket (Infinity: none). */
    private readonly budget: number,
  ) {
    const relay = state.remoteRelay;
    relay.attach(serverId, ws);
    ws.on('message', (data, isBinary) => {
      this.queue = this.queue
        .then(() => this.serve(data, isBinary))
        .catch((e: unknown) => {
          state.log.error({ err: (e as Error).message }, 'local backend: remote-control socket failed');
          ws.terminate();
        });
    });
    ws.on('close', () => relay.detach(serverId, ws));
    ws.on('error', () => ws.terminate());
  }

  private async serve(data: RawData, isBinary: boolean): Promise<void> {
    // Binary frames carry nothing in this protocol; the app-server ignores them too.
    if (isBinary || this.ws.readyState !== WebSocket.OPEN) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(frameText(data));
    } catch {
      parsed = undefined;
    }
    this.received += 1;
    const cutAfterThis = this.received >= this.budget;
    const envelope = parseServerEnvelope(parsed);
    if (!envelope) {
      this.note(400, parsed ?? frameText(data));
      if (cutAfterThis) this.cut();
      return;
    }

    const relay = this.state.remoteRelay;
    const fault = this.state.faults.take('remote.ws.envelope');
    if (fault?.kind === 'status' || fault?.kind === 'disconnect') {
      this.note(fault.kind === 'status' ? fault.status : 0, envelope);
      relay.record(this.serverId, envelope, 'lost', false);
      if (fault.kind === 'disconnect' || cutAfterThis) this.cut();
      return;
    }
    if (fault?.kind === 'slow' && !(await sleep(fault.delayMs, this.state.signal))) return;

    this.note(200, envelope);
    const { outcome, ack } = relay.receive(this.serverId, envelope);
    // The envelope that exhausts a disconnect budget is handled but not acked: the app-server
    // must send it again after reconnecting (spec B.5).
    const acked = ack && !cutAfterThis && this.ws.readyState === WebSocket.OPEN;
    if (acked) this.ws.send(JSON.stringify(ackFor(envelope)));
    relay.record(this.serverId, envelope, outcome, acked);
    if (cutAfterThis) this.cut();
  }

  private cut(): void {
    this.state.remoteRelay.detach(this.serverId, this.ws);
    this.ws.terminate();
  }

  private note(status: number, body: unknown): void {
    noteRequest(this.state, {
      route: 'remote.ws.envelope',
      method: 'WS',
      path: this.path,
      status,
      headers: {},
      body,
    });
  }
}
