/**
 * Remote compaction v2 as codex 0.169.0 does it (spec D.1; codex-rs/core/src/compact_remote_v2.rs):
 * the Responses request is the conversation followed by `{"type":"compaction_trigger"}`, and the
 * conversation that replaces the thread's is
 *
 *   the user messages of the old conversation (newest first, within 64,000 estimated tokens)
 *   + the one `compaction` output item of the response
 *   + the thread's developer instructions, re-injected (codex re-injects its initial context on
 *     the turn after a manual compaction, i.e. after the compacted items)
 *
 * Assistant messages, developer messages and earlier compaction items are dropped.
 *
 * Gatehouse differences, on purpose:
 * - a response without a `compaction` item but with an assistant message (the local backend
 *   answers `Compacted.` as text) uses that message as the summary; codex would fail the
 *   compaction ("expected exactly one compaction output item").
 * - a user message that does not fit the token budget whole is dropped with all older ones;
 *   codex keeps a middle-truncated copy of it.
 */
import { assistantMessage, developerMessage, type ResponseItem } from '../../src/relay/outbound-headers.js';

/** The last input item of a compaction request. */
export const COMPACTION_TRIGGER: ResponseItem = { type: 'compaction_trigger' };

/** codex's RETAINED_MESSAGE_TOKEN_BUDGET. */
export const RETAINED_MESSAGE_TOKEN_BUDGET = 64_000;

/** The Responses input of a compaction request. */
export function compactionInput(history: readonly ResponseItem[]): ResponseItem[] {
  return [...history, COMPACTION_TRIGGER];
}

export type CompactedHistory = { ok: true; history: ResponseItem[] } | { ok: false; message: string };

/**
 * The conversation after a successful compaction response whose completed output items are
 * `outputs`, or codex's error text when the response carries no usable summary.
 */
export function compactedHistory(
  history: readonly ResponseItem[],
  outputs: readonly ResponseItem[],
  developerInstructions: string | null,
  budget: number = RETAINED_MESSAGE_TOKEN_BUDGET,
): CompactedHistory {
  const compactions = outputs.filter((item) => item.type === 'compaction');
  let summary: ResponseItem | undefined;
  if (compactions.length === 1) {
    const { type, encrypted_content } = compactions[0]!;
    summary = { type, encrypted_content };
  } else if (compactions.length === 0) {
    const text = outputs
      .filter((item) => item.type === 'message' && item.role === 'assistant')
      .map(messageText)
      .join('');
    if (text !== '') summary = assistantMessage(text);
  }
  if (!summary) {
    return {
      ok: false,
      message: `remote compaction v2 expected exactly one compaction output item, got ${compactions.length} from ${outputs.length} output items`,
    };
  }
  const retained = retainedUserMessages(history, budget);
  return {
    ok: true,
    history: [
      ...retained,
      summary,
      ...(developerInstructions ? [developerMessage(developerInstructions)] : []),
    ],
  };
}

/** The user messages of `history`, newest first within `budget` tokens, back in their order. */
export function retainedUserMessages(history: readonly ResponseItem[], budget: number): ResponseItem[] {
  const kept: ResponseItem[] = [];
  let remaining = budget;
  for (let i = history.length - 1; i >= 0 && remaining > 0; i--) {
    const item = history[i]!;
    if (item.type !== 'message' || item.role !== 'user') continue;
    const tokens = Math.max(1, approxTokens(messageText(item)));
    if (tokens > remaining) break;
    kept.push(item);
    remaining -= tokens;
  }
  return kept.reverse();
}

/** codex's approx_token_count: a token is about four bytes of UTF-8. */
export function approxTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
}

/** The text parts (`input_text`, `output_text`) of a message item, joined. */
function messageText(item: ResponseItem): string {
  const content = item.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      return (p?.type === 'input_text' || p?.type === 'output_text') && typeof p.text === 'string'
        ? p.text
        : '';
    })
    .join('');
}
