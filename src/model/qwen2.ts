/**
 * The Qwen2 causal LM (HF's Qwen2ForCausalLM) on a Backend: full forward to logits, a training
 * forward/backward that yields LoRA gradients only (base frozen, gradients of activations flow
 * through every layer), a chunked cross-entropy that never holds all B*T*V logits, and
 * incremental decoding over a KV cache.
 *
 * Typical use:
 *   const model = Qwen2Model.load(dir, new CpuBackend());
 *   model.setLora(adapter);                              // optional, see src/lora/lora.ts
 *   const step = model.forwardTrain(batch, { dropoutSeed: 1 });   // step.loss
 *   model.backward(step);                                // adds into adapter grads
 */
import type { Backend, Tensor } from '../backend/backend.js';
import { numel } from '../tensor/tensor.js';
import { UserError } from '../util/errors.js';
import { loadModelConfig, type Qwen2Config } from './config.js';
import { openCheckpoint } from './checkpoint.js';
import {
  checkBatch,
  maskOrOnes,
  positionsFromMask,
  shiftLabels,
  type TokenBatch,
  type TrainBatch,
} from './qwen2-batch.js';
import { decodeLogits, InferenceBuffers, prefillLogits } from './qwen2-inference.js';
import { KvCache } from './qwen2-kv-cache.js';
import {
  layerActivationBytes,
  layerBackward,
  layerForward,
  type LayerContext,
  type LayerLora,
  type LayerSaved,
  type Normed,
} from './qwen2-layer.js';
import { freeQwen2Weights, nf4Quantizer, uploadQwen2Weights, type Qwen2Weights } from './qwen2-weights.js';

/** Where a model's LoRA factors come from (implemented by LoraAdapter). */
export interface LoraProvider {
  /** The factors of layer `i`'s adapted projections. */
  layer(i: number): LayerLora;
  /** Called before every pass: brings derived copies of the factors (LoraWeights.aCompute) up to date. */
  prepare?(): void;
}

export interface TrainOptions {
  /** Seeds LoRA dropout for this micro-batch (vary it per step). Default 0. */
  dropoutSeed?: number;
  /**
   * Divide the summed token losses (and gradients) by this instead of the batch's own count of
   * target tokens: pass the count over all micro-batches of an accumulated step to get the mean
   * over the whole step, as HF's Trainer does with num_items_in_batch.
   */
  lossNormalizer?: number;
  /**
   * Recompute the activations of the first n layers in the backward pass instead of keeping
   * them (activation checkpointing: about a third more layer work for those layers, their
   * memory down to the layer input). Default 0.
   */
  recomputeLayers?: number;
  /**
   * Bytes the kept activations may take: recomputes as many more layers as needed to stay
   * within it (see recomputeLayers). Default: no limit.
   */
  activationBudget?: number;
}

/** The result of forwardTrain; pass it to backward() once. */
export interface TrainStep {
  /**
   * Summed token loss / normalizer. Reading it waits for the device (the first read only):
   * read it after queuing the backward pass and optimizer step, not between them.
   */
  readonly loss: number;
  /** Target tokens in this batch (labels after the shift, not -100). */
  tokens: number;
  /** @internal activations kept for backward */
  readonly state: TrainState | null;
}

interface TrainState {
  ctx: LayerContext;
  saved: LayerSaved[];
  last: Tensor;
  rstdF: Tensor;
  dxf: Tensor;
  tensors: Tensor[];
}

export interface LoadOptions {
  /** Quantize the seven layer projections to NF4 (QLoRA); other weights stay dense. */
  quantize?: 'nf4' | null;
  /** Elements of logits computed at once by the chunked loss (default 2^24; 2^27 for 16-bit compute, where the lm_head products run near peak). */
  logitsChunkElements?: number;
}

/** Unread losses a model keeps before reading them all (each holds a device scalar until read). */
const MAX_UNREAD_LOSSES = 64;

export class Qwen2Model {
  private lora: LoraProvider | null = null;
  private readonly chunkElements: number;
  private readonly unreadLosses = new Set<TrainStep>();

  constructor(
    readonly config: Qwen2Config,
    readonly backend: Backend,
    readonly weights: Qwen2Weights,
    opts: LoadOptions = {},
  ) {
    if (config.useSlidingWindow) {
      throw new UserError(
        'config.json sets use_sliding_window: sliding-window attention is not implemented (no published Qwen2 config enables it)',
      );
    }
    this.chunkElements = opts.logitsChunkElements ?? (backend.computeDType === 'f32' ? 1 << 24 : 1 << 27);
  }

