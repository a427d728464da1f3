/**
 * The four JSON-RPC message shapes of the codex dialect (spec A.2): how an inbound text is
 * classified, and how outbound messages are written (never with a `jsonrpc` member, in codex's
 * key order, with `emittedAtMs` on every notification).
 */
import type { WireError } from './errors.js';
import { type RequestId, requestIdJson, toRequestId } from './request-id.js';

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
  const obj = value as Record<string, unknown>;
  const id =
    'id' in obj
      ? toRequestId(obj.id, typeof obj.id === 'number' ? topLevelToken(text, 'id') : undefined)
      : undefined;
  if (typeof obj.method === 'string') {
    // A request needs a valid id; with a null, float or object id the line is a notification.
    if (id !== undefined) {
      return { kind: 'request', id, method: obj.method, params: obj.params, hasParams: 'params' in obj };
    }
    return { kind: 'notification', method: obj.method, params: obj.params };
  }
  if (id !== undefined && 'result' in obj) return { kind: 'response', id, result: obj.result };
  if (id !== undefined && isWireError(obj.error)) return { kind: 'error', id, error: obj.error };
  return { kind: 'invalid', reason: NO_VARIANT };
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
    if (rawKey === wanted) return text.slice(valueStart, i);
    skipWs();
    if (text[i] !== ',') return undefined;
    i++;
  }
  return undefined;
}
