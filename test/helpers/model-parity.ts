/**
 * Whole-model comparisons for a non-reference backend: the HF transformers + PEFT fixtures of
 * test/fixtures/tiny (logits, loss, LoRA gradients, greedy decoding), and short training runs
 * against the CPU backend. Each returns error measures instead of asserting, so the vitest test
 * (backend-cuda-model.test.ts) and tools/gpu-check share them.
 */
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { initLora, LoraAdapter } from '../../src/lora/lora.js';
import { readPeftAdapter } from '../../src/lora/peft.js';
import { shiftLabels, type TokenBatch, type TrainBatch } from '../../src/model/qwen2-batch.js';
import { PROJECTIONS } from '../../src/model/qwen2-linear.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import { nf4Quantizer } from '../../src/model/qwen2-weights.js';
import { toF32 } from '../../src/tensor/tensor.js';
import { AdamW, clipGradNorm } from '../../src/train/optimizer.js';
import { loraWithRandomB, randomModel, rng, tinyConfig } from './random-qwen2.js';
import { adapterDir, modelDir, readReference, relativeError, relativeRms, type Variant } from './tiny-fixture.js';

/** Error of a tensor against its reference: max |diff| / max |ref| and the relative RMS. */
export interface Err {
  rel: number;
  rms: number;
}

