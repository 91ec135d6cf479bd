/**
 * The one interface between the model and the hardware: device memory and the kernels a Qwen2
 * decoder needs for inference and LoRA training. Model, LoRA and training code only ever see
 * opaque `Tensor` handles and call these methods, so the CPU backend (the readable reference)
 * and the CUDA backend are interchangeable and checked against each other.
 *
 * Conventions shared by every implementation:
 * - Tensors are dense, row-major, and own no strides: a "view" is a contiguous range of rows
 *   (`rows`) or the same memory under another shape (`reshape`). Kernels that take several
 *   leading dimensions (batch, time) treat them as flattened rows.
 * - Outputs come first in argument lists. Unless a kernel says "may alias", an output must not
 *   overlap an input.
 * - Float kernels accept any float dtype (f32, bf16, f16) for tensors marked "float" and compute
 *   in f32 (accumulate in f32); token ids, positions and masks are i32. The CPU backend holds
 *   f32 and i32 only (and nf4 weights); `computeDType` says which float dtype the model should
 *   use for activations and frozen weights on this backend. LoRA weights, their gradients and
 *   optimizer state are always f32.
 * - Kernels are enqueued in call order; `download` returns after all earlier work finished.
 */

/** Element types of device tensors. `nf4` tensors are frozen weights usable only as matmul `b`. */
export type TensorDType = 'f32' | 'bf16' | 'f16' | 'i32' | 'nf4';

/** A float dtype a backend can compute in. */
export type FloatDType = 'f32' | 'bf16' | 'f16';

/** Float values downloaded to the host. */
export type HostFloats = Float32Array | Float64Array;

/** A copy to the host started by Backend.downloadAsync. */
export interface PendingDownload {
  /** Waits for this copy only (work queued after it may still run) and returns download()'s values. */
  wait(): HostFloats;
}

/** An opaque handle to device memory (or a view of it). */
export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: TensorDType;
  /** Number of elements (product of the shape). */
  readonly size: number;
}

/**
 * A weight quantized to NF4 blocks (bitsandbytes layout): `codes` packs two 4-bit indices into
 * `code` (the 16-entry NF4 code book) per byte, the first element in the high nibble; `absmax`
 * holds one f32 scale per `blockSize` consecutive elements (already de-double-quantized).
 * `shape` is the logical [out, in] shape of the weight; the element order is row-major, so
 * element e dequantizes to code[nibble e] * absmax[floor(e / blockSize)].
 */
export interface Nf4Weight {
  shape: [number, number];
  blockSize: number;
  code: Float32Array;
  codes: Uint8Array;
  absmax: Float32Array;
}

export interface MatmulOptions {
  /** Use a's transpose: a is stored [K, M] (batched: [batch, K, M]). */
  transA?: boolean;
  /** Use b's transpose: b is stored [N, K] (the layout of a Linear weight [out, in]). */
  transB?: boolean;
  /** Multiplies the product (default 1). */
  alpha?: number;
  /** Add to out instead of overwriting it. */
  accumulate?: boolean;
}

export interface AttentionOptions {
  /**
   * Number of valid key/value rows per sequence: keys at slots >= kvLen are ignored. Query t
   * (of T) sits at slot kvLen - T + t and attends causally to slots <= its own. Defaults to the
   * key tensor's time dimension (full forward: T == S).
   */
  kvLen?: number;
  /** Softmax scale (default 1/sqrt(headDim)). */
  scale?: number;
}

export interface AttentionBackwardOptions extends AttentionOptions {
  /**
   * The rotary embedding that made q and k (ropeForward with these positions, one per query row:
   * [B * T]; keys share them, so S = T): dq and dk then come out as the gradients of its inputs,
   * as ropeBackward would turn them, which a backend may do in the attention's own kernels.
   */
  rope?: { positions: Tensor; theta: number };
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step number, for bias correction. */
  step: number;
}

export interface Backend {
  readonly name: string;
  /** Float dtype for activations and frozen base weights on this backend. */
  readonly computeDType: FloatDType;

