/**
 * Where the time of a QLoRA training step goes on the CUDA backend, at Qwen1.5-1.8B's shape
 * (random NF4 projections, LoRA r=16 on q,k,v,o with dropout 0.05, every position trained):
 *
 * 1. the benchmark's step (bench/measure.ts measureTrain: forward, backward, device-side clip,
 *    AdamW, loss and norm read once) per batch shape: tokens/s and peak memory, with each
 *    attention implementation, without LoRA dropout, with all layers recomputed, and with other
 *    logits chunk sizes;
 * 2. GPU time by kind of backend call within one step: CUDA events recorded around every call
 *    (NF4 dequantization inside a product is timed on its own as well), and the host time to
 *    queue a step;
 * 3. a few products and kernels alone at the step's sizes (lm_head chunks, cross-entropy);
 * 4. (leave-one-out) the step time with one kind of call turned into a no-op.
 *
 *   node train-profile.mjs OUT_DIR [--layers 24 | --model DIR] [--cases 16x512,8x128] [--steps 10]
 *     [--sections throughput,leave-one-out,calls,kernels]
 *
 * --model profiles a checkpoint (NF4-quantized on load), such as the benchmark's
 * (/tmp/sqlora-bench-1.8b/model). The built-in model's weights repeat (its embedding and lm_head
 * every 32 rows) and its NF4 codes are uniform; its steps ran 5-6% faster than the benchmark's on
 * an H200 (2026-12-05), likely because such data draws less power at the GPU's power limit.
 *
 * Prints a report and writes it with the numbers as JSON to OUT_DIR.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureTrain, type LoraSettings, type TrainResult } from '../../bench/measure.js';
import type { MatmulOptions, Tensor } from '../../src/backend/backend.js';
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import type { CudaTensor } from '../../src/backend/cuda/cuda-tensor.js';
import { checkCu } from '../../src/backend/cuda/ffi.js';
import { initLora, LoraAdapter } from '../../src/lora/lora.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import { ADAMW_DEFAULTS, AdamW, clipGradNormOnDevice } from '../../src/train/optimizer.js';
import { model18, SHAPE_1_8B, timeMs } from './timing.js';
import { openLog } from './log.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    layers: { type: 'string' },
    model: { type: 'string' },
    cases: { type: 'string' },
    steps: { type: 'string' },
    sections: { type: 'string' },
  },
});
if (values.layers !== undefined && values.model !== undefined)
  throw new Error('--layers and --model exclude each other (a checkpoint has its own layers)');
const outDir = positionals[0] ?? 'train-profile-out';
const modelDir = values.model;
const cases = (values.cases ?? '16x512,8x128').split(',').map((c) => c.split('x').map(Number) as [number, number]);
const steps = Number(values.steps ?? 10);
const SECTIONS = ['throughput', 'leave-one-out', 'calls', 'kernels'];
const sections = new Set((values.sections ?? SECTIONS.join(',')).split(','));
for (const s of sections)
  if (!SECTIONS.includes(s))
    throw new Error(`--sections: unknown section '${s}' (expected a comma list of ${SECTIONS.join(', ')})`);
const log = openLog(outDir, 'train-profile.log');
const report: Record<string, unknown> = {};
const LORA: LoraSettings = { r: 16, alpha: 32, dropout: 0.05, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };

/** Every backend call bracketed by CUDA events on the stream, summed by kind after a synchronize. */
class CallTimer {
  private readonly events: unknown[] = [];
  private used = 0;
  private depth = 0;
  private readonly pending: { kind: string; start: unknown; end: unknown; flops: number }[] = [];
  active = false;

