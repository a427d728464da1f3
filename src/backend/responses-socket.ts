/**
 * The Responses WebSocket (`GET /backend-api/codex/responses` with an upgrade). The bearer is
 * checked at the handshake, which a refusal answers with a plain HTTP status (401 and
 * `{"detail":"Unauthorized"}` for a bad bearer), as the real backend does. On an open socket each
 * `{"type":"response.create", ...}` text frame is answered with the Responses events, one JSON
 * text frame per event, strictly in the order the frames arrived. A frame that cannot be served
 * gets an `{"type":"error",...}` frame and the socket stays open.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData, type WebSocketServer } from 'ws';
import { checkBearer, UNAUTHORIZED_BODY } from './bearer.js';
import { noteRequest, type BackendState } from './exchange.js';
import type { FaultAction } from './faults.js';
import { reasonBody, refuseUpgrade, sleep } from './http-io.js';
import { frameText, takeUpgradeFault } from './upgrade.js';
import {
  parseResponsesRequest,
  playEvents,
  responseEvents,
  ResponsesRequestError,
  type EventSink,
} from './responses.js';
import { matchRoute, UNMATCHED_ROUTE } from './routes.js';

export async function handleResponsesUpgrade(
  state: BackendState,
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  socket.on('error', () => socket.destroy()); // a peer that resets mid-handshake is not our error
  const path = req.url ?? '/';
  const note = (route: 'responses.ws' | typeof UNMATCHED_ROUTE, status: number) =>
    noteRequest(state, { route, method: req.method ?? 'GET', path, status, headers: req.headers });

  const match = matchRoute(req.method ?? 'GET', new URL(path, 'https://local').pathname, true);
  if (match.route !== 'responses.ws') {
    const status = match.route === null ? match.status : 404;
    note(UNMATCHED_ROUTE, status);
    refuseUpgrade(socket, status, reasonBody(status));
    return;
  }

  const socketBudget = await takeUpgradeFault(state, 'responses.ws', socket, (status) =>
    note('responses.ws', status),
  );
  if (socketBudget === null) return;

  const verdict = checkBearer(req.headers.authorization, state.revoked);
  if (!verdict.ok) {
    note('responses.ws', 401);
    refuseUpgrade(socket, 401, UNAUTHORIZED_BODY);
    return;
  }
  if (socket.destroyed) return;
  note('responses.ws', 101);
  wss.handleUpgrade(req, socket, head, (ws) => new ResponsesSocketSession(state, ws, path, socketBudget));
}

/** One open socket: a queue of `response.create` frames, served one after the other. */
class ResponsesSocketSession {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly state: BackendState,
    private readonly ws: WebSocket,
    private readonly path: string,
    /** Events left before a scripted disconnect of the whole socket (Infinity: none). */
    private socketBudget: number,
  ) {
    ws.on('message', (data, isBinary) => {
      this.queue = this.queue
        .then(() => this.serve(data, isBinary))
        .catch((e: unknown) => {
          state.log.error({ err: (e as Error).message }, 'local backend: responses socket failed');
          ws.terminate();
        });
    });
    ws.on('error', () => ws.terminate());
  }

  private async serve(data: RawData, isBinary: boolean): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    let request;
    let body: unknown;
    try {
      if (isBinary) throw new ResponsesRequestError('binary frames are not supported: send JSON text frames');
      let frame: unknown;
      try {
        frame = JSON.parse(frameText(data));
      } catch {
        throw new ResponsesRequestError('the frame is not JSON');
      }
      const type = (frame as { type?: unknown } | null)?.type;
      if (type !== 'response.create') {
        throw new ResponsesRequestError(
          `unsupported message type ${JSON.stringify(type) ?? 'missing'}: expected "response.create"`,
        );
      }
      body = frame;
      request = parseResponsesRequest(frame);
    } catch (e) {
      if (!(e instanceof ResponsesRequestError)) throw e;
      this.note(400, body);
      await this.sendError(400, 'invalid_request_error', e.message);
      return;
    }

    const fault = this.state.faults.take('responses.ws.create');
    const cutAfter = Math.min(this.socketBudget, cutAfterOf(fault));
    if (fault?.kind === 'status') {
      this.note(fault.status, body);
      await this.sendError(
        fault.status,
        'scripted_fault',
        fault.body ?? STATUS_CODES[fault.status] ?? 'error',
      );
      return;
    }
    this.note(cutAfter === 0 ? 0 : 200, body);
    if (fault?.kind === 'slow' && !(await sleep(fault.delayMs, this.state.signal))) return;
    const ws = this.ws;
    const sink: EventSink = {
      send: (event) => new Promise((resolve) => ws.send(JSON.stringify(event), () => resolve())),
      cut: () => ws.terminate(),
      get closed() {
        return ws.readyState !== WebSocket.OPEN;
      },
    };
    const { sent } = await playEvents(responseEvents(request), sink, {
      delayMs: this.state.responseDelayMs,
      cutAfter: Number.isFinite(cutAfter) ? cutAfter : undefined,
      signal: this.state.signal,
    });
    this.socketBudget -= sent;
  }

  private note(status: number, body: unknown): void {
    noteRequest(this.state, {
      route: 'responses.ws.create',
      method: 'WS',
      path: this.path,
      status,
      headers: {},
      body,
    });
  }

  private sendError(status: number, type: string, message: string): Promise<void> {
    const frame = { type: 'error', status, error: { type, message } };
    return new Promise((resolve) => this.ws.send(JSON.stringify(frame), () => resolve()));
  }
}

function cutAfterOf(fault: FaultAction | undefined): number {
  return fault?.kind === 'disconnect' ? (fault.afterEvents ?? 0) : Infinity;
}
