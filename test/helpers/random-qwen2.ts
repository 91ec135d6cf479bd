/**
 * Small random Qwen2 models built in memory for consistency tests (the HF reference fixtures
 * in test/fixtures/tiny/ check the numbers themselves).
 */
import type { Backend } from '../../src/backend/backend.js';
import { expectQwen2Tensors } from '../../src/model/checkpoint.js';
import { initLora, type LoraConfig, type HostLora } from '../../src/lora/lora.js';
import { parseModelConfig, type Qwen2Config } from '../../src/model/config.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import { uploadQwen2Weights, type UploadOptions } from '../../src/model/qwen2-weights.js';
import { f32Tensor } from '../../src/tensor/tensor.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function randomArray(n: number, scale: number, rand: () => number, offset = 0): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = offset + (2 * rand() - 1) * scale;
  return a;
}

export function tinyConfig(overrides: Record<string, unknown> = {}): Qwen2Config {
  return parseModelConfig(
    {
      model_type: 'qwen2',
      architectures: ['Qwen2ForCausalLM'],
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 50,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: false,
      ...overrides,
    },
    'test config',
  );
}

/** Random weights for every tensor the config implies: norms near 1, projections small. */
export function randomWeights(cfg: Qwen2Config, seed: number): Map<string, Float32Array> {
  const rand = rng(seed);
  const out = new Map<string, Float32Array>();
  for (const spec of expectQwen2Tensors(cfg)) {
    if (spec.optional) continue;
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const isNorm = spec.name.endsWith('norm.weight');
    out.set(
      spec.name,
      Float32Array.from(
        isNorm ? randomArray(n, 0.2, rand, 1) : randomArray(n, spec.name.includes('embed') ? 1 : 0.25, rand),
      ),
    );
  }
  return out;
}

export function randomModel(be: Backend, cfg: Qwen2Config, seed = 1, opts: UploadOptions = {}): Qwen2Model {
  const weights = randomWeights(cfg, seed);
  const read = (name: string): Float32Array => {
    const w = weights.get(name);
    if (!w) throw new Error(`no ${name}`);
    return w;
  };
  return new Qwen2Model(cfg, be, uploadQwen2Weights(be, cfg, read, opts));
}

/**
 * initLora's adapter with random B factors (uniform in [-0.3, 0.3), from bSeed): PEFT starts B at
 * zero, which makes every A gradient zero, so checks of A's gradients need a B that is not.
 */
export function loraWithRandomB(cfg: Qwen2Config, config: LoraConfig, seed: number, bSeed: number): HostLora {
  const host = initLora(cfg, config, seed);
  const rand = rng(bSeed);
  for (const [name, t] of Object.entries(host.tensors)) {
    if (name.includes('lora_B'))
      host.tensors[name] = f32Tensor(t.shape, Float32Array.from(randomArray(t.shape[0] * t.shape[1], 0.3, rand)));
  }
  return host;
}
