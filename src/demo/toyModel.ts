/**
 * The demo's model: a randomly initialized Qwen2 decoder, small enough to train on two CPU
 * cores in a minute, with a tokenizer cut from the bundled Qwen1.5 one (see smallTokenizer.ts)
 * and Qwen1.5's chat template. It knows nothing: the demo shows the pipeline and that LoRA
 * training moves the loss and the metrics, not a useful model.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile } from '../util/jsonl.js';
import { mulberry32 } from '../util/random.js';
import { UserError } from '../util/errors.js';
import { requireModelFile } from '../data/modelFiles.js';
import { expectQwen2Tensors, saveCheckpoint } from '../model/checkpoint.js';
import { parseModelConfig, type Qwen2Config } from '../model/config.js';
import { f32Tensor, type HostTensor } from '../tensor/tensor.js';
import { remapTokenizerConfig, shrinkByteLevelBpe } from './smallTokenizer.js';

export interface ToyModelOptions {
  /** Merges kept from the source tokenizer. */
  merges: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediateSize: number;
  seed: number;
}

export const TOY_MODEL_DEFAULTS: ToyModelOptions = {
  merges: 3000,
  hiddenSize: 128,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  intermediateSize: 256,
  seed: 1234,
};

export interface ToyModel {
  dir: string;
  config: Qwen2Config;
  /** Tokens the tokenizer defines (the embedding has `config.vocabSize` rows, a multiple of 64). */
  tokenizerSize: number;
  merges: number;
  parameters: number;
}

const SPECIAL = { endoftext: '<|endoftext|>', imEnd: '<|im_end|>' } as const;

/** Standard normal draws (Box-Muller over mulberry32): the same weights on every machine. */
function normalSource(seed: number): () => number {
  const uniform = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = 1 - uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/**
 * Weight scales: norms 1, biases 0, embeddings N(0, 1) and projections N(0, 1/fan_in) so
 * activations keep their size through the layers. (transformers' N(0, 0.02) would make every
 * logit nearly equal, and LoRA, which cannot change the frozen lm_head, could not make any
 * token likely.)
 */
function randomWeights(cfg: Qwen2Config, seed: number): Record<string, HostTensor> {
  const normal = normalSource(seed);
  const out: Record<string, HostTensor> = {};
  for (const spec of expectQwen2Tensors(cfg)) {
    if (spec.optional) continue;
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (spec.name.endsWith('norm.weight')) data.fill(1);
    else if (!spec.name.endsWith('.bias')) {
      const std = spec.name === 'model.embed_tokens.weight' ? 1 : 1 / Math.sqrt(spec.shape[1]);
      for (let i = 0; i < n; i++) data[i] = std * normal();
    }
    out[spec.name] = f32Tensor(spec.shape, data);
  }
  return out;
}

/**
 * Writes a complete model folder to `dir` (config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json, generation_config.json) from the tokenizer files in `tokenizerDir`.
 */
export function buildToyModel(dir: string, tokenizerDir: string, opts: ToyModelOptions = TOY_MODEL_DEFAULTS): ToyModel {
  const tokenizerPath = requireModelFile(tokenizerDir, 'tokenizer');
  const configPath = requireModelFile(tokenizerDir, 'tokenizerConfig');
  const small = shrinkByteLevelBpe(
    readJsonFile<Record<string, unknown>>(tokenizerPath, 'tokenizer file'),
    opts.merges,
    tokenizerPath,
  );
  const tokenizerConfig = remapTokenizerConfig(
    readJsonFile<Record<string, unknown>>(configPath, 'tokenizer config'),
    small.idMap,
    configPath,
  );
  const added = small.tokenizer.added_tokens as { id: number; content: string }[];
  const idOf = (content: string): number => {
    const t = added.find((a) => a.content === content);
    if (!t) throw new UserError(`${tokenizerPath}: no added token ${content} (the demo needs a ChatML tokenizer)`);
    return t.id;
  };
  const endoftext = idOf(SPECIAL.endoftext);
  const imEnd = idOf(SPECIAL.imEnd);

  const config = parseModelConfig(
    {
      model_type: 'qwen2',
      architectures: ['Qwen2ForCausalLM'],
      hidden_size: opts.hiddenSize,
      intermediate_size: opts.intermediateSize,
      num_hidden_layers: opts.layers,
      num_attention_heads: opts.heads,
      num_key_value_heads: opts.kvHeads,
      // Rounded up as Qwen's own 151,936 is: rows past the tokenizer are never produced by it.
      vocab_size: Math.ceil(small.vocabSize / 64) * 64,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: false,
      bos_token_id: endoftext,
      eos_token_id: imEnd,
      torch_dtype: 'float32',
    },
    'demo model config',
  );
  mkdirSync(dir, { recursive: true });
  const weights = randomWeights(config, opts.seed);
  saveCheckpoint(dir, config, weights);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(small.tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  writeFileSync(
    join(dir, 'generation_config.json'),
    JSON.stringify(
      { bos_token_id: endoftext, eos_token_id: [imEnd, endoftext], pad_token_id: endoftext, do_sample: false },
      null,
      2,
    ) + '\n',
  );
  const parameters = Object.values(weights).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  return { dir, config, tokenizerSize: small.vocabSize, merges: small.merges, parameters };
}
