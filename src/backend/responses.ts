/**
 * The Responses events the local backend streams for one request: a deterministic echo of the
 * last user text, split into a few deltas, in the order the real API sends them.
 */
import { randomBytes } from 'node:crypto';

export type ResponsesEvent = Record<string, unknown> & { type: string };

export function answerFor(body: unknown): string {
  const input = (body as { input?: unknown } | null)?.input;
  if (!Array.isArray(input)) return 'Echo: (no input)';
  if (input.some((i) => (i as { type?: unknown } | null)?.type === 'compaction_trigger')) return 'Compacted.';
  for (let i = input.length - 1; i >= 0; i--) {
    const item = input[i] as { role?: unknown; content?: unknown } | null;
    if (item?.role !== 'user' || !Array.isArray(item.content)) continue;
    const text = item.content
      .map((c) => (c as { text?: unknown } | null)?.text)
      .filter((t): t is string => typeof t === 'string')
      .join('');
    return `Echo: ${text}`;
  }
  return 'Echo: (no input)';
}

export function responseEvents(body: unknown): ResponsesEvent[] {
  const id = `resp_${randomBytes(8).toString('hex')}`;
  const itemId = `msg_${randomBytes(8).toString('hex')}`;
  const text = answerFor(body);
  const chunks = text.match(/.{1,8}/gsu) ?? [''];
  const tokens = Math.max(1, Math.ceil(text.length / 4));
  return [
    { type: 'response.created', response: { id, status: 'in_progress' } },
    {
      type: 'response.output_item.added',
      output_index: 0,
      item: { type: 'message', id: itemId, role: 'assistant', status: 'in_progress', content: [] },
    },
    ...chunks.map((delta) => ({
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
        usage: { input_tokens: 8, output_tokens: tokens, total_tokens: 8 + tokens },
      },
    },
  ];
}
