/**
 * Timings of the CUDA backend at Qwen1.5-1.8B's layer shapes (hidden 2048, 16 heads of 128,
 * MLP 5504, vocabulary 151936): single kernels at a batch of 8 x 512 tokens, and whole QLoRA
 * training steps (NF4 base, LoRA r=16 on q,k,v,o, dropout 0.05) of models with 2 and 4 layers,
 * from which the step time of the full 24 layers is extrapolated. Weights are random: speed does
 * not depend on their values.
 */
import type { Nf4Weight, Tensor } from '../../src/backend/backend.js';
import type { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import type { CudaTensor } from '../../src/backend/cuda/cuda-tensor.js';
import { initLora, LoraAdapter } from '../../src/lora/lora.js';
import { parseModelConfig } from '../../src/model/config.js';
import type { TrainBatch } from '../../src/model/qwen2-batch.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import { uploadQwen2Weights } from '../../src/model/qwen2-weights.js';
import { NF4_BLOCKSIZE, NF4_CODE } from '../../src/tensor/nf4-blocks.js';
import { AdamW, clipGradNorm } from '../../src/train/optimizer.js';
import { rng } from '../../test/helpers/random-qwen2.js';

export const SHAPE_1_8B = { D: 2048, H: 16, hd: 128, I: 5504, V: 151936, layers: 24 } as const;

type Log = (line: string) => void;

/**
 * Mean milliseconds of `fn` over `iters` runs (synchronized), after warm-up runs that also let
 * the JavaScript engine optimize the host code (cold host code can be slower than the GPU).
 */
export function timeMs(be: CudaBackend, iters: number, fn: () => void, warmup = 20): number {
  for (let i = 0; i < warmup; i++) fn();
  be.synchronize();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  be.synchronize();
  return (performance.now() - t0) / iters;
}

const pattern = (() => {
  const r = rng(99);
  return Float32Array.from({ length: 1 << 16 }, () => (r() - 0.5) * 0.04);
})();

function filled(n: number, value?: number): Float32Array {
  const a = new Float32Array(n);
  if (value !== undefined) return a.fill(value);
  for (let i = 0; i < n; i += pattern.length) a.set(pattern.subarray(0, Math.min(pattern.length, n - i)), i);
  return a;
}

/** Random NF4 blocks without running the quantizer (only the speed is measured). */
export function randomNf4(shape: [number, number]): Nf4Weight {
  const n = shape[0] * shape[1];
  const r = rng(n);
  const codes = new Uint8Array(n / 2);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(r() * 256);
  return { shape, blockSize: NF4_BLOCKSIZE, code: NF4_CODE, codes, absmax: filled(n / NF4_BLOCKSIZE, 0.05) };
}

export function kernelTimings(be: CudaBackend, log: Log): Record<string, number> {
  const { D, H, hd, I, V } = SHAPE_1_8B;
  const B = 8,
    T = 512,
    N = B * T;
  const out: Record<string, number> = {};
  const owned: Tensor[] = [];
  const t = (shape: number[], dtype: 'bf16' | 'f32' | 'i32' = 'bf16', value?: number): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x =
      dtype === 'i32'
        ? be.upload(
            Int32Array.from({ length: n }, (_, i) => value ?? i % 1000),
            shape,
            'i32',
          )
        : be.upload(filled(n, value), shape, dtype);
    owned.push(x);
    return x;
  };
  const record = (name: string, ms: number, flops?: number): void => {
    out[name] = ms;
    log(
      `  ${name.padEnd(58)} ${ms.toFixed(3).padStart(9)} ms${flops ? `  ${(flops / ms / 1e9).toFixed(1)} TFLOP/s` : ''}`,
    );
  };
  const x = t([N, D]),
    wq = be.uploadNf4(randomNf4([I, D])),
    wd = t([I, D]),
    y = t([N, I]);
  owned.push(wq);
  record(
    'matmul bf16 [4096x2048] x [5504x2048]^T',
    timeMs(be, 10, () => be.matmul(y, x, wd, { transB: true })),
    2 * N * D * I,
  );
  record(
    'matmul nf4 (dequant + bf16 GEMM) same shape',
    timeMs(be, 10, () => be.matmul(y, x, wq, { transB: true })),
    2 * N * D * I,
  );
  const deq = be.scratch([I, D], 'bf16');
  record(
    '  of which NF4 dequantize [5504x2048] -> bf16',
    timeMs(be, 10, () => be.dequantizeNf4(deq, wq as CudaTensor)),
  );
  record(
    '  of which bf16 GEMM with the dequantized scratch',
    timeMs(be, 10, () => be.matmul(y, x, deq, { transB: true })),
    2 * N * D * I,
  );
  record(
    '  the two queued back to back (no matmul wrapper)',
    timeMs(be, 10, () => {
      be.dequantizeNf4(deq as CudaTensor, wq as CudaTensor);
      be.matmul(y, x, deq, { transB: true });
    }),
  );
  be.releaseScratch(deq);
  be.synchronize();
  const h0 = performance.now();
  for (let i = 0; i < 10; i++) be.matmul(y, x, wq, { transB: true });
  record('  host time to queue one nf4 matmul (warm)', (performance.now() - h0) / 10);
  be.synchronize();
  const wide = t([I, D], 'f32');
  record(
    'convert bf16 -> f32 [5504x2048] (bandwidth reference)',
    timeMs(be, 10, () => be.copy(wide, wd)),
  );
  const loraA = t([16, D], 'f32'),
    u = t([N, 16], 'f32');
  record(
    'LoRA u = x A^T ([4096x2048] x f32 [16x2048]^T)',
    timeMs(be, 10, () => be.matmul(u, x, loraA, { transB: true })),
  );
  const q = t([B, T, H, hd]),
    k = t([B, T, H, hd]),
    v = t([B, T, H, hd]),
    o = t([B, T, H, hd]),
    lse = t([B, T, H], 'f32');
  const mask = t([B, T], 'i32', 1),
    dq = t([B, T, H, hd]),
    dk = t([B, T, H, hd]),
    dv = t([B, T, H, hd]);
  const attnFlops = (4 * B * H * hd * (T * (T + 1))) / 2;
  record(
    'attention forward B8 T512 H16 hd128 (causal)',
    timeMs(be, 10, () => be.attentionForward(o, lse, q, k, v, mask)),
    attnFlops,
  );
  record(
    'attention backward',
    timeMs(be, 10, () => be.attentionBackward(dq, dk, dv, o, q, k, v, o, lse, mask)),
    2.5 * attnFlops,
  );
  const rstd = t([N], 'f32'),
    w = t([D], 'bf16', 1),
    xn = t([N, D]);
  record(
    'rmsNorm forward [4096x2048]',
    timeMs(be, 20, () => be.rmsNormForward(xn, rstd, x, w, 1e-6)),
  );
  record(
    'rmsNorm backward',
    timeMs(be, 20, () => be.rmsNormBackward(xn, x, x, w, rstd, true)),
  );
  const pos = t([N], 'i32');
  record(
    'rope forward q [4096x16x128] in place',
    timeMs(be, 20, () => be.ropeForward(q, be.reshape(q, [N, H, hd]), pos, 1e6)),
  );
  const g = t([N, I]),
    up = t([N, I]);
  record(
    'swiglu forward [4096x5504]',
    timeMs(be, 20, () => be.swigluForward(y, g, up)),
  );
  record(
    'swiglu backward (in place)',
    timeMs(be, 20, () => be.swigluBackward(g, up, y, g, up)),
  );
  const rows = Math.floor((1 << 24) / V);
  const logits = t([rows, V]),
    losses = t([rows], 'f32'),
    targets = t([rows], 'i32', 5);
  record(
    `crossEntropy + dlogits [${rows}x${V}] (one model chunk)`,
    timeMs(be, 10, () => be.crossEntropy(losses, logits, targets, logits, 1e-3)),
  );
  const lm = t([V, D]),
    xr = t([rows, D]);
  record(
    `lm_head chunk [${rows}x2048] x [${V}x2048]^T`,
    timeMs(be, 10, () => be.matmul(logits, xr, lm, { transB: true })),
    2 * rows * D * V,
  );
  const emb = t([N, D]);
  record(
    'embedding gather [4096x2048]',
    timeMs(be, 20, () => be.embedding(emb, lm, pos)),
  );
  for (const x2 of owned) be.free(x2);
  return out;
}

