/**
 * Generic chat records, as TRL and axolotl read them: one `{"messages": [{role, content}, ...]}`
 * per JSONL line. Rendered with the model's chat template; the loss falls on the assistant turns
 * only (each up to and including its end-of-turn token), or on every token with lossOnPrompt.
 */
import { IGNORE_INDEX } from '../model/qwen2-batch.js';
import { buildExample, type ExampleOptions, type TrainExample } from '../train/batching.js';
import { UserError } from '../util/errors.js';
import type { ChatRenderer, TokenCounter } from '../data/prompts.js';
import type { ChatMessage } from '../data/records.js';

export interface ChatRecord {
  id: string;
  messages: ChatMessage[];
}

const ROLES = ['system', 'user', 'assistant'];

/** Whether a parsed JSONL row is a chat record rather than one of `prepare`'s prompt records. */
export function isChatRow(row: unknown): boolean {
  const r = row as { messages?: unknown; text?: unknown } | null;
  return r !== null && typeof r === 'object' && Array.isArray(r.messages) && r.text === undefined;
}

/** Checks one chat row; `where` is FILE:LINE. */
export function toChatRecord(row: unknown, where: string, index: number): ChatRecord {
  const r = row as { id?: unknown; messages?: unknown };
  if (!isChatRow(row)) throw new UserError(`${where}: expected {"messages": [{"role", "content"}, ...]}`);
  const messages = (r.messages as unknown[]).map((m, k) => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    if (msg === null || typeof msg !== 'object' || !ROLES.includes(msg.role as string))
      throw new UserError(`${where}: messages[${k}].role must be one of ${ROLES.join(', ')}`);
    if (typeof msg.content !== 'string') throw new UserError(`${where}: messages[${k}].content must be a string`);
    return { role: msg.role as ChatMessage['role'], content: msg.content };
  });
  if (!messages.some((m) => m.role === 'assistant'))
    throw new UserError(`${where}: "messages" has no assistant turn to learn from`);
  return { id: typeof r.id === 'string' || typeof r.id === 'number' ? String(r.id) : String(index), messages };
}

function sharedPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/**
 * Token ids and labels of a chat: each assistant turn's span is where the render of the turns
 * before it (with the generation prompt) ends and the render through it begins to differ from the
 * whole conversation's tokens; everything else is masked.
 */
export function chatExample(
  rec: ChatRecord,
  template: ChatRenderer,
  tokenizer: TokenCounter,
  opts: ExampleOptions,
): TrainExample & { length: number } {
  const text = template.render(rec.messages, { addGenerationPrompt: false });
  const ids = tokenizer.encode(text);
  if (opts.lossOnPrompt) return { ...buildExample(ids, 0, opts), length: ids.length };
  const labels = new Int32Array(ids.length).fill(IGNORE_INDEX);
  rec.messages.forEach((m, k) => {
    if (m.role !== 'assistant') return;
    const before = template.render(rec.messages.slice(0, k), { addGenerationPrompt: true });
    const through = template.render(rec.messages.slice(0, k + 1), { addGenerationPrompt: false });
    if (!text.startsWith(before) || !text.startsWith(through))
      throw new UserError(
        `record ${rec.id}: the chat template does not render the conversation's start as a prefix of the whole; the assistant turns cannot be told apart`,
      );
    const start = sharedPrefix(tokenizer.encode(before), ids);
    let end = sharedPrefix(tokenizer.encode(through), ids);
    // Up to and including the turn's end-of-turn token: what the template adds after it is not learned.
    for (let i = end - 1; i >= start; i--)
      if (opts.endOfTurnIds.has(ids[i])) {
        end = i + 1;
        break;
      }
    for (let i = start; i < end; i++) labels[i] = ids[i];
  });
  const n = Math.min(ids.length, opts.maxLength);
  const cut = labels.slice(0, n);
  let targets = 0;
  for (let i = 1; i < n; i++) if (cut[i] !== IGNORE_INDEX) targets++;
  return { ids: Int32Array.from(ids.slice(0, n)), labels: cut, targets, length: ids.length };
}