  // ---- memory ----
  /** A new zero-filled tensor. */
  alloc(shape: readonly number[], dtype?: TensorDType): Tensor;
  /**
   * A new tensor whose values are unspecified, for outputs a kernel overwrites entirely: skips
   * alloc's zero fill (a pass over the memory and a launch on a GPU).
   */
  empty(shape: readonly number[], dtype?: TensorDType): Tensor;
  /** A new tensor holding host data; float data is converted to a float `dtype` (default f32). */
  upload(data: HostFloats | Int32Array, shape: readonly number[], dtype?: TensorDType): Tensor;
  /** A new nf4 tensor of logical shape `w.shape`. */
  uploadNf4(w: Nf4Weight): Tensor;
  /**
   * A new nf4 tensor from an [out, in] weight's row-major values, in blocks of NF4_BLOCKSIZE:
   * the codes and each block's absmax are found by the backend (on its device) with the bits
   * tensor/nf4-blocks.ts defines, and `scales` turns the absmax values into the stored scales
   * (QLoRA's double quantization: quant/nf4.ts's doubleQuantizedScales).
   */
  quantizeNf4(values: Float32Array, shape: [number, number], scales: (absmax: Float32Array) => Float32Array): Tensor;
  /**
   * The tensor's values (i32 tensors converted), after all queued work is done: a Float32Array,
   * or a Float64Array from a CPU backend running in f64 (used by gradient checks).
   */
  download(t: Tensor): HostFloats;
  /** Releases the memory of a tensor (not of a view); using it afterwards is an error. */
  free(t: Tensor): void;
  /** Rows [start, start + count) along dimension 0, sharing memory. */
  rows(t: Tensor, start: number, count: number): Tensor;
  /** The same memory under another shape with the same number of elements. */
  reshape(t: Tensor, shape: readonly number[]): Tensor;
  /** dst = src, element for element (same size; converts float dtypes). */
  copy(dst: Tensor, src: Tensor): void;
  fill(t: Tensor, value: number): void;

  // ---- linear algebra ----
  /**
   * out[M, N] = alpha * op(a)[M, K] @ op(b)[K, N] (+ out if accumulate). 3-D a and out with a
   * 2-D b multiply every batch by the same b; 3-D a, b and out are a batched matmul. b may be
   * nf4 (2-D, then dequantized block by block inside the product).
   */
  matmul(out: Tensor, a: Tensor, b: Tensor, opts?: MatmulOptions): void;
  /**
   * outs[i] = matmul(as[i], bs[i], opts) for independent 2-D operands of one shape each (the
   * LoRA products of q, k and v): what matmul gives for each, in one launch where the backend
   * can (on CUDA one batched product).
   */
  matmulBatch(outs: readonly Tensor[], as: readonly Tensor[], bs: readonly Tensor[], opts?: MatmulOptions): void;
  /**
   * outs[i] = a @ bs[i]^T (+ outs[i] if accumulate) for weights sharing one input (a decoder
   * layer's q/k/v or gate/up projections; dense or nf4), then biases[i] added to every row where
   * given: what matmul(outs[i], a, bs[i], { transB: true, accumulate }) and addBias(outs[i],
   * biases[i]) give for each, in as few launches as the backend can manage (on CUDA one batched
   * product per group of equally shaped weights, one bias kernel).
   */
  matmulMany(
    outs: readonly Tensor[],
    a: Tensor,
    bs: readonly Tensor[],
    biases?: readonly (Tensor | null)[],
    accumulate?: boolean,
  ): void;
  /**
   * out = sum_i as[i] @ bs[i] (+ out if accumulate): the input gradient of projections sharing
   * an input (q/k/v, gate/up; weights dense or nf4). What matmul(out, as[i], bs[i]) accumulating
   * in turn gives, with the nf4 weights dequantized together where the backend can.
   */
  matmulSum(out: Tensor, as: readonly Tensor[], bs: readonly Tensor[], accumulate?: boolean): void;
  /** x[rows, D] += bias[D] for every row (in place). */
  addBias(x: Tensor, bias: Tensor): void;

