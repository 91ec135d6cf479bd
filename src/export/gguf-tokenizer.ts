/**
 * The tokenizer of a Qwen2 model folder as GGUF metadata, the way convert_hf_to_gguf.py's
 * gpt2 path writes it: `tokenizer.ggml.model` "gpt2" (byte-level BPE) with pre-tokenizer
 * "qwen2", one token string per id up to the model's vocab_size (ids the tokenizer does not
 * define become "[PADi]", user-defined), token types (normal; added tokens control when
 * special, user-defined otherwise), the merges as "a b" strings, the special token ids
 * (tokenizer_config.json's, else config.json's bos/eos/pad ids) and the chat template.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { ChatTemplate } from '../data/chatTemplate.js';
import { readTokenizerConfig, requireModelFile } from '../data/modelFiles.js';
import type { Qwen2Config } from '../model/config.js';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { gguf, type GgufValue } from './gguf-format.js';

/** gguf-py's TokenType. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

export interface GgufVocab {
  tokens: string[];
  types: number[];
  merges: string[];
  specialIds: { bos?: number; eos?: number; pad?: number; unk?: number };
  chatTemplate?: string;
}

/** Reads the model folder's tokenizer into what the GGUF needs (vocab padded to the embedding's rows). */
export function readGgufVocab(modelDir: string, cfg: Qwen2Config): GgufVocab {
  const path = requireModelFile(modelDir, 'tokenizer');
  const json = readJsonFile<TokenizerJson>(path, 'tokenizer file');
  if (json.model?.type !== 'BPE' || !json.model.vocab)
    throw new UserError(
      `${path}: GGUF export needs a byte-level BPE tokenizer (model.type "BPE"), got ${JSON.stringify(json.model?.type)}`,
    );
  const byId = new Map<number, { text: string; type: number }>();
  for (const [text, id] of Object.entries(json.model.vocab)) byId.set(id, { text, type: TOKEN_TYPE.NORMAL });
  for (const t of json.added_tokens ?? []) {
    const looksSpecial = /^<\|.*\|>$/.test(t.content);
    byId.set(t.id, { text: t.content, type: t.special || looksSpecial ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED });
  }
  let largest = -1;
  for (const id of byId.keys()) if (id > largest) largest = id;
  if (largest >= cfg.vocabSize)
    throw new UserError(`${path} defines token id ${largest}, but the model's vocab_size is ${cfg.vocabSize}`);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < cfg.vocabSize; id++) {
    const t = byId.get(id);
    tokens.push(t?.text ?? `[PAD${id}]`);
    types.push(t?.type ?? TOKEN_TYPE.USER_DEFINED);
  }
  const merges = (json.model.merges ?? []).map((m) => (Array.isArray(m) ? `${m[0]} ${m[1]}` : m));
  const ids = new Map<string, number>();
  tokens.forEach((t, id) => ids.set(t, id));
  const idOf = (content: string | undefined): number | undefined =>
    content === undefined ? undefined : ids.get(content);
  const tc = readTokenizerConfig(modelDir);
  const rawConfig = readJsonFile<Record<string, unknown>>(join(modelDir, 'config.json'), 'model config');
  const configId = (key: string): number | undefined => {
    const v = rawConfig[key];
    const first = Array.isArray(v) ? v[0] : v;
    return typeof first === 'number' ? first : undefined;
  };
  const specialIds = {
    bos: idOf(tc?.bosToken) ?? configId('bos_token_id'),
    eos: idOf(tc?.eosToken) ?? configId('eos_token_id'),
    pad: idOf(tc?.padToken) ?? configId('pad_token_id'),
    unk: idOf(tc?.unkToken),
  };
  let chatTemplate: string | undefined;
  if (existsSync(join(modelDir, 'chat_template.jinja')) || typeof tc?.chatTemplate === 'string')
    chatTemplate = ChatTemplate.fromModelDir(modelDir).source;
  return { tokens, types, merges, specialIds, chatTemplate };
}

/** The tokenizer.* metadata entries, in the converter's order. */
export function tokenizerMetadata(v: GgufVocab): [string, GgufValue][] {
  const out: [string, GgufValue][] = [
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str('qwen2')],
    ['tokenizer.ggml.tokens', gguf.strs(v.tokens)],
    ['tokenizer.ggml.token_type', gguf.i32s(v.types)],
    ['tokenizer.ggml.merges', gguf.strs(v.merges)],
  ];
  const ids: [keyof GgufVocab['specialIds'], string][] = [
    ['eos', 'eos_token_id'],
    ['pad', 'padding_token_id'],
    ['bos', 'bos_token_id'],
    ['unk', 'unknown_token_id'],
  ];
  for (const [k, key] of ids) {
    const id = v.specialIds[k];
    if (id !== undefined) out.push([`tokenizer.ggml.${key}`, gguf.u32(id)]);
  }
  // Qwen's tokenizer adds no BOS; say so rather than leave llama.cpp to guess.
  out.push(['tokenizer.ggml.add_bos_token', gguf.bool(false)]);
  if (v.chatTemplate !== undefined) out.push(['tokenizer.chat_template', gguf.str(v.chatTemplate)]);
  return out;
}
