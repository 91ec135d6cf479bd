/**
 * Loading a model for inference or training: a model folder or Hub id (downloaded into the Hugging
 * Face cache) with its tokenizer, generation config and optional PEFT adapter, on the backend
 * chosen by `device`, and the token ids that end a turn or pad a batch.
 */
import { join } from 'node:path';
import { createBackend } from '../backend/select.js';
import { Tokenizer } from '../data/tokenizer.js';
import { resolveModel } from '../hub/download.js';
import { LoraAdapter } from '../lora/lora.js';
import { ADAPTER_WEIGHTS_FILE, readPeftAdapter, type PeftAdapter } from '../lora/peft.js';
import { loadGenerationConfig, type GenerationConfig } from '../model/config.js';
import { Qwen2Model } from '../model/qwen2.js';
import { UserError } from '../util/errors.js';

export const QUANTIZE = ['nf4', 'none'] as const;
/** ChatML's end of turn: a chat model's answer ends with it even where eos_token is another token. */
export const END_OF_TURN = '<|im_end|>';

export interface LoadedModel {
  /** The --model argument as given (Hub id or path), recorded in adapters we write. */
  source: string;
  dir: string;
  model: Qwen2Model;
  tokenizer: Tokenizer;
  adapter: LoraAdapter | null;
  generationConfig: GenerationConfig | undefined;
  /** Ids that end generation: generation_config's and config's eos, the tokenizer's eos and `<|im_end|>`. */
  stopIds: number[];
  /** Padding for generation batches: generation_config's pad, else the tokenizer's, else the first stop id. */
  padId: number;
}

export interface LoadModelOptions {
  /** Hub id or folder; when absent, the adapter's base_model_name_or_path. */
  model?: string;
  /** A PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  adapter?: string;
  /** cpu, cuda or auto (default: an NVIDIA GPU when one is found, else the CPU). */
  device?: string;
  /** nf4 (default: the base's projections stored 4-bit, as QLoRA) or none. */
  quantize?: string;
  /** No loading message on stderr. */
  quiet?: boolean;
}

/** The model to load: --model, else the adapter's base_model_name_or_path; a UserError when neither names one. */
export function baseModelSource(
  model: string | undefined,
  adapterDir: string | undefined,
  peft: PeftAdapter | null,
): string {
  const source = model ?? peft?.baseModelNameOrPath ?? undefined;
  if (source === undefined) {
    throw new UserError(
      adapterDir !== undefined
        ? `--model is required: ${adapterDir}/adapter_config.json names no base model`
        : '--model is required (a model folder or a Hugging Face repo id)',
    );
  }
  return source;
}

/** Reads the adapter's config first (it may name the base), then the model, then attaches the adapter. */
export async function loadModel(opts: LoadModelOptions): Promise<LoadedModel> {
  const backend = createBackend(opts.device ?? 'auto');
  const peft: PeftAdapter | null = opts.adapter !== undefined ? readPeftAdapter(opts.adapter) : null;
  const source = baseModelSource(opts.model, opts.adapter, peft);
  const dir = (
    await resolveModel(source).catch((err: unknown) => {
      // A relative folder in adapter_config.json is read from the current folder, as PEFT does: say so.
      if (opts.model !== undefined || !(err instanceof UserError)) throw err;
      throw new UserError(
        `${err.message} (the base model named by ${opts.adapter}/adapter_config.json; if it is a local folder, pass --model DIR)`,
      );
    })
  ).dir;
  const quantize = opts.quantize ?? 'nf4';
  if (!(QUANTIZE as readonly string[]).includes(quantize))
    throw new UserError(`quantize must be one of ${QUANTIZE.join(', ')}, got ${JSON.stringify(quantize)}`);
  const nf4 = quantize === 'nf4';
  const say = (s: string): void => {
    if (!opts.quiet) process.stderr.write(s);
  };
  // Loading a 1.8B model takes seconds: say what is happening, then how long it took.
  say(`model: ${dir} on ${backend.name}${nf4 ? ', quantizing to NF4' : ''}: `);
  const started = performance.now();
  let model: Qwen2Model;
  try {
    model = Qwen2Model.load(dir, backend, { quantize: nf4 ? 'nf4' : null });
  } catch (err) {
    say('failed\n');
    throw err;
  }
  say(`loaded in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  const tokenizer = Tokenizer.fromModelDir(dir);
  if (tokenizer.vocabSize > model.config.vocabSize) {
    throw new UserError(
      `the tokenizer of ${dir} has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`,
    );
  }
  let adapter: LoraAdapter | null = null;
  if (peft) {
    // upload() checks every tensor against the model's layers and shapes.
    adapter = LoraAdapter.upload(backend, model.config, peft, join(opts.adapter!, ADAPTER_WEIGHTS_FILE));
    model.setLora(adapter);
  }
  const generationConfig = loadGenerationConfig(dir);
  const stop = new Set<number>([...(generationConfig?.eosTokenIds ?? []), ...model.config.eosTokenIds]);
  if (tokenizer.special.eos !== undefined) stop.add(tokenizer.special.eos);
  const eot = tokenizer.tokenId(END_OF_TURN);
  if (eot !== undefined) stop.add(eot);
  const stopIds = [...stop];
  const padId = generationConfig?.padTokenId ?? tokenizer.special.pad ?? stopIds[0] ?? 0;
  return { source, dir, model, tokenizer, adapter, generationConfig, stopIds, padId };
}

/** Prompts decoded together: the flag's value, or with 0 what pays on the backend (a GPU wants wide batches). */
export function decodeBatchSize(requested: number, loaded: LoadedModel): number {
  return requested > 0 ? requested : loaded.model.backend.computeDType === 'f32' ? 8 : 64;
}