  // ---- elementwise and reductions (float) ----
  /** out = a + b (same size; out may alias a or b). */
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /** y += alpha * x. */
  axpy(y: Tensor, x: Tensor, alpha: number): void;
  /** x *= s (in place). */
  scale(x: Tensor, s: number): void;
  /** out[0] = sum of x (+ out[0] if accumulate); out is a 1-element f32 tensor. */
  sum(out: Tensor, x: Tensor, accumulate?: boolean): void;
  /** out[0] = sum of x^2 (+ out[0] if accumulate), for gradient-norm clipping. */
  sumSquares(out: Tensor, x: Tensor, accumulate?: boolean): void;
  /**
   * Gradient clipping without a host round trip (torch's clip_grad_norm_): with norm =
   * sqrt(sumSquares[0]) (a 1-element f32 tensor, as sumSquares writes it), x *= maxNorm /
   * (norm + 1e-6) when that factor is below 1; x is left as it is when the norm is not finite.
   */
  clipByNorm(x: Tensor, sumSquares: Tensor, maxNorm: number): void;
  /**
   * Inverted dropout: out = x * keep / (1 - p), where keep for element i is a pure function of
   * (seed, i), so calling it again with the same seed on the upstream gradient is the backward
   * pass. out may alias x. p = 0 copies.
   */
  dropout(out: Tensor, x: Tensor, p: number, seed: number): void;
  /**
   * LoRA down-projections of one input (a group: q, k and v read the same normed x), each with
   * its own dropout mask: us[m] [N, r] = dropout(x, p, seeds[m]) as[m]^T for x [N, in] and
   * as[m] [r, in] (dropout() then matmul(.., { transB: true }) per member, without storing the
   * dropped-out x, and reading x once for the group). p = 0: no dropout (seeds unused).
   */
  loraDown(us: readonly Tensor[], x: Tensor, as: readonly Tensor[], p: number, seeds: readonly number[]): void;
  /**
   * The backward pass of a loraDown group, from the gradients gs[m] [N, r] reaching its
   * products: the weight gradients gradAs[m] [r, in] (f32) += alpha * gs[m]^T dropout(x, p,
   * seeds[m]) for x [N, in], and with `input` the input gradient input.dx [N, in] = (input.dx
   * if input.accumulate, else 0) + alpha * sum over m of dropout(gs[m] input.as[m], p, seeds[m])
   * (each member's mask applied to its own product). One call, so that each mask can be
   * computed once for both.
   */
  loraDownGrads(
    gradAs: readonly Tensor[],
    gs: readonly Tensor[],
    x: Tensor,
    p: number,
    seeds: readonly number[],
    alpha: number,
    input: LoraInputGradient | null,
  ): void;
  /**
   * The B side of a LoRA group's backward pass, for members with their own output gradients
   * dys[m] [N, out_m], saved products us[m] [N, r] and factors bs[m] [out_m, r]:
   * gradBs[m] [out_m, r] (f32) += alpha * dys[m]^T us[m], and gs[m] [N, r] = dys[m] bs[m]
   * (written; the gradient reaching us[m]).
   */
  loraUpBackward(
    gradBs: readonly Tensor[],
    gs: readonly Tensor[],
    dys: readonly Tensor[],
    us: readonly Tensor[],
    bs: readonly Tensor[],
    alpha: number,
  ): void;

