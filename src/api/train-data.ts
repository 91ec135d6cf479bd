/**
 * Prompt records (train.jsonl / eval.jsonl from `sqlora prepare`) tokenized into training
 * examples: the whole rendered `text`, with the tokens of `prompt` (its prefix) masked unless
 * the loss is on the whole sequence. Generic chat records ({"messages": [...]}) are accepted too
 * and rendered with the model's chat template (src/api/chatRecords.ts).
 */
import type { ChatRenderer } from '../data/prompts.js';
import type { PromptRecord } from '../data/records.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { buildExample, type ExampleOptions, type TrainExample } from '../train/batching.js';
import { chatExample, isChatRow, toChatRecord, type ChatRecord } from './chatRecords.js';
import { UserError } from '../util/errors.js';
import { readJsonl } from '../util/jsonl.js';
import { END_OF_TURN } from './load.js';

export interface TokenizedSplit {
  examples: TrainExample[];
  /** Examples cut at the maximum length. */
  truncated: number;
  /** Examples left with no token to learn from (the completion was cut off entirely). */
  empty: number;
}

export type TrainRecord = Pick<PromptRecord, 'id' | 'text' | 'prompt'> | ChatRecord;

/** Reads records, checking the fields training needs: prepare's text and prompt, or chat messages. */
export function readRecords(path: string): TrainRecord[] {
  const rows = readJsonl<Partial<PromptRecord>>(path, 'records file');
  if (rows.length === 0) throw new UserError(`${path} has no records`);
  return rows.map((r, i) => {
    const where = `${path}: record ${i + 1}${typeof r?.id === 'string' ? ` (${r.id})` : ''}`;
    if (isChatRow(r)) return toChatRecord(r, where, i);
    if (typeof r?.text !== 'string' || typeof r.prompt !== 'string')
      throw new UserError(
        `${where}: needs string fields "text" and "prompt" (write it with sqlora prepare), or "messages" (a chat record)`,
      );
    if (!r.text.startsWith(r.prompt)) throw new UserError(`${where}: "prompt" is not a prefix of "text"`);
    return { id: String(r.id ?? i), text: r.text, prompt: r.prompt };
  });
}

/** The ids that end an assistant turn: `<|im_end|>` when the vocabulary has it, else the eos token. */
export function endOfTurnIds(tokenizer: Tokenizer): Set<number> {
  const eot = tokenizer.tokenId(END_OF_TURN) ?? tokenizer.special.eos;
  return new Set(eot === undefined ? [] : [eot]);
}

/** `template` gives the model's chat template, needed only for chat records. */
export function tokenizeRecords(
  records: readonly TrainRecord[],
  tokenizer: Tokenizer,
  opts: ExampleOptions,
  template: () => ChatRenderer,
): TokenizedSplit {
  let truncated = 0;
  let empty = 0;
  const examples = records.map((r) => {
    if ('messages' in r) {
      const { length, ...e } = chatExample(r, template(), tokenizer, opts);
      if (length > opts.maxLength) truncated++;
      if (e.targets === 0) empty++;
      return e;
    }
    const ids = tokenizer.encode(r.text);
    const prompt = tokenizer.encode(r.prompt);
    // The prompt's tokens are normally a prefix of the text's; where a merge crosses the
    // boundary, the shared prefix is the prompt.
    let n = 0;
    while (n < prompt.length && prompt[n] === ids[n]) n++;
    const e = buildExample(ids, n, opts);
    if (ids.length > opts.maxLength) truncated++;
    if (e.targets === 0) empty++;
    return e;
  });
  return { examples, truncated, empty };
}
