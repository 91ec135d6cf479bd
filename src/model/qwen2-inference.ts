/**
 * Inference over a KV cache: prompt prefill and decoding steps. The arithmetic is a decoder
 * layer's (see qwen2-layer.ts), each output computed in the same order, so results equal
 * layerForward's, but built for speed where one step is a single token per sequence and kernel
 * launches set the pace (on an H100 a 1.8B decoding step at batch 50 is ~3.5 ms of GPU work in
 * ~260 launches):
 *
 * - activations live in InferenceBuffers, allocated once per generation, not per layer and step;
 * - projections of one input are one batched product with their biases (matmulMany: q/k/v,
 *   gate/up), RoPE and the cache write are one kernel (ropeAppendKv), and each residual add is
 *   fused with the RMSNorm that follows it (addRmsNorm):
 *
 *     h = norm1(x) ; q,k,v = proj(h) ; cache <- rope(k), v ; a = attention(rope(q), cache)
 *     x += o_proj(a), h = norm2(x) ; x += down(silu(gate(h)) * up(h)), h = next norm(x)
 *
 * - a decoding step takes its token ids as a device tensor (the previous step's argmax) and its
 *   mask and positions from the cache's device copies: nothing is uploaded.
 */
import type { Backend, Tensor } from '../backend/backend.js';
import type { Qwen2Config } from './config.js';
import type { Qwen2Model } from './qwen2.js';
import { checkBatch, maskOrOnes, positionsFromMask, type TokenBatch } from './qwen2-batch.js';
import type { KvCache } from './qwen2-kv-cache.js';
import { linearGroupForward, type ProjectionName } from './qwen2-linear.js';

/** Activation buffers for passes of up to `rows` tokens and logits of up to `sequences` rows. */
export class InferenceBuffers {
  private readonly x: Tensor;
  private readonly h: Tensor;
  private readonly o: Tensor;
  private readonly rstd: Tensor;
  private readonly q: Tensor;
  private readonly k: Tensor;
  private readonly v: Tensor;
  private readonly attn: Tensor;
  private readonly lse: Tensor;
  private readonly gate: Tensor;
  private readonly up: Tensor;
  private readonly act: Tensor;
  private readonly last: Tensor;
  private readonly logitsRows: Tensor;

  constructor(
    private readonly be: Backend,
    cfg: Qwen2Config,
    readonly rows: number,
    readonly sequences: number,
  ) {
    const dt = be.computeDType,
      D = cfg.hiddenSize,
      qw = cfg.numHeads * cfg.headDim,
      kvw = cfg.numKvHeads * cfg.headDim,
      I = cfg.intermediateSize;
    const a = (width: number): Tensor => be.empty([rows, width], dt);
    this.x = a(D);
    this.h = a(D);
    this.o = a(D);
    this.q = a(qw);
    this.k = a(kvw);
    this.v = a(kvw);
    this.attn = a(qw);
    this.gate = a(I);
    this.up = a(I);
    this.act = a(I);
    this.rstd = be.empty([rows]);
    this.lse = be.empty([rows * cfg.numHeads]);
    this.last = be.empty([sequences, D], dt);
    this.logitsRows = be.empty([sequences, cfg.vocabSize], dt);
  }

  /** Views of the first n rows of every buffer. */
  views(n: number): ActivationViews {
    if (n > this.rows) throw new Error(`inference buffers hold ${this.rows} rows, not ${n}`);
    const r = (t: Tensor): Tensor => this.be.rows(t, 0, n);
    return {
      x: r(this.x),
      h: r(this.h),
      o: r(this.o),
      rstd: this.be.rows(this.rstd, 0, n),
      q: r(this.q),
      k: r(this.k),
      v: r(this.v),
      attn: r(this.attn),
      lse: this.be.rows(this.lse, 0, n * (this.lse.size / this.rows)),
      gate: r(this.gate),
      up: r(this.up),
      act: r(this.act),
    };
  }

  /** Logits [B, V] and the hidden rows [B, D] they are computed from. */
  output(B: number): { last: Tensor; logits: Tensor } {
    if (B > this.sequences) throw new Error(`inference buffers hold logits of ${this.sequences} rows, not ${B}`);
    return { last: this.be.rows(this.last, 0, B), logits: this.be.rows(this.logitsRows, 0, B) };
  }

  free(): void {
    for (const t of [
      this.x,
      this.h,
      this.o,
      this.rstd,
      this.q,
      this.k,
      this.v,
      this.attn,
      this.lse,
      this.gate,
      this.up,
      this.act,
      this.last,
      this.logitsRows,
    ]) {
      this.be.free(t);
    }
  }
}

interface ActivationViews {
  x: Tensor;
  h: Tensor;
  o: Tensor;
  rstd: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  attn: Tensor;
  lse: Tensor;
  gate: Tensor;
  up: Tensor;
  act: Tensor;
}

/** The key and value slabs [B, capacity, Hkv, hd] of each layer that a pass reads and writes. */
export interface KvSlabs {
  readonly k: readonly Tensor[];
  readonly v: readonly Tensor[];
}