  // ---- model layers ----
  /** out[N, D] = table[ids[n], :]; ids is i32 [N]. */
  embedding(out: Tensor, table: Tensor, ids: Tensor): void;
  /**
   * RMSNorm over the last dimension (as HF: x * rsqrt(mean(x^2) + eps) * weight, in f32).
   * x, out: [N, D]; weight [D]; rstd [N] f32 receives the reciprocal RMS for the backward pass.
   */
  rmsNormForward(out: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, eps: number): void;
  /** dx (+= if accumulate) from dout, for a frozen weight. */
  rmsNormBackward(dx: Tensor, dout: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, accumulate?: boolean): void;
  /**
   * Rotary embedding in HF's rotate_half convention (first half of each head pairs with the
   * second half). x, out: [N, H, headDim] (out may alias x); positions i32 [N], one per token,
   * so padded batches rotate each token by its own position. inv_freq = theta^(-2i/headDim).
   * With `bias` ([H * headDim]), rotates x + bias: a projection's bias add and RoPE in one pass.
   */
  ropeForward(out: Tensor, x: Tensor, positions: Tensor, theta: number, bias?: Tensor): void;
  /** The transpose of ropeForward (rotation by -angle); dx may alias dout. */
  ropeBackward(dx: Tensor, dout: Tensor, positions: Tensor, theta: number): void;
  /**
   * Causal multi-head attention with grouped-query heads (H query heads share H / Hkv key/value
   * heads, query head h uses kv head floor(h / (H / Hkv))).
   * q, out: [B, T, H, hd]; k, v: [B, S, Hkv, hd]; keyMask i32 [B, S] (0 = padding, never
   * attended); lse f32 [B, T, H] receives each row's log-sum-exp of the scaled scores for the
   * backward pass. A query with no visible key gets a zero output and lse = -Infinity.
   */
  attentionForward(
    out: Tensor,
    lse: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    keyMask: Tensor,
    opts?: AttentionOptions,
  ): void;
  /** Gradients of attentionForward; dq [B,T,H,hd], dk and dv [B,S,Hkv,hd] are overwritten. */
  attentionBackward(
    dq: Tensor,
    dk: Tensor,
    dv: Tensor,
    dout: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    keyMask: Tensor,
    opts?: AttentionBackwardOptions,
  ): void;
  /** out = silu(gate) * up (the Qwen2 MLP activation). */
  swigluForward(out: Tensor, gate: Tensor, up: Tensor): void;
  /** dgate, dup from dout (dgate/dup may alias gate/up). */
  swigluBackward(dgate: Tensor, dup: Tensor, dout: Tensor, gate: Tensor, up: Tensor): void;
  /**
   * Softmax cross-entropy per row: logits [N, V], targets i32 [N]; a negative target (HF's
   * ignore index -100) is ignored. losses f32 [N] receives -log p[target] (0 for ignored rows).
   * With `dlogits` (may alias logits), also writes gradScale * (softmax - onehot) (0 rows for
   * ignored), so a caller can run the vocabulary projection in row chunks and never hold all
   * B*T*V logits.
   */
  crossEntropy(losses: Tensor, logits: Tensor, targets: Tensor, dlogits?: Tensor, gradScale?: number): void;

  // ---- optimizer ----
  /** One torch.optim.AdamW step on f32 tensors (decoupled weight decay, bias correction). */
  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, opts: AdamWOptions): void;

  // ---- inference (decoding over a KV cache) ----
  /**
   * Starts copying `t` to the host and returns at once: work queued afterwards keeps running
   * while the host waits for these values, so a decoding loop can queue step n + 1 before it
   * reads step n's tokens.
   */
  downloadAsync(t: Tensor): PendingDownload;
  /** x += value, for an i32 tensor (rotary positions advancing by one per decoding step). */
  addI32(x: Tensor, value: number): void;
  /**
   * out[i, ...] = src[index[i], ...]: whole rows along dimension 0, same dtype (i32 or float),
   * index i32 [N] with values in [0, rows of src). out must not overlap src.
   */
  gatherRows(out: Tensor, src: Tensor, index: Tensor): void;
  /**
   * out[index[i], ...] = src[i, ...]: gatherRows' inverse, whole rows along dimension 0, same
   * dtype; index i32 [N] holds distinct rows of out, whose other rows keep their values. out
   * must not overlap src.
   */
  scatterRows(out: Tensor, src: Tensor, index: Tensor): void;
  /**
   * out i32 [N] = the index of the largest value of each row of x [N, V], the first one on ties
   * (as torch.argmax): greedy decoding without bringing the logits to the host.
   */
  argmaxRows(out: Tensor, x: Tensor): void;
  /**
   * sum = a + b, then RMSNorm of that sum exactly as rmsNormForward(out, rstd, sum, ...) would
   * compute it from the stored sum (the residual add and the next norm of a decoder layer in
   * one pass). sum may alias a or b; out must not alias the inputs.
   */
  addRmsNorm(sum: Tensor, out: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor, eps: number): void;
  /**
   * The rotary embedding of new tokens, with their keys and values stored in a KV cache:
   * q [B, T, H, hd] is rotated in place (as ropeForward); k and v [B, T, Hkv, hd] go to slots
   * [offset, offset + T) of kCache and vCache [B, S, Hkv, hd], k rotated (k itself is left
   * as it is). positions i32 [B*T].
   */
  ropeAppendKv(
    kCache: Tensor,
    vCache: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    positions: Tensor,
    offset: number,
    theta: number,
  ): void;
}

