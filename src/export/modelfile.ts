/**
 * An Ollama Modelfile for an exported GGUF: FROM the file beside it, a TEMPLATE in Ollama's
 * Go template syntax rendering the model's ChatML turns, the end-of-turn token as a stop
 * sequence, and the system prompt the adapter was trained with.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SEED_SYSTEM } from '../data/prompts.js';
import { readJsonFile } from '../util/jsonl.js';

/** Where `sqlora train` may record how an adapter was trained (read when present). */
export const SQLORA_ADAPTER_INFO = 'sqlora.json';

/** ChatML as Ollama renders it: an optional system turn, the user turn, the assistant's reply. */
export const CHATML_OLLAMA_TEMPLATE = [
  '{{ if .System }}<|im_start|>system',
  '{{ .System }}<|im_end|>',
  '{{ end }}{{ if .Prompt }}<|im_start|>user',
  '{{ .Prompt }}<|im_end|>',
  '{{ end }}<|im_start|>assistant',
  '{{ .Response }}<|im_end|>',
  '',
].join('\n');

export const END_OF_TURN = '<|im_end|>';

/**
 * The system prompt an adapter was trained with: `system_prompt` from its sqlora.json when
 * recorded there, else the seed workflow's (what `sqlora prepare` writes by default).
 */
export function adapterSystemPrompt(adapterDir: string): string {
  const path = join(adapterDir, SQLORA_ADAPTER_INFO);
  if (existsSync(path)) {
    const info = readJsonFile<Record<string, unknown>>(path, 'sqlora adapter info');
    if (typeof info.system_prompt === 'string') return info.system_prompt;
  }
  return SEED_SYSTEM;
}

/** A triple-quoted Modelfile value; the text must not itself contain `"""`. */
function quoted(text: string): string {
  return `"""${text.replaceAll('"""', '\\"\\"\\"')}"""`;
}

export interface ModelfileOptions {
  /** The GGUF's file name, relative to the Modelfile's folder. */
  ggufFile: string;
  /** SYSTEM line; omitted when undefined. */
  system?: string;
}

export function renderModelfile(opts: ModelfileOptions): string {
  const lines = [
    `FROM ./${opts.ggufFile}`,
    `TEMPLATE ${quoted(CHATML_OLLAMA_TEMPLATE)}`,
    `PARAMETER stop "${END_OF_TURN}"`,
  ];
  if (opts.system !== undefined) lines.push(`SYSTEM ${quoted(opts.system)}`);
  return lines.join('\n') + '\n';
}