/** What every layer of one pass reads: B sequences of T new tokens going to cache slots [offset, offset + T). */
export interface PassInput {
  B: number;
  T: number;
  /** i32 [B*T]. */
  ids: Tensor;
  /** i32 [B*T]. */
  positions: Tensor;
  /** i32 [B, capacity]. */
  keyMask: Tensor;
  offset: number;
}

/**
 * Runs the new tokens through every layer, storing their keys and values in the cache, and
 * leaves the final-normed hidden rows [B*T, D] in the returned view.
 */
export function runLayers(model: Qwen2Model, cache: KvSlabs, ws: InferenceBuffers, p: PassInput): Tensor {
  const be = model.backend,
    cfg = model.config,
    w = model.weights;
  const { B, T } = p;
  const N = B * T,
    H = cfg.numHeads,
    Hkv = cfg.numKvHeads,
    hd = cfg.headDim,
    eps = cfg.rmsNormEps;
  const a = ws.views(N);
  const q4 = be.reshape(a.q, [B, T, H, hd]);
  const k4 = be.reshape(a.k, [B, T, Hkv, hd]),
    v4 = be.reshape(a.v, [B, T, Hkv, hd]);
  const attn4 = be.reshape(a.attn, [B, T, H, hd]),
    lse = be.reshape(a.lse, [B, T, H]);
  const loras = model.inferenceLora();
  be.embedding(a.x, w.embedTokens, p.ids);
  be.rmsNormForward(a.h, a.rstd, a.x, w.layers[0].inputLayernorm, eps);
  for (let i = 0; i < cfg.numLayers; i++) {
    const lw = w.layers[i],
      lora = loras[i];
    // Projections of one input: their products in batched calls, with their biases (qwen2-linear.ts).
    const projMany = (names: ProjectionName[], outs: Tensor[], input: Tensor): void => {
      linearGroupForward(
        be,
        input,
        names.map((n, j) => ({ out: outs[j], lin: lw.proj[n], lora: lora[n] })),
        false,
      );
    };
    const proj = (name: ProjectionName, out: Tensor, input: Tensor): void => projMany([name], [out], input);
    projMany(['q_proj', 'k_proj', 'v_proj'], [a.q, a.k, a.v], a.h);
    be.ropeAppendKv(cache.k[i], cache.v[i], q4, k4, v4, p.positions, p.offset, cfg.ropeTheta);
    be.attentionForward(attn4, lse, q4, cache.k[i], cache.v[i], p.keyMask, { kvLen: p.offset + T });
    proj('o_proj', a.o, a.attn);
    be.addRmsNorm(a.x, a.h, a.rstd, a.x, a.o, lw.postAttentionLayernorm, eps);
    projMany(['gate_proj', 'up_proj'], [a.gate, a.up], a.h);
    be.swigluForward(a.act, a.gate, a.up);
    proj('down_proj', a.o, a.act);
    const nextNorm = i + 1 < cfg.numLayers ? w.layers[i + 1].inputLayernorm : w.norm;
    be.addRmsNorm(a.x, a.h, a.rstd, a.x, a.o, nextNorm, eps);
  }
  return a.h;
}

/**
 * Prompt prefill: the batch's tokens go into the cache; returns the logits [B, V] of each row's
 * last token (a view into `ws`, valid until its next use). Prompts should be left-padded so
 * the last slot is real for every row.
 */
export function prefillLogits(model: Qwen2Model, cache: KvCache, ws: InferenceBuffers, batch: TokenBatch): Tensor {
  const be = model.backend;
  const { batchSize: B, seqLen: T } = batch;
  if (B !== cache.batchSize) throw new Error(`prefill: batch of ${B} rows for a cache of ${cache.batchSize}`);
  checkBatch(batch, model.config.vocabSize);
  const mask = maskOrOnes(batch);
  const offset = cache.length;
  const positions = be.upload(batch.positionIds ?? positionsFromMask(mask, B, T, cache.seen), [B * T], 'i32');
  const keyMask = cache.append(mask, T);
  const ids = be.upload(batch.inputIds, [B * T], 'i32');
  const lastIndex = be.upload(
    Int32Array.from({ length: B }, (_, b) => b * T + T - 1),
    [B],
    'i32',
  );
  const hidden = runLayers(model, cache, ws, { B, T, ids, positions, keyMask, offset });
  const { last, logits } = ws.output(B);
  be.gatherRows(last, hidden, lastIndex);
  be.matmul(logits, last, model.weights.lmHead, { transB: true });
  for (const t of [positions, ids, lastIndex]) be.free(t);
  return logits;
}

/**
 * One decoding step: token ids i32 [B] on the device (all real tokens), returns the logits
 * [B, V] of the new tokens (a view into `ws`, valid until its next use).
 */
export function decodeLogits(model: Qwen2Model, cache: KvCache, ws: InferenceBuffers, ids: Tensor): Tensor {
  const B = cache.batchSize;
  if (ids.size !== B) throw new Error(`decode: ${ids.size} token ids for a cache of ${B} rows`);
  const offset = cache.length;
  const { keyMask, positions } = cache.appendStep();
  const hidden = runLayers(model, cache, ws, { B, T: 1, ids, positions, keyMask, offset });
  const { logits } = ws.output(B);
  model.backend.matmul(logits, hidden, model.weights.lmHead, { transB: true });
  return logits;
}