function err(got: ArrayLike<number>, ref: ArrayLike<number>, keep: (i: number) => boolean = () => true): Err {
  const n = ref.length;
  let maxAbs = 0,
    scale = 0;
  for (let i = 0; i < n; i++) {
    if (!keep(i)) continue;
    maxAbs = Math.max(maxAbs, Math.abs(got[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return { rel: maxAbs / scale, rms: relativeRms(got, ref, keep) };
}

export interface HfFixtureErrors {
  logits: Record<string, Err>;
  /** |loss - ref| / ref for the right- and left-padded batches. */
  loss: Record<string, number>;
  /** Worst lora_A / lora_B gradient over all parameters. */
  gradWorst: Err & { name: string };
  /** Greedy tokens equal to HF's, out of all generated (base and LoRA). */
  tokensMatching: number;
  tokensTotal: number;
  /**
   * Step logits of greedy decoding over the KV cache, for each row only while its tokens so far
   * equal HF's (after a near-tie picks another token, the inputs differ).
   */
  stepLogits: Err;
}

/** Runs every HF reference of a tiny variant on `be`. */
export function hfFixtureErrors(be: Backend, v: Variant, quantize: 'nf4' | null = null): HfFixtureErrors {
  const ref = readReference(v);
  const model = Qwen2Model.load(modelDir(v), be, { quantize });
  const V = model.config.vocabSize;
  const adapter = LoraAdapter.upload(be, model.config, readPeftAdapter(adapterDir(v), model.config));
  const batch = (side: string): TrainBatch => {
    const [B, T] = ref.shape(`${side}.input_ids`);
    return {
      batchSize: B,
      seqLen: T,
      inputIds: ref.ints(`${side}.input_ids`),
      attentionMask: ref.ints(`${side}.attention_mask`),
      labels: ref.ints(`${side}.labels`),
    };
  };
  const logits: Record<string, Err> = {};
  const loss: Record<string, number> = {};
  let gradWorst = { name: '', rel: 0, rms: 0 };
  for (const side of ['right', 'left']) {
    const b = batch(side);
    const mask = b.attentionMask as Int32Array;
    for (const [lora, key] of [
      [null, 'logits'],
      [adapter, 'lora_logits'],
    ] as const) {
      model.setLora(lora);
      const out = model.forward(b);
      logits[`${side}.${key}`] = err(
        be.download(out),
        ref.floats(`${side}.${key}`),
        (i) => mask[Math.floor(i / V)] === 1,
      );
      be.free(out);
    }
    model.setLora(adapter);
    adapter.zeroGrad();
    const step = model.forwardTrain(b);
    model.backward(step);
    const refLoss = ref.floats(`${side}.loss`)[0];
    loss[side] = Math.abs(step.loss - refLoss) / refLoss;
    if (side === 'right') {
      const grads = adapter.gradsToHost();
      for (const name of ref.names().filter((n) => n.startsWith('grad.'))) {
        const g = grads[name.slice('grad.'.length)],
          r = ref.floats(name);
        const e = { name, rel: relativeError(g, r), rms: relativeRms(g, r, () => true) };
        if (e.rel > gradWorst.rel) gradWorst = e;
      }
    }
  }
  let tokensMatching = 0,
    tokensTotal = 0;
  let stepLogits: Err = { rel: 0, rms: 0 };
  const prompt = batch('left');
  for (const [lora, key] of [
    [null, ''],
    [adapter, 'lora_'],
  ] as const) {
    model.setLora(lora);
    const seqs = ref.ints(`generate.${key}sequences`);
    const steps = ref.shape(`generate.${key}logits`)[0];
    const refLogits = ref.floats(`generate.${key}logits`);
    const { tokens, logits: got } = greedy(be, model, prompt, steps);
    const width = prompt.seqLen + steps,
      per = prompt.batchSize * V;
    const same = new Array<boolean>(prompt.batchSize).fill(true);
    for (let s = 0; s < steps; s++) {
      const e = err(got[s], refLogits.subarray(s * per, (s + 1) * per), (i) => same[Math.floor(i / V)]);
      if (same.some((x) => x))
        stepLogits = { rel: Math.max(stepLogits.rel, e.rel), rms: Math.max(stepLogits.rms, e.rms) };
      for (let b = 0; b < prompt.batchSize; b++) {
        tokensTotal++;
        if (tokens[s][b] === seqs[b * width + prompt.seqLen + s]) tokensMatching++;
        else same[b] = false;
      }
    }
  }
  adapter.free();
  model.free();
  return { logits, loss, gradWorst, tokensMatching, tokensTotal, stepLogits };
}

/** Greedy decoding over the KV cache: tokens [steps][B] and each step's logits. */
export function greedy(
  be: Backend,
  model: Qwen2Model,
  prompt: TokenBatch,
  steps: number,
): { tokens: Int32Array[]; logits: Float32Array[] } {
  const cache = model.createKvCache(prompt.batchSize, prompt.seqLen + steps);
  const tokens: Int32Array[] = [],
    logits: Float32Array[] = [];
  const V = model.config.vocabSize;
  let out = model.prefill(cache, prompt);
  for (let s = 0; s < steps; s++) {
    const l = Float32Array.from(be.download(out));
    be.free(out);
    logits.push(l);
    const next = new Int32Array(prompt.batchSize);
    for (let b = 0; b < prompt.batchSize; b++) {
      let best = 0;
      for (let j = 1; j < V; j++) if (l[b * V + j] > l[b * V + best]) best = j;
      next[b] = best;
    }
    tokens.push(next);
    if (s + 1 < steps) out = model.decodeStep(cache, next);
  }
  cache.free();
  return { tokens, logits };
}

export interface TrainingErrors {
  /** Loss of every step on the backend and on the CPU. */
  losses: { got: number; ref: number }[];
  gradNorms: { got: number; ref: number }[];
  /** Worst LoRA parameter after the last step. */
  paramsWorst: Err & { name: string };
  /** Logits of the NF4 model (same quantized weights) against the CPU's. */
  nf4Logits: Err;
}

/** A padded, completion-only batch of a random tiny model's vocabulary. */
function trainBatch(vocab: number, seed: number): TrainBatch {
  const B = 3,
    T = 24,
    lengths = [24, 17, 9];
  const rand = rng(seed);
  const inputIds = new Int32Array(B * T),
    attentionMask = new Int32Array(B * T),
    labels = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < lengths[b]; t++) {
      const id = 1 + Math.floor(rand() * (vocab - 1));
      inputIds[b * T + t] = id;
      attentionMask[b * T + t] = 1;
      if (t >= 4) labels[b * T + t] = id;
    }
  return { batchSize: B, seqLen: T, inputIds, attentionMask, labels };
}

/**
 * Three SFT steps (LoRA on all projections with dropout, NF4 base, two micro-batches per step,
 * clipping, AdamW) on `be` and on the CPU from the same start; losses, norms and final weights.
 */
export function trainingErrors(be: Backend): TrainingErrors {
  const cfg = tinyConfig({
    hidden_size: 64,
    intermediate_size: 96,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 300,
  });
  const lora = initLora(cfg, { r: 8, alpha: 16, dropout: 0.1, targetModules: [...PROJECTIONS], useRslora: false }, 3);
  const run = (
    b: Backend,
  ): { losses: number[]; norms: number[]; params: Record<string, Float32Array>; logits: Float32Array } => {
    const model = randomModel(b, cfg, 21, { nf4: nf4Quantizer });
    const adapter = LoraAdapter.upload(b, cfg, lora);
    model.setLora(adapter);
    const opt = new AdamW(b, adapter.parameters(), { weightDecay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    const losses: number[] = [],
      norms: number[] = [];
    for (let step = 0; step < 3; step++) {
      adapter.zeroGrad();
      const micro = [trainBatch(cfg.vocabSize, 100 + 2 * step), trainBatch(cfg.vocabSize, 101 + 2 * step)];
      const tokens = micro.reduce((n, m) => n + shiftLabels(m.labels, m.batchSize, m.seqLen).count, 0);
      let loss = 0;
      micro.forEach((m, i) => {
        const s = model.forwardTrain(m, { dropoutSeed: step * 2 + i, lossNormalizer: tokens });
        loss += s.loss;
        model.backward(s);
      });
      losses.push(loss);
      norms.push(clipGradNorm(b, adapter.parameters(), 1.0));
      opt.step(5e-3);
    }
    const params = Object.fromEntries(
      adapter.parameters().map((p) => [p.name, Float32Array.from(b.download(p.param))]),
    );
    model.setLora(null);
    const out = model.forward(trainBatch(cfg.vocabSize, 7));
    const logits = Float32Array.from(b.download(out));
    b.free(out);
    opt.free();
    adapter.free();
    model.free();
    return { losses, norms, params, logits };
  };
  const got = run(be),
    ref = run(new CpuBackend());
  let paramsWorst = { name: '', rel: 0, rms: 0 };
  for (const name of Object.keys(ref.params)) {
    // Changes from the start, so the untouched initial values do not hide errors in the updates.
    const start = toF32(lora.tensors[name]);
    const dGot = got.params[name].map((x, i) => x - start[i]),
      dRef = ref.params[name].map((x, i) => x - start[i]);
    const e = { name, ...err(dGot, dRef) };
    if (e.rel > paramsWorst.rel) paramsWorst = e;
  }
  return {
    losses: got.losses.map((g, i) => ({ got: g, ref: ref.losses[i] })),
    gradNorms: got.norms.map((g, i) => ({ got: g, ref: ref.norms[i] })),
    paramsWorst,
    nf4Logits: err(got.logits, ref.logits),
  };
}

/**
 * LoRA gradients of one micro-batch (NF4 base, dropout, all seven projections adapted) with
 * every layer's activations kept and with every layer recomputed in the backward pass, on the
 * same backend: the two should agree to the last bit where the kernels are deterministic.
 */
export function recomputeGradients(be: Backend): {
  kept: Record<string, Float32Array>;
  recomputed: Record<string, Float32Array>;
} {
  const cfg = tinyConfig({
    hidden_size: 64,
    intermediate_size: 96,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 300,
  });
  const model = randomModel(be, cfg, 21, { nf4: nf4Quantizer });
  const adapter = LoraAdapter.upload(
    be,
    cfg,
    loraWithRandomB(cfg, { r: 8, alpha: 16, dropout: 0.1, targetModules: [...PROJECTIONS], useRslora: false }, 3, 4),
  );
  model.setLora(adapter);
  const grads = (recomputeLayers: number): Record<string, Float32Array> => {
    adapter.zeroGrad();
    model.backward(model.forwardTrain(trainBatch(cfg.vocabSize, 100), { dropoutSeed: 5, recomputeLayers }));
    return Object.fromEntries(Object.entries(adapter.gradsToHost()).map(([k, v]) => [k, Float32Array.from(v)]));
  };
  const kept = grads(0),
    recomputed = grads(cfg.numLayers);
  model.setLora(null);
  adapter.free();
  model.free();
  return { kept, recomputed };
}
