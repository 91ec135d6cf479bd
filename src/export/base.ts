/**
 * Which base model an export merges into: `--model` when given, else the adapter's
 * base_model_name_or_path; a folder or a Hub id (downloaded or taken from the cache).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../hub/download.js';
import { ADAPTER_CONFIG_FILE } from '../lora/peft.js';
import { UserError, describeError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

export interface ResolvedBase {
  /** The local model folder. */
  dir: string;
  /** What named it: the --model value or the adapter's base_model_name_or_path. */
  source: string;
  from: 'model' | 'adapter';
}

export async function resolveExportBase(adapterDir: string | undefined, model?: string): Promise<ResolvedBase> {
  let source = model;
  let from: ResolvedBase['from'] = 'model';
  if (source === undefined && adapterDir !== undefined) {
    const path = join(adapterDir, ADAPTER_CONFIG_FILE);
    if (!existsSync(path)) throw new UserError(`no ${ADAPTER_CONFIG_FILE} in ${adapterDir}: not a PEFT adapter folder`);
    const base = readJsonFile<Record<string, unknown>>(path, 'adapter config').base_model_name_or_path;
    if (typeof base !== 'string' || base === '')
      throw new UserError(`${path} names no base model (base_model_name_or_path): pass --model DIR|HUB_ID`);
    source = base;
    from = 'adapter';
  }
  if (source === undefined) throw new UserError('--model is required (a model folder or a Hugging Face repo id)');
  try {
    const dir = (await resolveModel(source)).dir;
    if (!existsSync(join(dir, 'config.json'))) throw new UserError(`${dir} has no config.json: not a model folder`);
    return { dir, source, from };
  } catch (err) {
    if (from === 'adapter')
      throw new UserError(
        `the adapter's base model ${source} (base_model_name_or_path in ${join(adapterDir as string, ADAPTER_CONFIG_FILE)}) cannot be found: ${describeError(err)}; pass --model DIR|HUB_ID`,
      );
    throw err;
  }
}
