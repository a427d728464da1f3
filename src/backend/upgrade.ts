/**
 * What the backend's two WebSocket endpoints (Responses, remote control) share: a scripted fault
 * taken at the handshake, before the credentials are looked at (see faults.ts), and reading a
 * text frame.
 */
import type { Duplex } from 'node:stream';
import type { RawData } from 'ws';
import type { BackendState } from './exchange.js';
import { reasonBody, refuseUpgrade, sleep } from './http-io.js';
import type { RouteName } from './routes.js';

/**
 * Applies the next fault of `route` to a handshake: a slow one waits, a status refuses the
 * upgrade, a disconnect cuts it or limits the socket to `afterEvents` events. Resolves with the
 * socket's event budget (Infinity without a limit), or null when the fault ended the handshake.
 */
export async function takeUpgradeFault(
  state: BackendState,
  route: RouteName,
  socket: Duplex,
  note: (status: number) => void,
): Promise<number | null> {
  const fault = state.faults.take(route);
  if (fault?.kind === 'slow' && !(await sleep(fault.delayMs, state.signal))) {
    socket.destroy();
    return null;
  }
  if (fault?.kind === 'status') {
    note(fault.status);
    refuseUpgrade(socket, fault.status, fault.body ?? reasonBody(fault.status), retryAfterHeader(fault));
    return null;
  }
  if (fault?.kind === 'disconnect') {
    if (fault.afterEvents) return fault.afterEvents;
    note(0);
    socket.destroy();
    return null;
  }
  return Infinity;
}

export function retryAfterHeader(fault: { retryAfterSec?: number }): Record<string, string> {
  return fault.retryAfterSec === undefined ? {} : { 'retry-after': String(fault.retryAfterSec) };
}

/** A frame's text, whichever way ws delivered its bytes. */
export function frameText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
}