  /** Loads config.json and safetensors weights from a checkpoint folder. */
  static load(dir: string, backend: Backend, opts: LoadOptions = {}): Qwen2Model {
    const config = loadModelConfig(dir);
    const ckpt = openCheckpoint(dir);
    try {
      ckpt.validate(config);
      const upload = opts.quantize === 'nf4' ? { nf4: nf4Quantizer } : {};
      // One buffer for every tensor (the first, the embedding, is the largest): uploads copy.
      let buffer = new Float32Array(0);
      const read = (name: string, shape: readonly number[]): Float32Array => {
        const n = numel(shape);
        if (buffer.length < n) buffer = new Float32Array(n);
        return ckpt.readF32(name, shape, buffer);
      };
      const weights = uploadQwen2Weights(backend, config, read, upload);
      return new Qwen2Model(config, backend, weights, opts);
    } finally {
      ckpt.close();
    }
  }

  /** Attaches (or with null, detaches) LoRA factors applied by every later pass. */
  setLora(lora: LoraProvider | null): void {
    this.lora = lora;
  }

  /** Logits [B, T, V] for every position (the caller frees the tensor). */
  forward(batch: TokenBatch): Tensor {
    const be = this.backend;
    const { ctx, owned } = this.context(batch, null);
    const { x, normed } = this.layersForward(ctx, this.embed(batch.inputIds), 0, null);
    const logits = be.alloc([batch.batchSize, batch.seqLen, this.config.vocabSize], be.computeDType);
    be.matmul(
      be.reshape(logits, [batch.batchSize * batch.seqLen, this.config.vocabSize]),
      normed.n,
      this.weights.lmHead,
      { transB: true },
    );
    for (const t of [x, normed.n, normed.rstd, ...owned]) be.free(t);
    return logits;
  }

  /** Mean token loss of a labelled batch without keeping anything for a backward pass. */
  evalLoss(batch: TrainBatch, opts: Pick<TrainOptions, 'lossNormalizer'> = {}): { loss: number; tokens: number } {
    const step = this.runTrain(batch, opts, false);
    return { loss: step.loss, tokens: step.tokens };
  }

  /** Training forward: loss (with LoRA dropout) and the state backward() needs. */
  forwardTrain(batch: TrainBatch, opts: TrainOptions = {}): TrainStep {
    if (!this.lora) throw new Error('forwardTrain: attach a LoRA adapter first (only LoRA weights are trained)');
    return this.runTrain(batch, opts, true);
  }

  /** Adds the gradients of the step's loss to the LoRA gradient tensors and frees the step. */
  backward(step: TrainStep): void {
    const s = step.state;
    if (!s) throw new Error('backward: this step was already used or has no gradients');
    (step as { state: TrainState | null }).state = null;
    const be = this.backend;
    let dx = be.empty(s.last.shape, be.computeDType);
    be.rmsNormBackward(dx, s.dxf, s.last, this.weights.norm, s.rstdF);
    be.free(s.last);
    for (let i = this.config.numLayers - 1; i >= 0; i--) {
      const saved = s.saved[i];
      // The embedding is frozen: the first layer's input gradient would go nowhere.
      dx = layerBackward(be, this.config, i, this.weights.layers[i], this.layerLora(i), s.ctx, saved, dx, i > 0);
      be.free(saved.x);
    }
    be.free(dx);
    for (const t of s.tensors) be.free(t);
  }

  /** An empty KV cache for `batchSize` sequences of up to `capacity` tokens. */
  createKvCache(batchSize: number, capacity: number): KvCache {
    return new KvCache(this.backend, this.config, batchSize, capacity);
  }

  /**
   * Runs new tokens through the model, appending their keys/values to the cache, and returns the
   * logits [B, V] of each row's last new token (the caller frees them). Prompts should be
   * left-padded so the last slot is real for every row. generate() runs the same passes
   * (qwen2-inference.ts) in buffers it keeps for the whole generation.
   */
  prefill(cache: KvCache, batch: TokenBatch): Tensor {
    return this.detachedPass(batch.batchSize * batch.seqLen, batch.batchSize, (ws) =>
      prefillLogits(this, cache, ws, batch),
    );
  }

