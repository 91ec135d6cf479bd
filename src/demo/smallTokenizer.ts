/**
 * A smaller byte-level BPE tokenizer cut from a large one (Qwen's, 151,646 tokens): the first K
 * merges by rank, the vocabulary entries they and the 256 byte symbols need, and the added
 * (ChatML) tokens, renumbered densely in the source's id order. A prefix of a merge list is
 * still a correct BPE: every text is encoded (byte symbols cover everything) and decodes back
 * unchanged; words just split into more pieces. The demo needs it because a CPU training step
 * with a 151,936-row lm_head is far too slow for a toy model.
 */
import { BYTE_TO_CHAR } from '../data/byteLevel.js';
import { UserError } from '../util/errors.js';

export interface SmallTokenizer {
  /** tokenizer.json content. */
  tokenizer: Record<string, unknown>;
  /** Source id -> new id, for every token kept (vocabulary and added tokens). */
  idMap: Map<number, number>;
  /** Merges kept (some of the first K may be dropped when a part is missing). */
  merges: number;
  /** One past the largest new id. */
  vocabSize: number;
}

interface RawAddedToken {
  id: number;
  content: string;
  [key: string]: unknown;
}

function splitMerge(merge: unknown, rank: number, where: string): [string, string] {
  if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string')
    return [merge[0], merge[1]];
  if (typeof merge === 'string') {
    const parts = merge.split(' ');
    if (parts.length === 2 && parts[0] !== '' && parts[1] !== '') return [parts[0], parts[1]];
  }
  throw new UserError(`${where}: merge #${rank} ${JSON.stringify(merge)} is not "a b" or ["a", "b"]`);
}

/**
 * Keeps the first `maxMerges` merges of `source` (a parsed tokenizer.json of the byte-level BPE
 * kind) whose two parts are in the kept vocabulary, and everything else of the file unchanged.
 */
export function shrinkByteLevelBpe(source: Record<string, unknown>, maxMerges: number, where: string): SmallTokenizer {
  const model = source.model as { type?: unknown; vocab?: Record<string, number>; merges?: unknown[] } | undefined;
  if (model?.type !== 'BPE' || typeof model.vocab !== 'object' || !Array.isArray(model.merges)) {
    throw new UserError(`${where}: expected a byte-level BPE tokenizer.json (model.type "BPE" with vocab and merges)`);
  }
  const vocab = model.vocab;
  const kept = new Set<string>();
  for (const c of BYTE_TO_CHAR) {
    if (vocab[c] === undefined)
      throw new UserError(`${where}: the vocabulary lacks the byte symbol ${JSON.stringify(c)}; not a byte-level BPE`);
    kept.add(c);
  }
  const merges: [string, string][] = [];
  for (let rank = 0; rank < model.merges.length && merges.length < maxMerges; rank++) {
    const [a, b] = splitMerge(model.merges[rank], rank, where);
    // A merge whose parts are gone could never fire; one whose result is not in the
    // vocabulary would produce a token without an id.
    if (!kept.has(a) || !kept.has(b) || vocab[a + b] === undefined) continue;
    merges.push([a, b]);
    kept.add(a + b);
  }

  const tokens = [...kept].sort((x, y) => vocab[x] - vocab[y]);
  const idMap = new Map<number, number>();
  const newVocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    newVocab[t] = i;
    idMap.set(vocab[t], i);
  });
  const added = ((source.added_tokens ?? []) as RawAddedToken[]).slice().sort((x, y) => x.id - y.id);
  const newAdded = added.map((t, i) => {
    idMap.set(t.id, tokens.length + i);
    return { ...t, id: tokens.length + i };
  });
  const stringMerges = typeof model.merges[0] === 'string';
  return {
    tokenizer: {
      ...source,
      added_tokens: newAdded,
      model: { ...model, vocab: newVocab, merges: merges.map(([a, b]) => (stringMerges ? `${a} ${b}` : [a, b])) },
    },
    idMap,
    merges: merges.length,
    vocabSize: tokens.length + newAdded.length,
  };
}

/**
 * tokenizer_config.json for the smaller tokenizer: the same chat template and special tokens,
 * with `added_tokens_decoder` keyed by the new ids.
 */
export function remapTokenizerConfig(
  config: Record<string, unknown>,
  idMap: Map<number, number>,
  where: string,
): Record<string, unknown> {
  const decoder = config.added_tokens_decoder as Record<string, unknown> | undefined;
  if (decoder === undefined) return config;
  const remapped: Record<string, unknown> = {};
  for (const [id, entry] of Object.entries(decoder)) {
    const to = idMap.get(Number(id));
    if (to === undefined)
      throw new UserError(`${where}: added_tokens_decoder names id ${id}, which the tokenizer does not keep`);
    remapped[String(to)] = entry;
  }
  return { ...config, added_tokens_decoder: remapped };
}
