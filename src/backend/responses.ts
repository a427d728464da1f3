/**
 * The Responses events the local backend streams for one request, over SSE or the WebSocket: a
 * deterministic echo of the last user text (`Echo: <text>`), split into a few deltas, in the
 * order the real API sends them. A compaction request (an input ending with
 * `{"type":"compaction_trigger"}`) is answered `Compacted.` the same way.
 */
import { randomBytes } from 'node:crypto';
import { sleep } from './http-io.js';

export type ResponsesEvent = Record<string, unknown> & { type: string };

export const COMPACTION_ANSWER = 'Compacted.';
const DELTA_COUNT = 4;

export class ResponsesRequestError extends Error {
  override name = 'ResponsesRequestError';
}

/** The fields the backend uses from a Responses request body (POST or `response.create`). */
export interface ResponsesRequest {
  input: unknown[] | string;
}

/** Checks a request body; the error message is sent back to the client. */
export function parseResponsesRequest(body: unknown): ResponsesRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ResponsesRequestError('the request must be a JSON object');
  }
  const { input, stream } = body as { input?: unknown; stream?: unknown };
  if (!Array.isArray(input) && typeof input !== 'string') {
    throw new ResponsesRequestError('"input" must be an array of input items or a string');
  }
  if (stream === false) {
    throw new ResponsesRequestError('the local backend only streams responses: send "stream": true');
  }
  return { input };
}

export function answerFor(request: ResponsesRequest): string {
  const { input } = request;
  if (typeof input === 'string') return `Echo: ${input}`;
  const last = input.at(-1) as { type?: unknown } | undefined;
  if (last?.type === 'compaction_trigger') return COMPACTION_ANSWER;
  const text = lastUserText(input);
  return text === undefined ? 'Echo: (no input)' : `Echo: ${text}`;
}

/** The text of the last user message: its `input_text` parts, joined (or its string content). */
function lastUserText(input: unknown[]): string | undefined {
  for (let i = input.length - 1; i >= 0; i--) {
    const item = input[i] as { type?: unknown; role?: unknown; content?: unknown } | null;
    if (item?.role !== 'user' || (item.type !== undefined && item.type !== 'message')) continue;
    if (typeof item.content === 'string') return item.content;
    if (!Array.isArray(item.content)) continue;
    return item.content
      .filter((part) => (part as { type?: unknown } | null)?.type === 'input_text')
      .map((part) => (part as { text?: unknown }).text)
      .filter((t): t is string => typeof t === 'string')
      .join('');
  }
  return undefined;
}

export function responseEvents(request: ResponsesRequest): ResponsesEvent[] {
  const id = `resp_${randomBytes(12).toString('hex')}`;
  const itemId = `msg_${randomBytes(12).toString('hex')}`;
  const text = answerFor(request);
  const inputTokens = estimateTokens(JSON.stringify(request.input));
  const outputTokens = estimateTokens(text);
  return [
    { type: 'response.created', response: { id, status: 'in_progress' } },
    {
      type: 'response.output_item.added',
      output_index: 0,
      item: { type: 'message', id: itemId, role: 'assistant', status: 'in_progress', content: [] },
    },
    ...chunks(text, DELTA_COUNT).map((delta) => ({
      type: 'response.output_text.delta',
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      delta,
    })),
    {
      type: 'response.output_item.done',
      output_index: 0,
      item: {
        type: 'message',
        id: itemId,
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text }],
      },
    },
    {
      type: 'response.completed',
      response: {
        id,
        status: 'completed',
        usage: {
          input_tokens: inputTokens,
          output_tokens: outputTokens,
          total_tokens: inputTokens + outputTokens,
        },
      },
    },
  ];
}

/** Up to `count` pieces of about equal length, never splitting a code point. */
function chunks(text: string, count: number): string[] {
  const points = Array.from(text);
  if (points.length === 0) return [''];
  const size = Math.ceil(points.length / count);
  const out: string[] = [];
  for (let i = 0; i < points.length; i += size) out.push(points.slice(i, i + size).join(''));
  return out;
}

/** About four characters a token: good enough for usage figures nobody bills. */
function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

export interface EventSink {
  /** Sends one event; resolves once it is handed to the socket. */
  send(event: ResponsesEvent): Promise<void>;
  /** Cuts the connection (a scripted disconnect). */
  cut(): void;
  /** True once the peer went away or the backend closed. */
  readonly closed: boolean;
}

export type PlayOutcome = 'completed' | 'cut' | 'gone';

/**
 * Sends the events in order, waiting `delayMs` between two events, and cuts the connection
 * instead of sending event number `cutAfter` (0-based; undefined: never).
 */
export async function playEvents(
  events: ResponsesEvent[],
  sink: EventSink,
  options: { delayMs: number; cutAfter?: number; signal: AbortSignal },
): Promise<{ outcome: PlayOutcome; sent: number }> {
  for (let i = 0; i < events.length; i++) {
    if (options.cutAfter !== undefined && i >= options.cutAfter) {
      sink.cut();
      return { outcome: 'cut', sent: i };
    }
    if (i > 0 && options.delayMs > 0 && !(await sleep(options.delayMs, options.signal))) {
      return { outcome: 'gone', sent: i };
    }
    if (sink.closed) return { outcome: 'gone', sent: i };
    await sink.send(events[i]!);
  }
  return { outcome: 'completed', sent: events.length };
}
