/**
 * The four JSON-RPC message shapes of the codex dialect (spec A.2): how an inbound text is
 * classified, and how outbound messages are written (never with a `jsonrpc` member, in codex's
 * key order, with `emittedAtMs` on every notification).
 */
import type { WireError } from './errors.js';
import { type RequestId, requestIdJson, toRequestId } from './request-id.js';
import { scanObjectText } from './serde-json-strict.js';

export type Incoming =
  | { kind: 'request'; id: RequestId; method: string; params: unknown; hasParams: boolean }
  | { kind: 'notification'; method: string; params: unknown }
  | { kind: 'response'; id: RequestId; result: unknown }
  | { kind: 'error'; id: RequestId; error: WireError }
  | { kind: 'invalid'; reason: string };

const NO_VARIANT = 'data did not match any variant of untagged enum JSONRPCMessage';

/** Classifies one inbound message text. Never throws: what cannot be a message is `invalid`. */
export function classifyMessage(text: string): Incoming {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { kind: 'invalid', reason: (e as Error).message };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'invalid', reason: NO_VARIANT };
  }
  const scan = scanObjectText(text, value);
  if (scan.refused !== undefined) return { kind: 'invalid', reason: scan.refused };
  const obj = value as Record<string, unknown>;
  const id =
    'id' in obj ? toRequestId(obj.id, typeof obj.id === 'number' ? scan.idNumber : undefined) : undefined;
  // codex tries the shapes in this order (an untagged enum); a shape fails when one of its own
  // members is written twice, while members it does not know are ignored.
  const once = (...keys: string[]) => keys.every((k) => (scan.members.get(k) ?? 0) < 2);
  const method = typeof obj.method === 'string' ? obj.method : undefined;
  if (
    method !== undefined &&
    id !== undefined &&
    isTrace(obj.trace) &&
    once('id', 'method', 'params', 'trace')
  ) {
    // `params: null` is no params, as codex's Option<Value> reads it.
    const hasParams = 'params' in obj && obj.params !== null;
    return { kind: 'request', id, method, params: hasParams ? obj.params : undefined, hasParams };
  }
  // A request needs a valid id; with a null, float or object id the line is a notification.
  if (method !== undefined && once('method', 'params')) {
    return { kind: 'notification', method, params: obj.params };
  }
  if (id !== undefined && 'result' in obj && once('id', 'result')) {
    return { kind: 'response', id, result: obj.result };
  }
  if (id !== undefined && isWireError(obj.error) && once('id', 'error')) {
    return { kind: 'error', id, error: obj.error };
  }
  return { kind: 'invalid', reason: NO_VARIANT };
}

/** codex's optional W3C trace context: absent, null, or an object of optional strings. */
function isTrace(trace: unknown): boolean {
  if (trace === undefined || trace === null) return true;
  if (typeof trace !== 'object' || Array.isArray(trace)) return false;
  const { traceparent, tracestate } = trace as Record<string, unknown>;
  const optionalString = (v: unknown) => v === undefined || v === null || typeof v === 'string';
  return optionalString(traceparent) && optionalString(tracestate);
}

function isWireError(e: unknown): e is WireError {
  if (typeof e !== 'object' || e === null) return false;
  const { code, message } = e as Record<string, unknown>;
  return Number.isInteger(code) && typeof message === 'string';
}

export function encodeResponse(id: RequestId, resultJson: string): string {
  return `{"id":${requestIdJson(id)},"result":${resultJson}}`;
}

export function encodeError(id: RequestId, error: WireError): string {
  return `{"error":${JSON.stringify(error)},"id":${requestIdJson(id)}}`;
}

export function encodeServerRequest(id: number, method: string, params: unknown): string {
  return `{"method":${JSON.stringify(method)},"id":${id},"params":${JSON.stringify(params ?? {})}}`;
}

export function encodeNotification(method: string, params: unknown, emittedAtMs: number): string {
  const p = params === undefined ? '' : `,"params":${JSON.stringify(params)}`;
  return `{"method":${JSON.stringify(method)}${p},"emittedAtMs":${emittedAtMs}}`;
}

/**
 * The source text of a top-level member's value, found without a second parse. JSON.parse has
 * already validated `text`, so this scanner only needs to skip strings and nested values.
 */
export function topLevelToken(text: string, key: string): string | undefined {
  const wanted = JSON.stringify(key);
  let i = text.indexOf('{') + 1;
  const n = text.length;
  const skipWs = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const skipString = () => {
    i++; // opening quote
    while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
  };
  while (i < n) {
    skipWs();
    if (text[i] !== '"') return undefined;
    const keyStart = i;
    skipString();
    const rawKey = text.slice(keyStart, i);
    skipWs();
    i++; // colon
    skipWs();
    const valueStart = i;
    const c = text[i];
    if (c === '"') skipString();
    else if (c === '{' || c === '[') {
      let depth = 0;
      do {
        const d = text[i];
        if (d === '"') {
          skipString();
          continue;
        }
        if (d === '{' || d === '[') depth++;
        else if (d === '}' || d === ']') depth--;
        i++;
      } while (i < n && depth > 0);
    } else {
      while (i < n && !',}] \t\r\n'.includes(text[i]!)) i++;
    }
    // A key may be written with escapes (`"\u0069d"`); JSON.parse decodes it, so must this.
    if (rawKey === wanted || (rawKey.includes('\\') && JSON.parse(rawKey) === key))
      return text.slice(valueStart, i);
    skipWs();
    if (text[i] !== ',') return undefined;
    i++;
  }
  return undefined;
}