  constructor(private readonly be: CudaBackend) {
    const names = [
      'matmul',
      'matmulMany',
      'matmulSum',
      'matmulBatch',
      'addBias',
      'addRmsNorm',
      'add',
      'axpy',
      'scale',
      'sum',
      'sumSquares',
      'clipByNorm',
      'dropout',
      'loraDown',
      'loraDownGrads',
      'loraUpBackward',
      'embedding',
      'rmsNormForward',
      'rmsNormBackward',
      'ropeForward',
      'ropeBackward',
      'attentionForward',
      'attentionBackward',
      'swigluForward',
      'swigluBackward',
      'crossEntropy',
      'adamw',
      'copy',
      'fill',
      'alloc',
      'upload',
      'download',
    ] as const;
    const target = be as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const name of names) {
      const original = target[name].bind(be);
      target[name] = (...args: unknown[]) =>
        this.timed(
          name === 'matmul' ? this.matmulKind(args) : name,
          name === 'matmul' ? matmulFlops(args) : 0,
          false,
          () => original(...args),
        );
    }
    const dequantize = be.dequantizeNf4.bind(be);
    be.dequantizeNf4 = (dst: CudaTensor, w: CudaTensor) =>
      this.timed('  (within nf4 products) dequantize', 0, true, () => dequantize(dst, w));
  }

  private matmulKind(args: unknown[]): string {
    const [, a, b, opts = {}] = args as [Tensor, Tensor, Tensor, MatmulOptions];
    if (b.dtype === 'nf4') return opts.transB ? 'matmul nf4 base, forward' : 'matmul nf4 base, input gradient';
    if (b.shape[0] === SHAPE_1_8B.V) return opts.transB ? 'matmul lm_head, forward' : 'matmul lm_head, input gradient';
    const dims = [...a.shape, ...b.shape];
    if (Math.min(...dims) > 64) return 'matmul other';
    // LoRA products by their rank-sized operand: u B^T (forward), dy^T u (grad B), dy B, g^T x (grad A).
    if (opts.transA) return b.shape[1] <= 64 ? 'matmul LoRA grad B = dy^T u' : 'matmul LoRA grad A = g^T x';
    return opts.transB ? 'matmul LoRA forward u B^T' : 'matmul LoRA g = dy B';
  }

  private event(): unknown {
    if (this.used === this.events.length) {
      const e: unknown[] = [null];
      checkCu(this.be.device.api.cuEventCreate(e, 0), 'cuEventCreate');
      this.events.push(e[0]);
    }
    return this.events[this.used++];
  }

  private timed<T>(kind: string, flops: number, nested: boolean, fn: () => T): T {
    if (!this.active || (this.depth > 0 && !nested)) {
      this.depth++;
      try {
        return fn();
      } finally {
        this.depth--;
      }
    }
    const api = this.be.device.api,
      stream = this.be.device.stream;
    const start = this.event(),
      end = this.event();
    checkCu(api.cuEventRecord(start, stream), 'cuEventRecord');
    this.depth++;
    try {
      return fn();
    } finally {
      this.depth--;
      checkCu(api.cuEventRecord(end, stream), 'cuEventRecord');
      this.pending.push({ kind, start, end, flops });
    }
  }

  /** Milliseconds and calls by kind since the last collect (waits for the device). */
  collect(): Map<string, { ms: number; calls: number; flops: number }> {
    const api = this.be.device.api;
    const out = new Map<string, { ms: number; calls: number; flops: number }>();
    if (this.pending.length > 0)
      checkCu(api.cuEventSynchronize(this.pending[this.pending.length - 1].end), 'cuEventSynchronize');
    const ms = new Float32Array(1);
    for (const p of this.pending) {
      checkCu(api.cuEventElapsedTime(ms, p.start, p.end), 'cuEventElapsedTime');
      const e = out.get(p.kind) ?? { ms: 0, calls: 0, flops: 0 };
      e.ms += ms[0];
      e.calls++;
      e.flops += p.flops;
      out.set(p.kind, e);
    }
    this.pending.length = 0;
    this.used = 0;
    return out;
  }
}

function matmulFlops(args: unknown[]): number {
  const [out, a, , opts = {}] = args as [Tensor, Tensor, Tensor, MatmulOptions];
  const K = opts.transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
  return 2 * out.size * K;
}

const be = new CudaBackend();
const t0 = performance.now();
const model = modelDir
  ? Qwen2Model.load(modelDir, be, { quantize: 'nf4' })
  : model18(Number(values.layers ?? SHAPE_1_8B.layers), be);
