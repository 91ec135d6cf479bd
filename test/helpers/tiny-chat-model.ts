/**
 * A complete tiny chat model folder for CLI tests: a byte-level BPE tokenizer.json (the 256
 * byte tokens, a few merges for SQL words, and ChatML's three special tokens), a
 * tokenizer_config.json with a ChatML chat template, generation_config.json, and a random
 * Qwen2 checkpoint whose vocabulary matches the tokenizer, saved with saveCheckpoint.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BYTE_TO_CHAR } from '../../src/data/byteLevel.js';
import { ChatTemplate } from '../../src/data/chatTemplate.js';
import { expectQwen2Tensors, saveCheckpoint } from '../../src/model/checkpoint.js';
import { f32Tensor } from '../../src/tensor/tensor.js';
import { randomWeights, tinyConfig } from './random-qwen2.js';

/** Qwen2's pre-tokenizer split pattern. */
export const QWEN_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const WORDS = ['SELECT', 'FROM', 'WHERE', 'count'];
export const SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;
const CHAT_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface TinyChatModel {
  dir: string;
  vocabSize: number;
  ids: { endoftext: number; imStart: number; imEnd: number };
}

/** Merges spelling each word (and its space-prefixed form) left to right. */
export function mergesFor(words: string[]): [string, string][] {
  const merges: [string, string][] = [];
  for (const w of words) {
    for (const word of [w, BYTE_TO_CHAR[32] + w]) {
      let left = word[0];
      for (const ch of word.slice(1)) {
        merges.push([left, ch]);
        left += ch;
      }
    }
  }
  return merges;
}

/** The 256 byte tokens of a byte-level BPE vocabulary (ids 0..255). */
export function byteVocab(): Record<string, number> {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((c, b) => (vocab[c] = b));
  return vocab;
}

/** Adds the token of each merge not in `vocab` yet, numbered on from its last; returns the merges added. */
export function addMerges(vocab: Record<string, number>, pairs: readonly [string, string][]): [string, string][] {
  let next = Object.keys(vocab).length;
  const kept: [string, string][] = [];
  for (const [a, b] of pairs) {
    if (vocab[a + b] !== undefined) continue;
    vocab[a + b] = next++;
    kept.push([a, b]);
  }
  return kept;
}

/** tokenizer.json of a byte-level BPE (Qwen's split pattern): `vocab`, `merges`, then the special tokens. */
export function bpeTokenizerJson(
  vocab: Record<string, number>,
  merges: readonly [string, string][],
  special: readonly string[],
): object {
  const first = Object.keys(vocab).length;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map((content, i) => ({
      id: first + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN_SPLIT }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export function writeTinyChatModel(dir: string, seed = 1): TinyChatModel {
  const vocab = byteVocab();
  const merges = addMerges(vocab, mergesFor(WORDS));
  const first = Object.keys(vocab).length;
  const vocabSize = first + SPECIAL_TOKENS.length;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(bpeTokenizerJson(vocab, merges, SPECIAL_TOKENS)));
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      add_prefix_space: false,
      bos_token: null,
      eos_token: '<|im_end|>',
      pad_token: '<|endoftext|>',
      unk_token: null,
      additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
      chat_template: CHAT_TEMPLATE,
      model_max_length: 512,
    }),
  );
  const ids = { endoftext: first, imStart: first + 1, imEnd: first + 2 };
  writeFileSync(
    join(dir, 'generation_config.json'),
    JSON.stringify({ eos_token_id: [ids.imEnd, ids.endoftext], pad_token_id: ids.endoftext, do_sample: false }),
  );
  const cfg = tinyConfig({ vocab_size: vocabSize, eos_token_id: ids.imEnd, max_position_embeddings: 1024 });
  const weights = randomWeights(cfg, seed);
  const specs = expectQwen2Tensors(cfg).filter((s) => !s.optional);
  saveCheckpoint(
    dir,
    cfg,
    Object.fromEntries(specs.map((s) => [s.name, f32Tensor(s.shape, weights.get(s.name) as Float32Array)])),
  );
  return { dir, vocabSize, ids };
}

export interface SpiderQuestion {
  db_id: string;
  question: string;
  query: string;
}

/**
 * Writes prompt records as `sqlora prepare` does (id, db_id, question, query, hardness,
 * messages, text, prompt), rendered by the model's chat template, with a short prompt so
 * sequences stay small.
 */
export function writeRecords(
  path: string,
  modelDir: string,
  split: string,
  questions: readonly SpiderQuestion[],
): void {
  const template = ChatTemplate.fromModelDir(modelDir);
  const lines = questions.map((q, i) => {
    const messages = [
      { role: 'system' as const, content: 'Write SQL.' },
      { role: 'user' as const, content: `Database: ${q.db_id}\nQuestion: ${q.question}` },
      { role: 'assistant' as const, content: q.query },
    ];
    const record = {
      id: `${split}-${i}`,
      db_id: q.db_id,
      question: q.question,
      query: q.query,
      hardness: null,
      messages,
      text: template.render(messages),
      prompt: template.render(messages.slice(0, 2), { addGenerationPrompt: true }),
    };
    return JSON.stringify(record) + '\n';
  });
  writeFileSync(path, lines.join(''));
}
