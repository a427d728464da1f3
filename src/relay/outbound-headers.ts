/**
 * What a turn sends upstream besides credentials: the headers codex sends on the Responses
 * requests (spec D.4) and the Responses request body. The upstream actor adds the credentials,
 * the transport's own headers (`openai-beta` on the WebSocket; `accept`, `content-type` and
 * `x-openai-internal-codex-responses-lite` on the POST) and the scoped headers.
 */
import { CODEX_COMPAT_VERSION } from '../broker/server-info.js';

export interface TurnIdentity {
  threadId: string;
  turnId: string;
  model: string;
  /** The initialize `userAgent` of the client the thread serves. */
  userAgent: string;
  originator: string;
}

/** Headers in codex's order; `x-client-request-id` and `session-id` are the thread id, as in codex. */
export function turnHeaders(id: TurnIdentity): Record<string, string> {
  return {
    'user-agent': id.userAgent,
    originator: id.originator,
    version: CODEX_COMPAT_VERSION,
    'x-codex-beta-features': 'remote_compaction_v2',
    'x-client-request-id': id.threadId,
    'session-id': id.threadId,
    'thread-id': id.threadId,
    'x-codex-window-id': `${id.threadId}:0`,
    'x-codex-turn-metadata': JSON.stringify({ turn_id: id.turnId }),
    'x-codex-routing-hint': `model=${id.model}`,
  };
}

/** A Responses input item (the conversation so far, and the new user message). */
export type ResponseItem = Record<string, unknown>;

export function userMessage(text: string): ResponseItem {
  return { type: 'message', role: 'user', content: [{ type: 'input_text', text }] };
}

export function assistantMessage(text: string): ResponseItem {
  return { type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] };
}

export function developerMessage(text: string): ResponseItem {
  return { type: 'message', role: 'developer', content: [{ type: 'input_text', text }] };
}

/** Gatehouse relays conversations and runs no tools; this stands in for codex's long prompt. */
export const DEFAULT_INSTRUCTIONS =
  'You are a helpful coding assistant. You cannot run tools or commands in this session; answer in text.';

/**
 * The Responses body: the whole conversation every time (`store: false`, as codex sends it), no
 * tools. The WebSocket sends the same object inside a `response.create` frame.
 */
export function responsesBody(p: {
  threadId: string;
  model: string;
  instructions: string;
  input: ResponseItem[];
}): Record<string, unknown> {
  return {
    model: p.model,
    instructions: p.instructions,
    input: p.input,
    tools: [],
    tool_choice: 'auto',
    parallel_tool_calls: false,
    reasoning: null,
    store: false,
    stream: true,
    include: [],
    prompt_cache_key: p.threadId,
  };
}