/** Number of elements of a shape. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Every tensor the same size as the first (elementwise operations). */
export function checkSameSize(what: string, ...ts: Tensor[]): void {
  const n = ts[0].size;
  for (const t of ts) {
    if (t.size !== n)
      throw new Error(`${what}: sizes differ (${ts.map((x) => `[${x.shape.join(', ')}]`).join(' vs ')})`);
  }
}

/** upload's values fill its shape; returns the element count. */
export function checkUploadSize(data: ArrayLike<number>, shape: readonly number[]): number {
  const n = shapeSize(shape);
  if (data.length !== n) throw new Error(`upload: ${data.length} values for shape [${shape.join(', ')}]`);
  return n;
}

/** reshape keeps the element count. */
export function checkReshape(t: Tensor, shape: readonly number[]): void {
  if (shapeSize(shape) !== t.size)
    throw new Error(
      `reshape: [${t.shape.join(', ')}] has ${t.size} elements, [${shape.join(', ')}] needs ${shapeSize(shape)}`,
    );
}

/** rows(t, start, count) views whole rows of a float or i32 tensor. */
export function checkRows<T extends Tensor>(
  t: T,
  start: number,
  count: number,
): asserts t is T & { readonly dtype: Exclude<TensorDType, 'nf4'> } {
  if (t.dtype === 'nf4') throw new TypeError('rows: nf4 tensors cannot be sliced');
  if (start < 0 || count < 0 || start + count > t.shape[0]) {
    throw new RangeError(`rows: [${start}, ${start + count}) outside dimension 0 of [${t.shape.join(', ')}]`);
  }
}

/** addBias' bias (of `D` elements) repeats along x. */
export function checkBias(x: Tensor, D: number): void {
  if (x.size % D !== 0) throw new Error(`addBias: bias of ${D} does not divide [${x.shape.join(', ')}]`);
}

/** dropout's probability is in [0, 1). */
export function checkDropoutP(p: number): void {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout: p must be in [0, 1), got ${p}`);
}

/** matmulBatch's outputs and operands pair up. */
export function checkMatmulBatch(outs: readonly Tensor[], as: readonly Tensor[], bs: readonly Tensor[]): void {
  if (outs.length !== as.length || as.length !== bs.length)
    throw new Error(`matmulBatch: ${outs.length} outputs for ${as.length} and ${bs.length} operands`);
}

/** matmulMany has an output for each weight. */
export function checkMatmulMany(outs: readonly Tensor[], bs: readonly Tensor[]): void {
  if (outs.length !== bs.length) throw new Error(`matmulMany: ${outs.length} outputs for ${bs.length} weights`);
}

/** matmulSum has a weight for each input. */
export function checkMatmulSum(as: readonly Tensor[], bs: readonly Tensor[]): void {
  if (as.length !== bs.length) throw new Error(`matmulSum: ${as.length} inputs for ${bs.length} weights`);
}

/** quantizeNf4's values fill its shape. */
export function checkNf4Values(values: Float32Array, shape: readonly [number, number]): void {
  if (values.length !== shape[0] * shape[1])
    throw new Error(`quantizeNf4: ${values.length} values for shape [${shape.join(', ')}]`);
}

/** An NF4 weight's payload covers its shape (uploadNf4). */
export function checkNf4Payload(w: Nf4Weight): void {
  const n = w.shape[0] * w.shape[1];
  if (w.codes.length * 2 < n || w.absmax.length * w.blockSize < n || w.code.length !== 16) {
    throw new Error(`uploadNf4: payload too small for shape [${w.shape.join(', ')}] with blocks of ${w.blockSize}`);
  }
}

/** Throws a descriptive error unless the tensor has exactly this shape. */
export function expectShape(what: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${what}: expected shape [${shape.join(', ')}], got [${t.shape.join(', ')}]`);
  }
}