  /** One decoding step: token i32 per row (all real), returns logits [B, V] (the caller frees them). */
  decodeStep(cache: KvCache, tokens: Int32Array): Tensor {
    const ids = this.backend.upload(tokens, [tokens.length], 'i32');
    try {
      return this.detachedPass(tokens.length, tokens.length, (ws) => decodeLogits(this, cache, ws, ids));
    } finally {
      this.backend.free(ids);
    }
  }

  /** Each layer's LoRA factors for an inference pass about to run (see qwen2-inference.ts). */
  inferenceLora(): LayerLora[] {
    this.lora?.prepare?.();
    return Array.from({ length: this.config.numLayers }, (_, i) => this.layerLora(i));
  }

  /** Frees the weights (the model is unusable afterwards). */
  free(): void {
    freeQwen2Weights(this.backend, this.weights);
  }

  private layerLora(i: number): LayerLora {
    return this.lora ? this.lora.layer(i) : {};
  }

  /** Runs an inference pass in buffers of its own and returns a copy of its logits. */
  private detachedPass(rows: number, sequences: number, pass: (ws: InferenceBuffers) => Tensor): Tensor {
    const be = this.backend;
    const ws = new InferenceBuffers(be, this.config, rows, sequences);
    try {
      const view = pass(ws);
      const logits = be.empty(view.shape, view.dtype);
      be.copy(logits, view);
      return logits;
    } finally {
      ws.free();
    }
  }

  private embed(ids: Int32Array): Tensor {
    const be = this.backend;
    const idsT = be.upload(ids, [ids.length], 'i32');
    const x = be.empty([ids.length, this.config.hiddenSize], be.computeDType);
    be.embedding(x, this.weights.embedTokens, idsT);
    be.free(idsT);
    return x;
  }

  /**
   * Every layer on the embedded x: returns the last hidden state and its final norm (each
   * layer's closing residual add also computes the next norm). With `saved`, the training
   * forward's records are pushed there (layers below `recompute` keep only their input);
   * without, each layer's input is freed.
   */
  private layersForward(
    ctx: LayerContext,
    x: Tensor,
    recompute: number,
    saved: LayerSaved[] | null,
  ): { x: Tensor; normed: Normed } {
    const be = this.backend;
    const L = this.config.numLayers;
    let normed: Normed | null = null;
    for (let i = 0; i < L; i++) {
      const nextNorm = i + 1 < L ? this.weights.layers[i + 1].inputLayernorm : this.weights.norm;
      const r = layerForward(be, this.config, i, this.weights.layers[i], this.layerLora(i), ctx, x, {
        recompute: i < recompute,
        normed,
        nextNorm,
      });
      if (saved && r.saved) saved.push(r.saved);
      else be.free(x);
      x = r.out;
      normed = r.normed;
    }
    if (!normed) throw new Error('layersForward: the model has no layers');
    return { x, normed };
  }

  private context(batch: TokenBatch, train: { seed: number } | null): { ctx: LayerContext; owned: Tensor[] } {
    checkBatch(batch, this.config.vocabSize);
    this.lora?.prepare?.();
    const be = this.backend;
    const { batchSize: B, seqLen: T } = batch;
    const mask = maskOrOnes(batch);
    const positions = be.upload(batch.positionIds ?? positionsFromMask(mask, B, T), [B * T], 'i32');
    const keyMask = be.upload(mask, [B, T], 'i32');
    return { ctx: { B, T, positions, keyMask, train }, owned: [positions, keyMask] };
  }

