/**
 * The PEFT adapter folder: adapter_config.json + adapter_model.safetensors, as PEFT's
 * save_pretrained writes them and PeftModel.from_pretrained reads them. We write every config
 * field PEFT writes for a plain LoRA (so the folder loads in PEFT unchanged) and read any PEFT
 * LoRA adapter whose forward pass we compute exactly; options that change the math (DoRA,
 * per-module ranks, bias training, ...) are refused with a message instead of being ignored.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Qwen2Config } from '../model/config.js';
import { PROJECTIONS, type ProjectionName } from '../model/qwen2-linear.js';
import { SafetensorsFile, writeSafetensors } from '../tensor/safetensors.js';
import type { HostTensor } from '../tensor/tensor.js';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { peftTensorName, validateLoraConfig, type HostLora, type LoraConfig } from './lora.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** adapter_config.json for a LoRA on a causal LM, keys sorted as PEFT writes them. */
export function peftConfigJson(c: LoraConfig, baseModelNameOrPath: string | null): Record<string, unknown> {
  const json: Record<string, unknown> = {
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    auto_mapping: null,
    base_model_name_or_path: baseModelNameOrPath,
    bias: 'none',
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    kasa_config: null,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: c.alpha,
    lora_bias: false,
    lora_dropout: c.dropout,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    monteclora_config: null,
    peft_type: 'LORA',
    qalora_group_size: 16,
    r: c.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...c.targetModules],
    target_parameters: null,
    task_type: 'CAUSAL_LM',
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: c.useRslora,
    velora_config: null,
  };
  return json;
}

export interface WritePeftOptions {
  /** The base model's hub id or path, recorded for PeftModel.from_pretrained. */
  baseModelNameOrPath?: string | null;
  /** More files for the folder (name -> text), such as sqlora.json, the adapter's prompt settings. */
  extraFiles?: Record<string, string>;
}

/** Writes `dir`/adapter_config.json, `dir`/adapter_model.safetensors and any extra files. */
export function writePeftAdapter(dir: string, adapter: HostLora, opts: WritePeftOptions = {}): void {
  const c = validateLoraConfig(adapter.config);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, ADAPTER_CONFIG_FILE),
    JSON.stringify(peftConfigJson(c, opts.baseModelNameOrPath ?? null), null, 2) + '\n',
  );
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), adapter.tensors, { format: 'pt' });
  for (const [name, text] of Object.entries(opts.extraFiles ?? {})) writeFileSync(join(dir, name), text);
}

export interface PeftAdapter extends HostLora {
  /** base_model_name_or_path from the config (null when absent). */
  baseModelNameOrPath: string | null;
}

/** Reads a PEFT LoRA adapter folder; with `model`, the tensors are checked against its layers. */
export function readPeftAdapter(dir: string, model?: Qwen2Config): PeftAdapter {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(configPath)) throw new UserError(`no ${ADAPTER_CONFIG_FILE} in ${dir}: not a PEFT adapter folder`);
  if (!existsSync(weightsPath)) {
    const hint = existsSync(join(dir, 'adapter_model.bin'))
      ? ' (adapter_model.bin is a pickle; re-save it with safe_serialization=True)'
      : '';
    throw new UserError(`no ${ADAPTER_WEIGHTS_FILE} in ${dir}${hint}`);
  }
  const raw = readJsonFile<Record<string, unknown>>(configPath, 'adapter config');
  const tensors = SafetensorsFile.readAll(weightsPath);
  const config = parsePeftConfig(raw, configPath, Object.keys(tensors));
  if (model) checkLayers(config, tensors, model, weightsPath);
  const base = raw.base_model_name_or_path;
  return { config, tensors, baseModelNameOrPath: typeof base === 'string' && base !== '' ? base : null };
}

const EMPTY = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  v === false ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === 'object' && v !== null && Object.keys(v).length === 0);