/** Checks the shapes of Backend.ropeAppendKv's arguments and returns the sizes. */
export function ropeAppendKvDims(
  kCache: Tensor,
  vCache: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  positions: Tensor,
  offset: number,
): { B: number; T: number; S: number; H: number; Hkv: number; hd: number } {
  if (q.shape.length !== 4 || k.shape.length !== 4 || kCache.shape.length !== 4)
    throw new Error('ropeAppendKv: q, k and the caches must be [B, T, heads, hd]');
  const [B, T, H, hd] = q.shape;
  const [, S, Hkv] = kCache.shape;
  expectShape('ropeAppendKv k', k, [B, T, Hkv, hd]);
  expectShape('ropeAppendKv v', v, [B, T, Hkv, hd]);
  expectShape('ropeAppendKv kCache', kCache, [B, S, Hkv, hd]);
  expectShape('ropeAppendKv vCache', vCache, [B, S, Hkv, hd]);
  expectShape('ropeAppendKv positions', positions, [B * T]);
  if (!(offset >= 0 && offset + T <= S))
    throw new RangeError(`ropeAppendKv: slots [${offset}, ${offset + T}) outside a cache of ${S}`);
  return { B, T, S, H, Hkv, hd };
}

/** murmur3's 32-bit finalizer: the hash behind dropout masks, shared by every backend. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The number in [0, 1) that decides dropout for element `index` under `seed` (both 32-bit):
 * every backend implements exactly this, so a dropout mask is reproducible across backends and
 * recomputable in the backward pass instead of stored. One murmur3 finalizer serves a pair of
 * elements (index 2j and 2j + 1: its low and high 16 bits), so the number is a multiple of
 * 2^-16 and p takes effect in steps of 2^-16 (0.05 keeps 62,259 of 65,536). The element is
 * kept when the number is >= p.
 */
export function dropoutUniform(seed: number, index: number): number {
  const h = fmix32((Math.imul(Math.floor(index / 2), 0x9e3779b1) + fmix32(seed >>> 0)) >>> 0);
  return (index % 2 === 1 ? h >>> 16 : h & 0xffff) / 65536;
}

/** The input-gradient part of Backend.loraDownGrads: dx [N, in] and the members' factors as[m] [r, in]. */
export interface LoraInputGradient {
  dx: Tensor;
  as: readonly Tensor[];
  accumulate: boolean;
}

/**
 * Sizes of a LoRA group call (loraDown and its gradients): `rows` [N, r] per member and the
 * members' a (or gradA) [r, D], one seed each; x (or dx) holds N rows of D.
 */
export function loraGroupDims(
  what: string,
  rows: readonly Tensor[],
  as: readonly Tensor[],
  seeds: readonly number[],
  x: Tensor,
): { N: number; r: number; D: number } {
  if (rows.length === 0 || rows.length !== as.length || seeds.length !== rows.length) {
    throw new Error(
      `${what}: a group needs as many factors and seeds as members, got ${rows.length}, ${as.length} and ${seeds.length}`,
    );
  }
  const [N, r] = rows[0].shape,
    D = x.shape[x.shape.length - 1];
  if (x.size !== N * D) throw new Error(`${what}: x [${x.shape.join(', ')}] is not ${N} rows of ${D}`);
  rows.forEach((t, m) => expectShape(`${what} member ${m}`, t, [N, r]));
  as.forEach((t, m) => expectShape(`${what} factor ${m}`, t, [r, D]));
  return { N, r, D };
}