  private runTrain(batch: TrainBatch, opts: TrainOptions, withGrad: boolean): TrainStep {
    const be = this.backend;
    const cfg = this.config;
    const { batchSize: B, seqLen: T } = batch;
    const N = B * T;
    const { targets, count } = shiftLabels(batch.labels, B, T);
    const normalizer = opts.lossNormalizer ?? count;
    const gradScale = normalizer > 0 ? 1 / normalizer : 0;
    const { ctx, owned } = this.context(batch, withGrad ? { seed: opts.dropoutSeed ?? 0 } : null);
    if (this.unreadLosses.size >= MAX_UNREAD_LOSSES) for (const old of this.unreadLosses) void old.loss;
    const recompute = withGrad ? this.recomputedLayers(N, opts) : 0;

    const saved: LayerSaved[] = [];
    const { x, normed } = this.layersForward(ctx, this.embed(batch.inputIds), recompute, saved);
    const { n: xf, rstd: rstdF } = normed;
    const dxf = withGrad ? be.alloc([N, cfg.hiddenSize], be.computeDType) : null;
    const total = be.empty([1]);
    this.chunkedLoss(total, xf, targets, dxf, gradScale);
    be.free(xf);
    const state = withGrad && dxf ? { ctx, saved, last: x, rstdF, dxf, tensors: [rstdF, dxf, ...owned] } : null;
    if (!state) {
      be.free(x);
      be.free(rstdF);
      for (const t of owned) be.free(t);
    }
    // The loss stays on the device until someone reads it, so queuing the backward pass never waits for it.
    let loss: number | null = null;
    const unread = this.unreadLosses;
    const step: TrainStep = {
      tokens: count,
      state,
      get loss(): number {
        if (loss === null) {
          unread.delete(step);
          const sum = be.download(total)[0];
          be.free(total);
          loss = normalizer > 0 ? sum / normalizer : 0;
        }
        return loss;
      },
    };
    unread.add(step);
    return step;
  }

  /** How many leading layers a training pass of N tokens recomputes (see TrainOptions). */
  private recomputedLayers(N: number, opts: TrainOptions): number {
    const L = this.config.numLayers;
    let n = Math.min(L, Math.max(0, Math.floor(opts.recomputeLayers ?? 0)));
    if (opts.activationBudget !== undefined) {
      const per = Array.from({ length: L }, (_, i) =>
        layerActivationBytes(this.backend, this.config, this.layerLora(i), N),
      );
      let kept = per.slice(n).reduce((a, b) => a + b, 0);
      while (n < L && kept > opts.activationBudget) kept -= per[n++];
    }
    return n;
  }

  /**
   * The summed loss of the rows with a target (into total) and, for training, the gradient of
   * those hidden rows in dxf (zero elsewhere), over the vocabulary a block of rows at a time:
   * logits, per-row losses, dxf = dlogits @ lm_head. Only rows with a target get logits: lm_head
   * and the vocabulary-wide cross-entropy cost as much for an ignored row (a prompt token under
   * a completion-only loss, padding) as for any other. A block of consecutive rows is used in
   * place; scattered ones are gathered, and their gradient rows scattered back.
   */
  private chunkedLoss(total: Tensor, xf: Tensor, targets: Int32Array, dxf: Tensor | null, gradScale: number): void {
    const be = this.backend;
    const V = this.config.vocabSize,
      D = this.config.hiddenSize;
    const labeled = Int32Array.from(Array.from(targets.keys()).filter((i) => targets[i] >= 0));
    const L = labeled.length;
    if (L === 0) {
      be.fill(total, 0);
      return;
    }
    const targetsT = be.upload(
      Int32Array.from(labeled, (i) => targets[i]),
      [L],
      'i32',
    );
    const losses = be.empty([L]);
    const rows = Math.max(1, Math.floor(this.chunkElements / V));
    for (let c0 = 0; c0 < L; c0 += rows) {
      const n = Math.min(rows, L - c0),
        first = labeled[c0];
      // Consecutive rows are used in place; others get an index for the gather and the scatter.
      const index = labeled[c0 + n - 1] - first === n - 1 ? null : be.upload(labeled.subarray(c0, c0 + n), [n], 'i32');
      const x = index ? be.empty([n, D], xf.dtype) : be.rows(xf, first, n);
      if (index) be.gatherRows(x, xf, index);
      const logits = be.empty([n, V], be.computeDType);
      be.matmul(logits, x, this.weights.lmHead, { transB: true });
      if (index) be.free(x);
      be.crossEntropy(be.rows(losses, c0, n), logits, be.rows(targetsT, c0, n), dxf ? logits : undefined, gradScale);
      if (dxf) {
        const dx = index ? be.empty([n, D], dxf.dtype) : be.rows(dxf, first, n);
        be.matmul(dx, logits, this.weights.lmHead);
        if (index) {
          be.scatterRows(dxf, dx, index);
          be.free(dx);
        }
      }
      be.free(logits);
      if (index) be.free(index);
    }
    be.sum(total, losses);
    for (const t of [targetsT, losses]) be.free(t);
  }
}