/** Config fields whose non-default values change the forward pass in ways we do not model. */
const UNSUPPORTED: Record<string, string> = {
  use_dora: 'DoRA adapters',
  rank_pattern: 'per-module ranks (rank_pattern)',
  alpha_pattern: 'per-module alphas (alpha_pattern)',
  layers_to_transform: 'adapters on a subset of layers (layers_to_transform)',
  modules_to_save: 'fully trained extra modules (modules_to_save)',
  lora_bias: 'trained LoRA biases (lora_bias)',
  fan_in_fan_out: 'fan_in_fan_out (Conv1D-style weights)',
  trainable_token_indices: 'trainable token embeddings',
  target_parameters: 'LoRA on parameters (target_parameters)',
  layer_replication: 'layer replication',
  use_qalora: 'QA-LoRA',
  alora_invocation_tokens: 'activated LoRA (aLoRA)',
  arrow_config: 'Arrow routing',
};

/** The LoRA config of a parsed adapter_config.json; `names` are the weight file's tensors. */
export function parsePeftConfig(raw: Record<string, unknown>, path: string, names: string[]): LoraConfig {
  const fail = (why: string): UserError => new UserError(`${path}: ${why}`);
  if (raw.peft_type !== 'LORA')
    throw fail(`peft_type is ${JSON.stringify(raw.peft_type)}; only LORA adapters are supported`);
  for (const [field, what] of Object.entries(UNSUPPORTED)) {
    if (!EMPTY(raw[field])) throw fail(`${field} = ${JSON.stringify(raw[field])}: ${what} are not supported`);
  }
  if (raw.bias !== undefined && raw.bias !== 'none')
    throw fail(`bias is ${JSON.stringify(raw.bias)}; only "none" is supported`);
  const num = (field: string, dflt?: number): number => {
    const v = raw[field] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw fail(`${field} must be a number, got ${JSON.stringify(raw[field])}`);
    return v;
  };
  const useRslora = raw.use_rslora ?? false;
  if (typeof useRslora !== 'boolean') throw fail(`use_rslora must be true or false, got ${JSON.stringify(useRslora)}`);

  // Which projections are adapted is what the weights say; a target_modules list must agree.
  const present = PROJECTIONS.filter((p) => names.some((n) => n.endsWith(`.${p}.lora_A.weight`)));
  const listed = raw.target_modules;
  if (Array.isArray(listed)) {
    const wanted = new Set<ProjectionName>();
    for (const m of listed) {
      const last = typeof m === 'string' ? m.split('.').pop() : undefined;
      if (!last || !(PROJECTIONS as readonly string[]).includes(last)) {
        throw fail(`target_modules entry ${JSON.stringify(m)} is not a Qwen2 projection (${PROJECTIONS.join(', ')})`);
      }
      wanted.add(last as ProjectionName);
    }
    const missing = [...wanted].filter((p) => !present.includes(p));
    if (missing.length > 0)
      throw fail(`target_modules lists ${missing.join(', ')} but the weights have no lora_A for it`);
  } else if (typeof listed !== 'string') {
    throw fail(`target_modules must be a list of module names or a regular expression, got ${JSON.stringify(listed)}`);
  }
  const config: LoraConfig = {
    r: num('r'),
    alpha: num('lora_alpha'),
    dropout: num('lora_dropout', 0),
    targetModules: present,
    useRslora,
  };
  try {
    return validateLoraConfig(config);
  } catch (err) {
    throw fail((err as Error).message);
  }
}

/** Every layer must carry every adapted projection: partial-layer adapters are refused. */
function checkLayers(c: LoraConfig, tensors: Record<string, HostTensor>, model: Qwen2Config, path: string): void {
  for (let i = 0; i < model.numLayers; i++) {
    for (const p of c.targetModules) {
      for (const w of ['A', 'B'] as const) {
        const name = peftTensorName(i, p, w);
        if (!tensors[name])
          throw new UserError(
            `${path} has no ${name}: the adapter does not cover all ${model.numLayers} layers of the model`,
          );
      }
    }
  }
}