/** Checks loraDownGrads' operands; returns the rows, the rank and the input width. */
export function loraDownGradsDims(
  gradAs: readonly Tensor[],
  gs: readonly Tensor[],
  x: Tensor,
  seeds: readonly number[],
  input: LoraInputGradient | null,
): { N: number; r: number; D: number } {
  const dims = loraGroupDims('loraDownGrads', gs, gradAs, seeds, x);
  if (input) {
    expectShape('loraDownGrads dx (as x)', input.dx, [dims.N, dims.D]);
    loraGroupDims('loraDownGrads (input gradient)', gs, input.as, seeds, input.dx);
  }
  return dims;
}

/**
 * Checks gatherRows' (scatter false) or scatterRows' operands: the same float or i32 dtype, and
 * index.size rows of the indexed tensor's width in the listed one (out for gather, src for
 * scatter). Returns the indexed tensor's rows and the elements a row.
 */
export function copyRowsDims(
  what: string,
  out: Tensor,
  src: Tensor,
  index: Tensor,
  scatter: boolean,
): { rows: number; width: number } {
  if (out.dtype !== src.dtype || out.dtype === 'nf4')
    throw new TypeError(`${what}: ${src.dtype} -> ${out.dtype} is not supported`);
  const [listed, indexed] = scatter ? [src, out] : [out, src];
  const N = index.size,
    rows = indexed.shape[0];
  const width = rows > 0 ? indexed.size / rows : 0;
  if (listed.shape[0] !== N || listed.size !== N * width) {
    throw new Error(`${what}: ${scatter ? 'src' : 'out'} [${listed.shape.join(', ')}] is not ${N} rows of ${width}`);
  }
  return { rows, width };
}

/** Checks loraUpBackward's operands; returns the rows, the rank and each member's outputs. */
export function loraUpDims(
  gradBs: readonly Tensor[],
  gs: readonly Tensor[],
  dys: readonly Tensor[],
  us: readonly Tensor[],
  bs: readonly Tensor[],
): { N: number; r: number; outs: number[] } {
  const M = gs.length;
  if (M === 0 || [gradBs, dys, us, bs].some((l) => l.length !== M)) {
    throw new Error(
      `loraUpBackward: every member needs gradB, g, dy, u and b, got ${gradBs.length}, ${M}, ${dys.length}, ${us.length} and ${bs.length}`,
    );
  }
  const [N, r] = gs[0].shape;
  const outs = dys.map((dy, m) => {
    if (dy.shape.length !== 2 || dy.shape[0] !== N)
      throw new Error(`loraUpBackward: dy ${m} [${dy.shape.join(', ')}] is not ${N} rows`);
    return dy.shape[1];
  });
  outs.forEach((out, m) => {
    expectShape(`loraUpBackward g ${m}`, gs[m], [N, r]);
    expectShape(`loraUpBackward u ${m}`, us[m], [N, r]);
    expectShape(`loraUpBackward b ${m}`, bs[m], [out, r]);
    expectShape(`loraUpBackward gradB ${m}`, gradBs[m], [out, r]);
  });
  return { N, r, outs };
}

/** RoPE inverse frequencies as HF computes them in f32: theta^(-2i/headDim), i < headDim/2. */
export function ropeInvFreq(theta: number, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / headDim));
  return inv;
}

/** Sizes of one attention call, from q [B, T, H, hd] and k, v [B, S, Hkv, hd]. */
export interface AttentionDims {
  B: number;
  T: number;
  S: number;
  H: number;
  Hkv: number;
  hd: number;
  kvLen: number;
  scale: number;
}