/** A Qwen1.5-1.8B-shaped model of `layers` layers with random NF4 projections (fast to build: no quantizer run). */
export function model18(layers: number, be: CudaBackend, logitsChunkElements?: number): Qwen2Model {
  const { D, H, I, V } = SHAPE_1_8B;
  const cfg = parseModelConfig(
    {
      model_type: 'qwen2',
      architectures: ['Qwen2ForCausalLM'],
      hidden_size: D,
      intermediate_size: I,
      num_hidden_layers: layers,
      num_attention_heads: H,
      num_key_value_heads: H,
      vocab_size: V,
      rms_norm_eps: 1e-6,
      rope_theta: 1e6,
      tie_word_embeddings: false,
    },
    'timing config',
  );
  const weights = uploadQwen2Weights(
    be,
    cfg,
    (name, shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return name.endsWith('norm.weight')
        ? filled(n, 1)
        : /_proj\.weight$/.test(name)
          ? new Float32Array(1)
          : filled(n);
    },
    { nf4: (b, _values, shape) => b.uploadNf4(randomNf4(shape)) },
  );
  return new Qwen2Model(cfg, be, weights, { logitsChunkElements });
}

function batch18(B: number, T: number): TrainBatch {
  const r = rng(5);
  const inputIds = Int32Array.from({ length: B * T }, () => 1 + Math.floor(r() * 150000));
  const labels = inputIds.map((id, i) => (i % T >= T * 0.4 ? id : -100));
  return { batchSize: B, seqLen: T, inputIds, labels };
}

