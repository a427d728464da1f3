/**
 * Two error families that never mix (see shared/STYLE.md):
 * - ProtocolError crosses the wire as `{code, message, data?}` with a numeric JSON-RPC code;
 * - BrokerError is local (string code) and is mapped to a ProtocolError at the edge.
 * Both carry a brand so detection survives a second copy of the package or a worker realm.
 */

export const ErrorCode = {
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  Internal: -32603,
  /** codex meaning: the server is saturated; retryable. Never used for local timeouts. */
  Overloaded: -32001,
} as const;

export const OVERLOADED_MESSAGE = 'Server overloaded; retry later.';
export const NOT_INITIALIZED_MESSAGE = 'Not initialized';
export const ALREADY_INITIALIZED_MESSAGE = 'Already initialized';
export const INTERNAL_ERROR_MESSAGE = 'Internal error';

export interface WireError {
  code: number;
  message: string;
  data?: unknown;
}

const PROTOCOL_BRAND = Symbol.for('gatehouse.ProtocolError');
const BROKER_BRAND = Symbol.for('gatehouse.BrokerError');

export class ProtocolError extends Error {
  readonly [PROTOCOL_BRAND] = true;
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
  toWire(): WireError {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

export function invalidRequest(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.InvalidRequest, message);
}

export function experimentalRequiredMessage(descriptor: string): string {
  return `${descriptor} requires experimentalApi capability`;
}

export type BrokerErrorCode =
  | 'MAILBOX_FULL'
  | 'ACTOR_FAILED'
  | 'ACTOR_STOPPED'
  | 'ACTOR_NOT_FOUND'
  | 'CONNECTION_CLOSED'
  | 'NOT_INITIALIZED'
  | 'REQUEST_TIMEOUT'
  | 'CLIENT_ERROR'
  | 'WORKER_FAILED'
  | 'SHUTTING_DOWN'
  | 'INVALID_INPUT'
  /** The 401 refresh loop could not get new credentials; the message is spec C.8's failure text. */
  | 'AUTH_REFRESH_FAILED'
  /** The backend could not be reached or answered with an error; the message says how. */
  | 'UPSTREAM_FAILED';

export class BrokerError extends Error {
  readonly [BROKER_BRAND] = true;
  constructor(
    readonly code: BrokerErrorCode,
    message: string,
    readonly data?: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BrokerError';
  }
}

export function isProtocolError(e: unknown): e is ProtocolError {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[PROTOCOL_BRAND] === true;
}

export function isBrokerError(e: unknown, code?: BrokerErrorCode): e is BrokerError {
  return (
    typeof e === 'object' &&
    e !== null &&
    (e as Record<symbol, unknown>)[BROKER_BRAND] === true &&
    (code === undefined || (e as BrokerError).code === code)
  );
}

/**
 * The wire form of any error a handler or actor produced. Local errors keep their meaning
 * (overload stays -32001) and unknown errors become a generic -32603 whose details stay in logs.
 */
export function toWireError(e: unknown): WireError {
  if (isProtocolError(e)) return e.toWire();
  if (isBrokerError(e, 'MAILBOX_FULL')) return { code: ErrorCode.Overloaded, message: OVERLOADED_MESSAGE };
  return { code: ErrorCode.Internal, message: INTERNAL_ERROR_MESSAGE };
}

/** Plain-data form used inside actor envelopes, rebuilt on the other side by `fromErrorData`. */
export interface ErrorData {
  family: 'protocol' | 'broker' | 'unknown';
  code: number | string;
  message: string;
  data?: unknown;
}

export function toErrorData(e: unknown): ErrorData {
  if (isProtocolError(e)) return { family: 'protocol', code: e.code, message: e.message, data: e.data };
  if (isBrokerError(e)) return { family: 'broker', code: e.code, message: e.message, data: e.data };
  return { family: 'unknown', code: 'ACTOR_FAILED', message: e instanceof Error ? e.message : String(e) };
}

export function fromErrorData(d: ErrorData): Error {
  if (d.family === 'protocol') return new ProtocolError(d.code as number, d.message, d.data);
  if (d.family === 'broker') return new BrokerError(d.code as BrokerErrorCode, d.message, d.data);
  return new BrokerError('ACTOR_FAILED', d.message);
}
