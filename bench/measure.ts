/**
 * The sqlora side of the benchmark: model shapes, the FLOPs estimate both sides share, random
 * weights and inputs, and timed LoRA training steps and greedy generation on any Backend.
 */
import type { Backend, Tensor } from '../src/backend/backend.js';
import { CudaBackend } from '../src/backend/cuda/cuda-backend.js';
import { initLora, LoraAdapter, type LoraConfig } from '../src/lora/lora.js';
import { parseModelConfig, type Qwen2Config } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import { Qwen2Model, type TrainOptions } from '../src/model/qwen2.js';
import { nf4Quantizer, uploadQwen2Weights } from '../src/model/qwen2-weights.js';
import { ADAMW_DEFAULTS, AdamW, clipGradNormOnDevice } from '../src/train/optimizer.js';
import { mixSeed, mulberry32 } from '../src/util/random.js';

export type ShapeName = '1.8b' | 'tiny';

/** config.json of each shape (tools/reference/bench_hf.py builds the same models). */
export const SHAPES: Record<ShapeName, Record<string, unknown>> = {
  '1.8b': {
    hidden_size: 2048,
    intermediate_size: 5504,
    num_hidden_layers: 24,
    num_attention_heads: 16,
    num_key_value_heads: 16,
    vocab_size: 151936,
    max_position_embeddings: 32768,
  },
  tiny: {
    hidden_size: 128,
    intermediate_size: 352,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    vocab_size: 2048,
    max_position_embeddings: 4096,
  },
};

export function shapeConfig(shape: ShapeName): Qwen2Config {
  const json = {
    ...SHAPES[shape],
    model_type: 'qwen2',
    architectures: ['Qwen2ForCausalLM'],
    hidden_act: 'silu',
    rms_norm_eps: 1e-6,
    rope_theta: 1e6,
    tie_word_embeddings: false,
    use_sliding_window: false,
  };
  return parseModelConfig(json, `bench shape ${shape}`);
}

/** H100 SXM dense bf16 peak (the H200 has the same tensor cores and clocks). */
export const PEAK_FLOPS = 989e12;

export interface FlopsEstimate {
  /** Weights of every matmul: 7 projections per layer and lm_head (the embedding is a lookup). */
  matmulParams: number;
  loraParams: number;
  perToken: number;
}

/**
 * Training FLOPs per token with a frozen base: 2N forward + 2N for activation gradients (no weight
 * gradients), 6 per LoRA weight (forward, activation and weight gradients), and attention
 * 12*L*T*H*hd (scores and values, forward + backward, not halved for causality: PaLM's convention).
 */
export function trainFlops(c: Qwen2Config, seqLen: number, loraR: number, targets: readonly string[]): FlopsEstimate {
  const D = c.hiddenSize,
    q = c.numHeads * c.headDim,
    kv = c.numKvHeads * c.headDim,
    I = c.intermediateSize;
  const dims: Record<string, [number, number]> = {
    q_proj: [D, q],
    k_proj: [D, kv],
    v_proj: [D, kv],
    o_proj: [q, D],
    gate_proj: [D, I],
    up_proj: [D, I],
    down_proj: [I, D],
  };
  const matmulParams = c.numLayers * Object.values(dims).reduce((s, [i, o]) => s + i * o, 0) + c.vocabSize * D;
  const loraParams = c.numLayers * targets.reduce((s, t) => s + loraR * (dims[t][0] + dims[t][1]), 0);
  return { matmulParams, loraParams, perToken: 4 * matmulParams + 6 * loraParams + 12 * c.numLayers * seqLen * q };
}

/**
 * A model with random weights as transformers initializes them (std 0.02 — here uniform with that
 * std, which is as fast to compute with and much faster to draw —, zero biases, unit norms),
 * its layer projections optionally quantized to NF4.
 */
export function randomModel(c: Qwen2Config, be: Backend, seed: number, quantize: 'nf4' | null = null): Qwen2Model {
  const bound = 0.02 * Math.sqrt(3);
  let n = 0;
  const weights = uploadQwen2Weights(
    be,
    c,
    (name, shape) => {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (name.endsWith('norm.weight')) return values.fill(1);
      if (name.endsWith('.bias')) return values;
      const rand = mulberry32(mixSeed(seed, n++));
      for (let i = 0; i < values.length; i++) values[i] = (2 * rand() - 1) * bound;
      return values;
    },
    quantize === 'nf4' ? { nf4: nf4Quantizer } : {},
  );
  return new Qwen2Model(c, be, weights);
}

/** Random prompts of length len ± 10% (ids 1..V-1), the same for both sides of the benchmark. */
export function randomPrompts(count: number, len: number, vocab: number, seed: number): number[][] {
  const rand = mulberry32(mixSeed(seed, 0x9e0));
  const spread = Math.max(1, Math.floor(len / 10));
  return Array.from({ length: count }, () => {
    const n = len - spread + Math.floor(rand() * (2 * spread + 1));
    return Array.from({ length: n }, () => 1 + Math.floor(rand() * (vocab - 1)));
  });
}

export interface PeakMemory {
  bytes: number;
  /** device: bytes of live tensors at their highest (the CUDA caching allocator's count, cached blocks not included); process-rss: the process's peak resident memory (CPU backend, JavaScript heap included). */
  kind: 'device' | 'process-rss';
}

function resetPeak(be: Backend): void {
  if (be instanceof CudaBackend) be.device.allocator.resetPeak();
}

function peakMemory(be: Backend): PeakMemory {
  if (be instanceof CudaBackend) return { bytes: be.memoryStats().peakInUse, kind: 'device' };
  return { bytes: process.resourceUsage().maxRSS * 1024, kind: 'process-rss' };
}