/** attentionDims, plus the forward's outputs: out like q, lse [B, T, H]. */
export function attentionForwardDims(
  out: Tensor,
  lse: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  keyMask: Tensor,
  opts: AttentionOptions,
): AttentionDims {
  const d = attentionDims(q, k, v, keyMask, opts);
  expectShape('attention out', out, q.shape);
  expectShape('attention lse', lse, [d.B, d.T, d.H]);
  return d;
}

/** attentionForwardDims, plus the backward's gradients: dq and dout like q, dk and dv like k. */
export function attentionBackwardDims(
  dq: Tensor,
  dk: Tensor,
  dv: Tensor,
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  keyMask: Tensor,
  opts: AttentionBackwardOptions,
): AttentionDims {
  const d = attentionForwardDims(out, lse, q, k, v, keyMask, opts);
  expectShape('attention dq', dq, q.shape);
  expectShape('attention dk', dk, k.shape);
  expectShape('attention dv', dv, v.shape);
  expectShape('attention dout', dout, q.shape);
  if (opts.rope) {
    if (d.S !== d.T)
      throw new Error(
        `attentionBackward: rope needs keys of the same rows as the queries (S = T), got S ${d.S}, T ${d.T}`,
      );
    expectShape('attentionBackward rope positions', opts.rope.positions, [d.B * d.T]);
  }
  return d;
}

/** Sizes of a matmul: out [batch?, M, N] = op(a) [batch?, M, K] x op(b) [batch?, K, N]. */
export interface MatmulDims {
  batched: boolean;
  batch: number;
  M: number;
  K: number;
  N: number;
}

/** Checks a matmul call's shapes (what every backend accepts) and returns its sizes. */
export function matmulDims(out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions): MatmulDims {
  const { transA = false, transB = false } = opts;
  const batched = b.shape.length === 3;
  if (batched && (a.shape.length !== 3 || out.shape.length !== 3))
    throw new Error('matmul: a 3-D b needs 3-D a and out');
  const batch = a.shape.length === 3 ? a.shape[0] : 1;
  const a2 = a.shape.slice(-2),
    b2 = b.shape.slice(-2);
  const [M, K] = transA ? [a2[1], a2[0]] : a2;
  const [Kb, N] = transB ? [b2[1], b2[0]] : b2;
  if (K !== Kb)
    throw new Error(
      `matmul: inner dimensions differ (a [${a.shape.join(', ')}]${transA ? 'ᵀ' : ''}, b [${b.shape.join(', ')}]${transB ? 'ᵀ' : ''})`,
    );
  expectShape('matmul out', out, a.shape.length === 3 ? [batch, M, N] : [M, N]);
  if (batched && b.shape[0] !== batch) throw new Error('matmul: batch sizes of a and b differ');
  if (b.dtype === 'nf4' && batched) throw new Error('matmul: an nf4 b must be 2-D');
  return { batched, batch, M, K, N };
}

/** Checks an attention call's shapes (what every backend accepts) and returns its sizes. */
function attentionDims(q: Tensor, k: Tensor, v: Tensor, keyMask: Tensor, opts: AttentionOptions): AttentionDims {
  if (q.shape.length !== 4 || k.shape.length !== 4)
    throw new Error('attention: q and k must be [B, T, H, hd] and [B, S, Hkv, hd]');
  const [B, T, H, hd] = q.shape;
  const [Bk, S, Hkv, hdk] = k.shape;
  if (Bk !== B || hdk !== hd || H % Hkv !== 0)
    throw new Error(`attention: q [${q.shape.join(', ')}] and k [${k.shape.join(', ')}] do not match`);
  expectShape('attention v', v, k.shape);
  expectShape('attention keyMask', keyMask, [B, S]);
  const kvLen = opts.kvLen ?? S;
  if (kvLen < T || kvLen > S) throw new Error(`attention: kvLen ${kvLen} must be within [T=${T}, S=${S}]`);
  return { B, T, S, H, Hkv, hd, kvLen, scale: opts.scale ?? 1 / Math.sqrt(hd) };
}