const layers = model.config.numLayers;
log(
  `${be.name}: ${modelDir ? `${modelDir}, ${layers} layers` : `${layers} layers of Qwen1.5-1.8B's shape, random weights`}, NF4 base, LoRA r=${LORA.r} on ${LORA.targets.join(',')}, dropout ${LORA.dropout}`,
);
const timer = new CallTimer(be);
log(`model built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

function section(name: string, fn: () => void | Promise<void>): Promise<void> {
  log(`\n== ${name}`);
  return Promise.resolve()
    .then(fn)
    .catch((err: unknown) => log(`  FAILED: ${(err as Error).stack ?? String(err)}`));
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
function describe(r: TrainResult): string {
  return `${Math.round(r.tokens_per_s).toLocaleString('en-US')} tokens/s, ${r.step_ms.toFixed(1)} ms/step, peak ${gib(r.peak_bytes)}, loss ${r.loss_first.toFixed(3)} -> ${r.loss_last.toFixed(3)}`;
}

/** Kernels turned off at the start (SQLORA_CUDA_OFF, a comma list: flash, lora-down, ...): they failed their check. */
const off = process.env.SQLORA_CUDA_OFF ?? '';
const attention = off.split(',').includes('flash') ? 'gemm' : 'flash';
/** SQLORA_CUDA_OFF for a variant: the flash kernels on or off, the others as given. */
const offWith = (flash: boolean): string =>
  [...off.split(',').filter((k) => k && k !== 'flash'), ...(flash ? [] : ['flash'])].join(',');

async function throughput(): Promise<void> {
  const rows: Record<string, unknown>[] = [];
  const variants: {
    name: string;
    env?: string;
    opts?: { recomputeLayers?: number };
    chunk?: number;
    lora?: LoraSettings;
  }[] = [
    { name: `${attention} attention`, env: attention },
    { name: `${attention} attention, no LoRA dropout`, env: attention, lora: { ...LORA, dropout: 0 } },
    ...(attention === 'flash' ? [{ name: 'gemm attention', env: 'gemm' }] : []),
    { name: `${attention} attention, all layers recomputed`, env: attention, opts: { recomputeLayers: layers } },
    { name: `${attention} attention, logits chunks of 2^26 elements`, env: attention, chunk: 1 << 26 },
    { name: `${attention} attention, logits chunks of 2^28 elements`, env: attention, chunk: 1 << 28 },
  ];
  for (const [B, T] of cases) {
    for (const v of variants) {
      if (v.env) process.env.SQLORA_CUDA_OFF = offWith(v.env === 'flash');
      const m = v.chunk ? new Qwen2Model(model.config, be, model.weights, { logitsChunkElements: v.chunk }) : model;
      try {
        const r = await measureTrain(m, B, T, steps, 3, v.lora ?? LORA, 0, v.opts ?? {});
        log(`  ${B}x${T} ${v.name}: ${describe(r)}`);
        rows.push({ case: `${B}x${T}`, variant: v.name, ...r });
      } catch (err) {
        log(`  ${B}x${T} ${v.name}: FAILED ${(err as Error).message}`);
      }
    }
  }
  process.env.SQLORA_CUDA_OFF = off;
  report.throughput = rows;
}

/** One bench step by hand, so the calls can be timed (the same calls measureTrain makes). */
function profileStep(B: number, T: number): void {
  const lora = LoraAdapter.upload(
    be,
    model.config,
    initLora(
      model.config,
      { r: LORA.r, alpha: LORA.alpha, dropout: LORA.dropout, targetModules: LORA.targets, useRslora: false },
      1,
    ),
  );
  model.setLora(lora);
  const opt = new AdamW(be, lora.parameters(), { ...ADAMW_DEFAULTS, weightDecay: 0.01 }, lora.flat());
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % model.config.vocabSize);
  const step = (s: number): void => {
    const out = model.forwardTrain({ batchSize: B, seqLen: T, inputIds: ids, labels: ids }, { dropoutSeed: s });
    model.backward(out);
    const sq = clipGradNormOnDevice(be, [lora.flat().grad], 1);
    opt.step(2e-4);
    lora.zeroGrad();
    void out.loss;
    be.download(sq);
    be.free(sq);
  };
  for (let s = 0; s < 3; s++) step(s);
  // Host time to queue a step: the device still works on it when step() returns... except for the final reads.
  be.synchronize();
  let queued = 0,
    total = 0;
  for (let s = 0; s < 5; s++) {
    const h0 = performance.now();
    const out = model.forwardTrain({ batchSize: B, seqLen: T, inputIds: ids, labels: ids }, { dropoutSeed: s });
    model.backward(out);
    const sq = clipGradNormOnDevice(be, [lora.flat().grad], 1);
    opt.step(2e-4);
    lora.zeroGrad();
    const h1 = performance.now();
    void out.loss;
    be.download(sq);
    be.free(sq);
    queued += h1 - h0;
    total += performance.now() - h0;
  }
  timer.active = true;
  const w0 = performance.now();
  step(7);
  const kinds = timer.collect();
  const wall = performance.now() - w0;
  timer.active = false;
  const sum = [...kinds.entries()].filter(([k]) => !k.startsWith(' ')).reduce((s, [, v]) => s + v.ms, 0);
  log(
    `  ${B}x${T}: host queues a step in ${(queued / 5).toFixed(1)} ms of its ${(total / 5).toFixed(1)} ms; with events: ${wall.toFixed(1)} ms wall, ${sum.toFixed(1)} ms in timed calls`,
  );
  const rows = [...kinds.entries()].sort((a, b) => b[1].ms - a[1].ms);
  for (const [kind, v] of rows) {
    const tf = v.flops > 0 ? `  ${(v.flops / v.ms / 1e9).toFixed(0)} TFLOP/s` : '';
    log(
      `    ${kind.padEnd(44)} ${v.ms.toFixed(2).padStart(8)} ms ${((100 * v.ms) / sum).toFixed(1).padStart(5)}%  ${String(v.calls).padStart(5)} calls${tf}`,
    );
  }
  report[`profile ${B}x${T}`] = { queuedMs: queued / 5, stepMs: total / 5, kinds: Object.fromEntries(rows) };
  model.setLora(null);
  opt.free();
  lora.free();
}

function kernelTimes(): void {
  const { D, V } = SHAPE_1_8B;
  const time = (iters: number, fn: () => void): number => timeMs(be, iters, fn, 3);
  const out: Record<string, number> = {};
  for (const rows of [441, 883, 1766, 3532]) {
    const x = be.alloc([rows, D], 'bf16'),
      logits = be.empty([rows, V], 'bf16'),
      dx = be.empty([rows, D], 'bf16');
    const losses = be.alloc([rows]),
      targets = be.upload(
        Int32Array.from({ length: rows }, (_, i) => (i * 31) % V),
        [rows],
        'i32',
      );
    const fwd = time(5, () => be.matmul(logits, x, model.weights.lmHead, { transB: true }));
    const ce = time(5, () => be.crossEntropy(losses, logits, targets, logits, 1e-3));
    const bwd = time(5, () => be.matmul(dx, logits, model.weights.lmHead));
    const fl = 2 * rows * D * V;
    log(
      `  lm_head ${rows} rows: forward ${fwd.toFixed(3)} ms (${(fl / fwd / 1e9).toFixed(0)} TFLOP/s), input gradient ${bwd.toFixed(3)} ms (${(fl / bwd / 1e9).toFixed(0)} TFLOP/s), cross-entropy ${ce.toFixed(3)} ms (${((3 * rows * V * 2) / ce / 1e6).toFixed(0)} GB/s)`,
    );
    Object.assign(out, { [`lmHeadFwd${rows}`]: fwd, [`lmHeadBwd${rows}`]: bwd, [`crossEntropy${rows}`]: ce });
    for (const t of [x, logits, dx, losses, targets]) be.free(t);
  }
  // The LoRA kernels alone at a layer's shape: one member (o_proj) and the q/k/v group of three,
  // with the step's dropout and without (the masks' hashing).
  const N = 8192,
    r = LORA.r;
  const x = be.alloc([N, D], 'bf16'),
    dx = be.alloc([N, D], 'bf16');
  for (const p of [LORA.dropout, 0]) {
    for (const M of [1, 3]) {
      const as = Array.from({ length: M }, () => be.alloc([r, D], 'bf16')),
        gradAs = Array.from({ length: M }, () => be.alloc([r, D]));
      const us = Array.from({ length: M }, () => be.alloc([N, r], 'bf16')),
        seeds = Array.from({ length: M }, (_, m) => 11 + m);
      const down = time(10, () => be.loraDown(us, x, as, p, seeds));
      const gradA = time(10, () => be.loraDownGrads(gradAs, us, x, p, seeds, 2, null));
      const grads = time(10, () => be.loraDownGrads(gradAs, us, x, p, seeds, 2, { dx, as, accumulate: false }));
      const gb = time(10, () => be.matmul(gradAs[0], us[0], x, { transA: true, accumulate: true }));
      log(
        `  LoRA ${M} member(s) at ${N}x${D}, dropout ${p}: loraDown ${(down * 1e3).toFixed(1)} us, loraDownGrads ${(gradA * 1e3).toFixed(1)} us (weights only), ${(grads * 1e3).toFixed(1)} us (with dx) (x is ${((N * D * 2) / 2 ** 20).toFixed(0)} MiB; cuBLAS u^T x ${(gb * 1e3).toFixed(1)} us)`,
      );
      Object.assign(out, { [`loraDown${M}p${p}`]: down, [`loraGradA${M}p${p}`]: gradA, [`loraGrads${M}p${p}`]: grads });
      for (const t of [...as, ...gradAs, ...us]) be.free(t);
    }
  }
  be.free(x);
  be.free(dx);
  report.kernels = out;
}

/**
 * The step time with one kind of call turned into a no-op, against the full step (results are
 * wrong then; only the time is read). Free of event timing's per-call overhead, but not of the
 * data: a skipped kernel leaves other values for the products after it, and products draw power
 * (and so run at clocks) that depend on their operands' values. Kinds whose outputs only reach
 * elementwise kernels or feed products with realistic data read truest.
 */
async function leaveOneOut(): Promise<void> {
  const [B, T] = cases[0];
  const kinds = [
    'dequantizeNf4',
    'attentionForward',
    'attentionBackward',
    'crossEntropy',
    'swigluForward',
    'swigluBackward',
    'rmsNormForward',
    'rmsNormBackward',
    'addRmsNorm',
    'ropeForward',
    'ropeBackward',
    'loraDown',
    'loraDownGrads',
    'loraUpBackward',
    'matmulBatch',
  ] as const;
  const target = be as unknown as Record<string, (...args: unknown[]) => unknown>;
  const stepMs = async (): Promise<number> => (await measureTrain(model, B, T, 6, 2, LORA, 0)).step_ms;
  const full = [await stepMs()];
  const rows: Record<string, number> = {};
  for (const kind of kinds) {
    const original = target[kind];
    target[kind] = () => undefined;
    try {
      rows[kind] = await stepMs();
    } finally {
      target[kind] = original;
    }
    full.push(await stepMs());
    const ref = (full[full.length - 2] + full[full.length - 1]) / 2;
    log(
      `  ${B}x${T} without ${kind.padEnd(20)} ${rows[kind].toFixed(1).padStart(6)} ms/step: it costs ${(ref - rows[kind]).toFixed(2).padStart(6)} ms (full step ${ref.toFixed(1)} ms)`,
    );
  }
  report.leaveOneOut = { case: `${B}x${T}`, full, without: rows };
}

if (sections.has('throughput')) await section('training step throughput (bench step)', throughput);
if (sections.has('leave-one-out')) await section('step time without each kind of call', leaveOneOut);
if (sections.has('calls'))
  for (const [B, T] of cases) await section(`GPU time by call kind, one step at ${B}x${T}`, () => profileStep(B, T));
if (sections.has('kernels')) await section('lm_head, cross-entropy and LoRA kernels alone', kernelTimes);
writeFileSync(join(outDir, 'train-profile.json'), JSON.stringify(report, null, 1) + '\n');
model.free();
