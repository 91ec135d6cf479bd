/**
 * A frozen linear projection (weight [out, in], optional bias, dense or NF4) with an optional
 * LoRA update, forward and backward:
 *
 *   y = x W^T + b + scale * dropout(x) A^T B^T        A: [r, in], B: [out, r]
 *
 * The backward pass returns dx through both paths and accumulates only dA and dB (the base is
 * frozen). The forward keeps u = dropout(x) A^T ([N, r], small); the dropout mask is recomputed
 * from its seed instead of stored, and x itself is not kept here: the layer hands it back to
 * the backward pass (it may have recomputed it).
 */
import type { Backend, Tensor } from '../backend/backend.js';

export const ATTENTION_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const MLP_MODULES = ['gate_proj', 'up_proj', 'down_proj'] as const;
/** The seven projections of a Qwen2 decoder layer, with HF's module names. */
export const PROJECTIONS = [...ATTENTION_MODULES, ...MLP_MODULES] as const;
export type ProjectionName = (typeof PROJECTIONS)[number];

export interface Linear {
  /** [out, in], in the backend's compute dtype or nf4. */
  weight: Tensor;
  /** [out] or null. */
  bias: Tensor | null;
}

/** The LoRA factors of one projection, as the model reads them. */
export interface LoraWeights {
  /** lora_A: [r, in], f32. */
  a: Tensor;
  /** lora_B: [out, r], f32. */
  b: Tensor;
  /** Gradient accumulators (same shapes), written by backward passes. */
  gradA: Tensor;
  gradB: Tensor;
  /**
   * Copies of a and b in the backend's 16-bit compute dtype, current at the start of every pass
   * (see LoraProvider.prepare), used by the matrix products instead of a and b: the f32 factors
   * would otherwise be converted at every product.
   */
  aCompute?: Tensor;
  bCompute?: Tensor;
  /** alpha / r, or alpha / sqrt(r) for rsLoRA. */
  scale: number;
  /** Dropout probability on the LoRA input, applied in training forwards only. */
  dropout: number;
}

/** What a training forward keeps for the backward pass of one projection. */
export interface LinearSaved {
  /** dropout(x) A^T [N, r] (owned, in the compute dtype), or null without LoRA. */
  u: Tensor | null;
  /** Dropout seed, or null when no dropout was applied. */
  seed: number | null;
}

/**
 * out[N, out] = linear(x[N, in]). With `train`, LoRA dropout is applied (seeded) and the
 * returned record feeds linearBackward; otherwise the record is null. `withBias` false leaves
 * the bias to the caller (who adds it in a later kernel, see Backend.ropeForward).
 */
export function linearForward(
  be: Backend, out: Tensor, x: Tensor, lin: Linear, lora: LoraWeights | undefined,
  train: { seed: number } | null, withBias = true,
): LinearSaved | null {
  be.matmul(out, x, lin.weight, { transB: true });
  return linearBiasLora(be, out, x, lin, lora, train, withBias);
}

/**
 * The rest of linearForward once out holds the base product x W^T: the bias, then the LoRA
 * update (for callers that compute several base products at once, see Backend.matmulMany).
 */
export function linearBiasLora(
  be: Backend, out: Tensor, x: Tensor, lin: Linear, lora: LoraWeights | undefined,
  train: { seed: number } | null, withBias = true,
): LinearSaved | null {
  if (lin.bias && withBias) be.addBias(out, lin.bias);
  if (!lora) return train ? { u: null, seed: null } : null;
  const N = x.shape[0];
  const r = lora.a.shape[0];
  const dropSeed = train && lora.dropout > 0 ? train.seed : null;
  const u = be.empty([N, r], be.computeDType);
  be.loraDown(u, x, lora.aCompute ?? lora.a, dropSeed === null ? 0 : lora.dropout, dropSeed ?? 0);
  be.matmul(out, u, lora.bCompute ?? lora.b, { transB: true, alpha: lora.scale, accumulate: true });
  if (!train) {
    be.free(u);
    return null;
  }
  return { u, seed: dropSeed };
}

/**
 * Backward of linearForward given dy[N, out]: dx[N, in] is written (or added to with
 * `accumulate`), LoRA gradients are added to gradA/gradB. `x` is the forward's input (needed
 * only with LoRA). Frees the saved u.
 */
export function linearBackward(
  be: Backend, dx: Tensor, dy: Tensor, lin: Linear, lora: LoraWeights | undefined, saved: LinearSaved,
  accumulate: boolean, x: Tensor | null,
): void {
  be.matmul(dx, dy, lin.weight, { accumulate });
  if (!lora || !saved.u) return;
  if (!x) throw new Error('linearBackward: the LoRA path needs the forward input');
  const { u, seed } = saved;
  const N = x.shape[0];
  const r = lora.a.shape[0];
  // dB += scale * dy^T u
  be.matmul(lora.gradB, dy, u, { transA: true, alpha: lora.scale, accumulate: true });
  be.free(u);
  // g = dy B: the gradient reaching u (before the scale).
  const g = be.empty([N, r], be.computeDType);
  be.matmul(g, dy, lora.bCompute ?? lora.b);
  // dA += scale * g^T dropout(x)
  be.loraDownWeightGrad(lora.gradA, g, x, seed === null ? 0 : lora.dropout, seed ?? 0, lora.scale);
  // The LoRA path's input gradient passes back through the same dropout mask.
  if (seed === null) be.matmul(dx, g, lora.aCompute ?? lora.a, { alpha: lora.scale, accumulate: true });
  else be.loraDownBackward(dx, g, lora.aCompute ?? lora.a, lora.dropout, seed, lora.scale);
  be.free(g);
}
