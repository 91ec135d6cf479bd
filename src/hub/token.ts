/**
 * Where a Hugging Face token comes from, as huggingface_hub looks for it: a flag, the HF_TOKEN
 * (or older HUGGING_FACE_HUB_TOKEN) environment variable, or the token file that
 * `huggingface-cli login` writes ($HF_TOKEN_PATH, else $HF_HOME/token). The source is kept
 * beside the value so messages can say which token the Hub refused without showing it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hfHome } from './cache.js';

export interface HubToken {
  value: string;
  /** Where it came from, for messages: "the --token flag", "the HF_TOKEN environment variable", ... */
  source: string;
}

export function findHubToken(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): HubToken | undefined {
  if (flag !== undefined && flag !== '') return { value: flag, source: 'the --token flag' };
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const v = env[name];
    if (v) return { value: v, source: `the ${name} environment variable` };
  }
  const path = tokenFilePath(env);
  const value = existsSync(path) ? readFileSync(path, 'utf8').trim() : '';
  return value ? { value, source: `the token file ${path}` } : undefined;
}

/** huggingface_hub's token file, written by `huggingface-cli login`. */
export function tokenFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_TOKEN_PATH ?? join(hfHome(env), 'token');
}

/** `text` with every occurrence of the token replaced, for messages that quote a server's answer. */
export function redactToken(text: string, token: HubToken | undefined): string {
  return token && token.value.length >= 4 ? text.split(token.value).join('<token>') : text;
}