export interface StepTiming {
  layers: number;
  msPerStep: number;
  peakGiB: number;
}

/** One optimizer step on one micro-batch of 8 x 512 tokens: forward, backward, clip, AdamW. */
export function trainStepTiming(be: CudaBackend, layers: number, log: Log, logitsChunkElements?: number): StepTiming {
  const model = model18(layers, be, logitsChunkElements);
  const lora = LoraAdapter.upload(
    be,
    model.config,
    initLora(
      model.config,
      { r: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], useRslora: false },
      1,
    ),
  );
  model.setLora(lora);
  const opt = new AdamW(be, lora.parameters(), { weightDecay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
  const b = batch18(8, 512);
  let seed = 0;
  const step = (): void => {
    lora.zeroGrad();
    const s = model.forwardTrain(b, { dropoutSeed: seed++ });
    model.backward(s);
    clipGradNorm(be, lora.parameters(), 1);
    opt.step(2e-4);
  };
  be.device.allocator.resetPeak();
  const ms = timeMs(be, 5, step, 3);
  const peakGiB = be.memoryStats().peakInUse / 2 ** 30;
  log(
    `  train step, ${layers} layers${logitsChunkElements ? `, logits chunks of ${logitsChunkElements} elements` : ''}, 8 x 512 tokens: ${ms.toFixed(1)} ms (${(((8 * 512) / ms) * 1000).toFixed(0)} tokens/s), peak ${peakGiB.toFixed(2)} GiB in use`,
  );
  opt.free();
  lora.free();
  model.free();
  return { layers, msPerStep: ms, peakGiB };
}

/** Prefill of 8 prompts of 256 tokens and 32 greedy decode steps over the KV cache. */
export function generationTiming(
  be: CudaBackend,
  layers: number,
  log: Log,
): { prefillMs: number; decodeTokensPerS: number } {
  const model = model18(layers, be);
  const B = 8,
    T = 256,
    steps = 32;
  const cache = model.createKvCache(B, T + steps);
  const prompt = batch18(B, T);
  be.synchronize();
  const t0 = performance.now();
  let logits = model.prefill(cache, prompt);
  be.download(logits);
  const t1 = performance.now();
  for (let s = 0; s < steps; s++) {
    be.free(logits);
    logits = model.decodeStep(
      cache,
      Int32Array.from({ length: B }, (_, i) => 100 + i + s),
    );
    be.download(logits);
  }
  const t2 = performance.now();
  be.free(logits);
  cache.free();
  model.free();
  const r = { prefillMs: t1 - t0, decodeTokensPerS: (B * steps) / ((t2 - t1) / 1000) };
  log(
    `  generation, ${layers} layers: prefill 8 x 256 in ${r.prefillMs.toFixed(1)} ms; decode ${r.decodeTokensPerS.toFixed(0)} tokens/s at batch 8`,
  );
  return r;
}
