/**
 * A frozen linear projection (weight [out, in], optional bias, dense or NF4) with an optional
 * LoRA update, forward and backward:
 *
 *   y = x W^T + b + scale * dropout(x) A^T B^T        A: [r, in], B: [out, r]
 *
 * The backward pass returns dx through both paths and accumulates only dA and dB (the base is
 * frozen). The forward keeps u = dropout(x) A^T ([N, r], small); the dropout mask is recomputed
 * from its seed instead of stored, and x itself is not kept here: the layer hands it back to
 * the backward pass (it may have recomputed it). Projections reading one input run as a group,
 * so that the LoRA kernels read x once for all of them.
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

/** One projection of a group reading the same input (q, k and v; gate and up). */
export interface GroupMember {
  /** [N, out], written; null: only the LoRA input product u is wanted (a recomputing backward pass). */
  out: Tensor | null;
  lin: Linear;
  lora?: LoraWeights;
  /** The dropout seed of a training forward (ignored outside training). */
  seed?: number;
  /** false leaves the bias to the caller (who adds it in a later kernel, see Backend.ropeForward). */
  withBias?: boolean;
}

/**
 * Members whose LoRA calls can share one pass over x: equal rank, dropout and scale, in order.
 * Without LoRA a member is in no set.
 */
function loraSets<T extends { lora?: LoraWeights }>(members: readonly T[]): T[][] {
  const sets = new Map<string, T[]>();
  for (const m of members) {
    if (!m.lora) continue;
    const key = `${m.lora.a.shape[0]}/${m.lora.dropout}/${m.lora.scale}`;
    const set = sets.get(key);
    if (set) set.push(m);
    else sets.set(key, [m]);
  }
  return [...sets.values()];
}

/**
 * out = linear(x) for every member, x [N, in] read by one loraDown call per set of alike
 * adapters. Each LoRA update s u B^T is written first, then the base products are added onto
 * them in batched calls (Backend.matmulMany), with the biases. With `train`, dropout is applied
 * with each member's seed and the returned records (one per member, in order) feed
 * linearGroupBackward; otherwise they are null.
 */
export function linearGroupForward(
  be: Backend,
  x: Tensor,
  members: readonly GroupMember[],
  train: boolean,
): (LinearSaved | null)[] {
  const N = x.shape[0];
  const saved = new Map<GroupMember, LinearSaved>();
  for (const set of loraSets(members)) {
    const loras = set.map((m) => m.lora as LoraWeights);
    const p = train ? loras[0].dropout : 0;
    const us = set.map(() => be.empty([N, loras[0].a.shape[0]], be.computeDType));
    be.loraDown(
      us,
      x,
      loras.map((l) => l.aCompute ?? l.a),
      p,
      set.map((m) => m.seed ?? 0),
    );
    set.forEach((m, i) => saved.set(m, { u: us[i], seed: p > 0 ? (m.seed ?? 0) : null }));
    const up = set.flatMap((m, i) => (m.out ? [{ out: m.out, u: us[i], b: loras[i].bCompute ?? loras[i].b }] : []));
    be.matmulBatch(
      up.map((e) => e.out),
      up.map((e) => e.u),
      up.map((e) => e.b),
      { transB: true, alpha: loras[0].scale },
    );
  }
  // Onto the LoRA updates, or written where there are none.
  for (const accumulate of [true, false]) {
    const part = members.filter((m) => m.out && saved.has(m) === accumulate);
    if (part.length === 0) continue;
    const biases = part.map((m) => (m.withBias === false ? null : m.lin.bias));
    be.matmulMany(
      part.map((m) => m.out as Tensor),
      x,
      part.map((m) => m.lin.weight),
      biases,
      accumulate,
    );
  }
  return members.map((m) => {
    const s = saved.get(m);
    if (train) return s ?? { u: null, seed: null };
    if (s?.u) be.free(s.u);
    return null;
  });
}

/** One projection of a group in the backward pass: dy [N, out] and what its forward kept. */
export interface GroupGradient {
  dy: Tensor;
  lin: Linear;
  lora?: LoraWeights;
  saved: LinearSaved;
}

/**
 * Backward of linearGroupForward: dx [N, in] is written with the sum over the members of both
 * paths, LoRA gradients are added to gradA and gradB. `x` is the forward's input (needed only
 * with LoRA). The LoRA input gradient is written first and the base products added onto it.
 * A null dx (nothing upstream is trained) skips the input gradient: only the LoRA gradients are
 * computed. Frees the saved u's.
 */
export function linearGroupBackward(
  be: Backend,
  dx: Tensor | null,
  members: readonly GroupGradient[],
  x: Tensor | null,
): void {
  const N = members[0].dy.shape[0];
  let acc = false;
  for (const set of loraSets(members.filter((m) => m.saved.u))) {
    if (!x) throw new Error('linearGroupBackward: the LoRA path needs the forward input');
    const loras = set.map((m) => m.lora as LoraWeights),
      us = set.map((m) => m.saved.u as Tensor),
      dys = set.map((m) => m.dy);
    const { dropout, scale } = loras[0];
    // dB += scale * dy^T u; g = dy B, the gradient reaching u (before the scale).
    const gs = loras.map((l) => be.empty([N, l.a.shape[0]], be.computeDType));
    be.loraUpBackward(
      loras.map((l) => l.gradB),
      gs,
      dys,
      us,
      loras.map((l) => l.bCompute ?? l.b),
      scale,
    );
    for (const u of us) be.free(u);
    const p = set[0].saved.seed === null ? 0 : dropout,
      seeds = set.map((m) => m.saved.seed ?? 0);
    // dA += scale * g^T dropout(x); the input gradient passes back through the same masks.
    be.loraDownGrads(
      loras.map((l) => l.gradA),
      gs,
      x,
      p,
      seeds,
      scale,
      dx ? { dx, as: loras.map((l) => l.aCompute ?? l.a), accumulate: acc } : null,
    );
    acc = true;
    for (const g of gs) be.free(g);
  }
  if (dx)
    be.matmulSum(
      dx,
      members.map((m) => m.dy),
      members.map((m) => m.lin.weight),
      acc,
    );
}