/** Waits until the backend has finished all queued work (download does). */
function synchronize(be: Backend, probe: Tensor): void {
  be.download(probe);
}

export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  targets: LoraConfig['targetModules'];
}

export interface TrainResult {
  batch: number;
  seq: number;
  steps: number;
  warmup: number;
  tokens: number;
  seconds: number;
  tokens_per_s: number;
  step_ms: number;
  /** Each timed step's wall time (each ends reading the gradient norm back): a trend shows clocks falling under a power or heat limit. */
  steps_ms: number[];
  loss_first: number;
  loss_last: number;
  peak_bytes: number;
  peak_kind: PeakMemory['kind'];
}

/**
 * Timed LoRA training steps on one fixed random batch (labels = inputs, every position trained):
 * forward, backward, gradient clipping at 1.0, AdamW (lr 2e-4, weight decay 0.01), zero grads,
 * then the loss and gradient norm read back — the step of src/train/sft.ts without data loading.
 * `warmup` untimed steps come first.
 */
export async function measureTrain(
  model: Qwen2Model,
  batch: number,
  seq: number,
  steps: number,
  warmup: number,
  lora: LoraSettings,
  seed: number,
  trainOptions: Pick<TrainOptions, 'recomputeLayers' | 'activationBudget'> = {},
): Promise<TrainResult> {
  const be = model.backend;
  const cfg: LoraConfig = {
    r: lora.r,
    alpha: lora.alpha,
    dropout: lora.dropout,
    targetModules: lora.targets,
    useRslora: false,
  };
  const adapter = LoraAdapter.upload(be, model.config, initLora(model.config, cfg, seed));
  const params = adapter.parameters();
  const optimizer = new AdamW(be, params, { ...ADAMW_DEFAULTS, weightDecay: 0.01 }, adapter.flat());
  const probe = be.alloc([1]);
  const rand = mulberry32(mixSeed(seed, batch, seq));
  const ids = Int32Array.from({ length: batch * seq }, () => Math.floor(rand() * model.config.vocabSize));
  model.setLora(adapter);
  resetPeak(be);
  const losses: number[] = [];
  const stepsMs: number[] = [];
  let start = performance.now();
  try {
    for (let step = 0; step < warmup + steps; step++) {
      if (step === warmup) {
        synchronize(be, probe);
        start = performance.now();
      }
      const stepStart = performance.now();
      const out = model.forwardTrain(
        { batchSize: batch, seqLen: seq, inputIds: ids, labels: ids },
        { dropoutSeed: mixSeed(seed, step), ...trainOptions },
      );
      model.backward(out);
      const normSquared = clipGradNormOnDevice(be, [adapter.flat().grad], 1.0);
      optimizer.step(2e-4);
      adapter.zeroGrad();
      losses.push(out.loss);
      be.download(normSquared);
      be.free(normSquared);
      if (step >= warmup) stepsMs.push(performance.now() - stepStart);
      // Lets a Ctrl-C through between steps.
      await new Promise((resolve) => setImmediate(resolve));
    }
    synchronize(be, probe);
    const seconds = (performance.now() - start) / 1000;
    const tokens = batch * seq * steps;
    const peak = peakMemory(be);
    return {
      batch,
      seq,
      steps,
      warmup,
      tokens,
      seconds,
      tokens_per_s: tokens / seconds,
      step_ms: (1000 * seconds) / steps,
      steps_ms: stepsMs.map((ms) => Math.round(ms * 100) / 100),
      loss_first: losses[0],
      loss_last: losses[losses.length - 1],
      peak_bytes: peak.bytes,
      peak_kind: peak.kind,
    };
  } finally {
    model.setLora(null);
    optimizer.free();
    adapter.free();
    be.free(probe);
  }
}

export interface GenerateResult {
  prompts: number;
  prompt_tokens: number;
  new_tokens: number;
  seconds: number;
  tokens_per_s: number;
  gen_batch: number;
  new_tokens_per_prompt: number;
  peak_bytes: number;
  peak_kind: PeakMemory['kind'];
}

/**
 * Greedy generation of exactly `newTokens` tokens per prompt (no stop ids), in batches of
 * `genBatch` (generate() sorts prompts longest first, as the HF side does), after one untimed
 * warm-up batch. Counts new tokens over the whole run, prefill included.
 */
export async function measureGenerate(
  model: Qwen2Model,
  prompts: number[][],
  newTokens: number,
  genBatch: number,
): Promise<GenerateResult> {
  const opts = { stopIds: [], padId: 0, batchSize: genBatch };
  await generate(model, prompts.slice(0, genBatch), { ...opts, maxNewTokens: Math.min(newTokens, 8) });
  resetPeak(model.backend);
  const start = performance.now();
  const results = await generate(model, prompts, { ...opts, maxNewTokens: newTokens });
  const seconds = (performance.now() - start) / 1000;
  const made = results.reduce((s, r) => s + r.newIds.length, 0);
  if (made !== prompts.length * newTokens)
    throw new Error(`generate made ${made} new tokens, expected ${prompts.length} x ${newTokens}`);
  const peak = peakMemory(model.backend);
  return {
    prompts: prompts.length,
    prompt_tokens: prompts.reduce((s, p) => s + p.length, 0),
    new_tokens: made,
    seconds,
    tokens_per_s: made / seconds,
    gen_batch: genBatch,
    new_tokens_per_prompt: newTokens,
    peak_bytes: peak.bytes,
    peak_kind: peak.kind,
  };
}
