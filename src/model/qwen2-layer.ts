/**
 * One Qwen2 decoder layer (HF's Qwen2DecoderLayer), forward and backward, written out step by
 * step as llm.c does:
 *
 *   n1 = rmsnorm(x) ; q,k,v = proj(n1) (+bias) ; q,k = rope(q,k) ; a = attention(q,k,v)
 *   x1 = x + o_proj(a) ; n2 = rmsnorm(x1) ; s = silu(gate_proj(n2)) * up_proj(n2)
 *   x2 = x1 + down_proj(s)
 *
 * Activations are [N = B*T, features] rows. A training forward keeps what the backward pass
 * cannot cheaply recompute: q, k, v (after RoPE), the attention output and its log-sum-exp, x1
 * and the MLP's gate and up products (plus the layer input x, which the caller owns), and n1
 * when q, k or v has LoRA factors (their gradients read it; keeping it costs less time than
 * recomputing it). n2 and the SwiGLU output are recomputed in the backward pass when a LoRA
 * factor needs them (one elementwise kernel each) and never kept otherwise. With `recompute`,
 * nothing but x is kept and the backward pass runs the forward again first (activation
 * checkpointing). Each layer's closing residual add also computes the next norm (the next
 * layer's input norm, or the final one), which the next layer receives ready.
 */
import type { Backend, Tensor } from '../backend/backend.js';
import type { Qwen2Config } from './config.js';
import {
  linearGroupBackward,
  linearGroupForward,
  type Linear,
  type LinearSaved,
  type LoraWeights,
  type ProjectionName,
} from './qwen2-linear.js';

export interface Qwen2LayerWeights {
  inputLayernorm: Tensor;
  postAttentionLayernorm: Tensor;
  proj: Record<ProjectionName, Linear>;
}

/** LoRA factors of one layer's projections (absent = no adapter on that projection). */
export type LayerLora = Partial<Record<ProjectionName, LoraWeights>>;

/** Per-call inputs shared by all layers. */
export interface LayerContext {
  B: number;
  T: number;
  /** i32 [B*T]: each token's rotary position. */
  positions: Tensor;
  /** i32 [B, S]: 1 where a key slot holds a real token. */
  keyMask: Tensor;
  /** Training: per-layer dropout seeds come from this; null for inference. */
  train: { seed: number } | null;
}

/** Activations a training forward keeps for one layer (see the file comment). */
export interface LayerActivations {
  rstd1: Tensor;
  /** The input norm's output, kept when q, k or v has LoRA factors (else null). */
  n1: Tensor | null;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  attn: Tensor;
  lse: Tensor;
  x1: Tensor;
  rstd2: Tensor;
  gate: Tensor;
  up: Tensor;
  lin: Record<ProjectionName, LinearSaved>;
}

/** What a training forward keeps for one layer: its input, and its activations unless recomputed. */
export interface LayerSaved {
  x: Tensor;
  /** null: recompute them from x in the backward pass. */
  acts: LayerActivations | null;
}

/** Whether q, k or v has LoRA factors (then their backward pass reads the input norm's output). */
const qkvLora = (lora: LayerLora): boolean => Boolean(lora.q_proj || lora.k_proj || lora.v_proj);

const PROJ_INDEX: Record<ProjectionName, number> = {
  q_proj: 0,
  k_proj: 1,
  v_proj: 2,
  o_proj: 3,
  gate_proj: 4,
  up_proj: 5,
  down_proj: 6,
};

/** Dropout seed of one projection in one layer, derived from the step's seed. */
function projSeed(ctx: LayerContext, layer: number, p: ProjectionName): number {
  if (!ctx.train) return 0;
  return (Math.imul(ctx.train.seed, 0x01000193) ^ ((layer * 8 + PROJ_INDEX[p] + 1) * 0x9e3779b1)) >>> 0;
}

/** Bytes a training forward keeps for one layer of N tokens (activations and LoRA products, not x). */
export function layerActivationBytes(be: Backend, cfg: Qwen2Config, lora: LayerLora, N: number): number {
  const es = be.computeDType === 'f32' ? 4 : 2;
  const q = cfg.numHeads * cfg.headDim,
    kv = cfg.numKvHeads * cfg.headDim;
  const r = Object.values(lora).reduce((s, w) => s + (w ? w.a.shape[0] : 0), 0);
  const n1 = qkvLora(lora) ? cfg.hiddenSize : 0;
  return N * ((2 * q + 2 * kv + cfg.hiddenSize + n1 + 2 * cfg.intermediateSize + r) * es + (2 + cfg.numHeads) * 4);
}

/** An RMSNorm's output [N, D] and its per-row reciprocal RMS [N], both owned by the receiver. */
export interface Normed {
  n: Tensor;
  rstd: Tensor;
}

/** How layerForward links to its neighbours. */
export interface LayerLinks {
  /** Keep only x; the backward pass recomputes the rest (training only). */
  recompute?: boolean;
  /** x's input norm, already computed (by the previous layer's last kernel). */
  normed?: Normed | null;
  /**
   * The next norm's weight (the next layer's input norm, or the final norm): the residual add
   * that ends this layer then writes that norm's output too, in the same pass.
   */
  nextNorm?: Tensor | null;
}

/**
 * Runs layer `li` on x [N, D] and returns x2 [N, D] (new tensor), with the next norm's output
 * when `links.nextNorm` is given. `x` is not freed: the caller owns it (and a training forward
 * keeps it in the saved record). Decoding over a KV cache has its own path
 * (qwen2-inference.ts).
 */
export function layerForward(
  be: Backend,
  cfg: Qwen2Config,
  li: number,
  w: Qwen2LayerWeights,
  lora: LayerLora,
  ctx: LayerContext,
  x: Tensor,
  links: LayerLinks = {},
): { out: Tensor; normed: Normed | null; saved: LayerSaved | null } {
  const { acts, out, normed } = runForward(be, cfg, li, w, lora, ctx, x, {
    normed: links.normed ?? null,
    nextNorm: links.nextNorm ?? null,
  });
  if (!out) throw new Error('layerForward: no output');
  if (!acts) return { out, normed, saved: null };
  if (links.recompute) {
    freeActivations(be, acts, true);
    return { out, normed, saved: { x, acts: null } };
  }
  return { out, normed, saved: { x, acts } };
}

/** `output` null: only the activations are wanted (a recomputing backward pass). */
function runForward(
  be: Backend,
  cfg: Qwen2Config,
  li: number,
  w: Qwen2LayerWeights,
  lora: LayerLora,
  ctx: LayerContext,
  x: Tensor,
  output: { normed: Normed | null; nextNorm: Tensor | null } | null,
): { out: Tensor | null; normed: Normed | null; acts: LayerActivations | null } {
  const { B, T } = ctx;
  const N = B * T;
  const D = cfg.hiddenSize,
    H = cfg.numHeads,
    Hkv = cfg.numKvHeads,
    hd = cfg.headDim,
    I = cfg.intermediateSize;
  const dt = be.computeDType;
  const training = ctx.train !== null;
  /** Projections of one input: [name, output, bias added here] each. */
  const lin = (input: Tensor, ...projs: [ProjectionName, Tensor | null, boolean?][]): (LinearSaved | null)[] =>
    linearGroupForward(
      be,
      input,
      projs.map(([p, out, withBias]) => ({ out, lin: w.proj[p], lora: lora[p], seed: projSeed(ctx, li, p), withBias })),
      training,
    );

  const given = output?.normed;
  const n1 = given ? given.n : be.empty([N, D], dt);
  const rstd1 = given ? given.rstd : be.empty([N]);
  if (!given) be.rmsNormForward(n1, rstd1, x, w.inputLayernorm, cfg.rmsNormEps);
  const q = be.empty([N, H * hd], dt),
    k = be.empty([N, Hkv * hd], dt),
    v = be.empty([N, Hkv * hd], dt);
  // q and k get their biases inside the rotary embedding's pass.
  const [sq, sk, sv] = lin(n1, ['q_proj', q, false], ['k_proj', k, false], ['v_proj', v]);
  const keptN1 = training && qkvLora(lora) ? n1 : null;
  if (!keptN1) be.free(n1);
  be.ropeForward(q, be.reshape(q, [N, H, hd]), ctx.positions, cfg.ropeTheta, w.proj.q_proj.bias ?? undefined);
  be.ropeForward(k, be.reshape(k, [N, Hkv, hd]), ctx.positions, cfg.ropeTheta, w.proj.k_proj.bias ?? undefined);

  const q4 = be.reshape(q, [B, T, H, hd]);
  const k4 = be.reshape(k, [B, T, Hkv, hd]),
    v4 = be.reshape(v, [B, T, Hkv, hd]);
  const attn = be.empty([N, H * hd], dt);
  const lse = be.empty([B, T, H]);
  be.attentionForward(be.reshape(attn, [B, T, H, hd]), lse, q4, k4, v4, ctx.keyMask, { kvLen: T });

  const x1 = be.empty([N, D], dt);
  const [so] = lin(attn, ['o_proj', x1]);
  const n2 = be.empty([N, D], dt);
  const rstd2 = be.empty([N]);
  be.addRmsNorm(x1, n2, rstd2, x1, x, w.postAttentionLayernorm, cfg.rmsNormEps);
  const gate = be.empty([N, I], dt),
    up = be.empty([N, I], dt);
  const [sg, su] = lin(n2, ['gate_proj', gate], ['up_proj', up]);
  be.free(n2);
  let out: Tensor | null = null;
  let normed: Normed | null = null;
  let sd: LinearSaved | null = { u: null, seed: null };
  // A recomputing backward pass needs gate and up and down_proj's LoRA product, not the output.
  if (output || lora.down_proj) {
    const act = be.empty([N, I], dt);
    be.swigluForward(act, gate, up);
    out = output ? be.empty([N, D], dt) : null;
    [sd] = lin(act, ['down_proj', out]);
    be.free(act);
    if (out && output?.nextNorm) {
      normed = { n: be.empty([N, D], dt), rstd: be.empty([N]) };
      be.addRmsNorm(out, normed.n, normed.rstd, out, x1, output.nextNorm, cfg.rmsNormEps);
    } else if (out) be.add(out, out, x1);
  }
  if (!training) {
    for (const t of [rstd1, q, k, v, attn, lse, x1, rstd2, gate, up]) be.free(t);
    return { out, normed, acts: null };
  }
  const lins = { q_proj: sq, k_proj: sk, v_proj: sv, o_proj: so, gate_proj: sg, up_proj: su, down_proj: sd } as Record<
    ProjectionName,
    LinearSaved
  >;
  return { out, normed, acts: { rstd1, n1: keptN1, q, k, v, attn, lse, x1, rstd2, gate, up, lin: lins } };
}

/** Frees a layer's activations; `withLora` also the LoRA products (linearBackward frees those it used). */
function freeActivations(be: Backend, a: LayerActivations, withLora: boolean): void {
  for (const t of [a.rstd1, a.q, a.k, a.v, a.attn, a.lse, a.x1, a.rstd2, a.gate, a.up]) be.free(t);
  if (a.n1) be.free(a.n1);
  if (withLora) for (const s of Object.values(a.lin)) if (s.u) be.free(s.u);
}

/**
 * Backward of layerForward: given dOut [N, D] (the gradient of x2), adds LoRA gradients, frees
 * the saved activations (not x) and returns dx [N, D] — dOut itself, updated in place (the
 * residual path carries the gradient through). With `inputGradient` false (the first layer:
 * nothing below it is trained) the attention block's input gradient is skipped, and the
 * returned tensor holds only the residual path's part.
 */
export function layerBackward(
  be: Backend,
  cfg: Qwen2Config,
  li: number,
  w: Qwen2LayerWeights,
  lora: LayerLora,
  ctx: LayerContext,
  saved: LayerSaved,
  dOut: Tensor,
  inputGradient = true,
): Tensor {
  const { B, T } = ctx;
  const N = B * T;
  const D = cfg.hiddenSize,
    H = cfg.numHeads,
    Hkv = cfg.numKvHeads,
    hd = cfg.headDim,
    I = cfg.intermediateSize;
  const dt = be.computeDType;
  const x = saved.x;
  const s = saved.acts ?? (runForward(be, cfg, li, w, lora, ctx, x, null).acts as LayerActivations);
  /** dx (written) from the gradients of projections of one input: [name, dy] each. */
  const back = (dx: Tensor | null, input: Tensor | null, ...projs: [ProjectionName, Tensor][]): void =>
    linearGroupBackward(
      be,
      dx,
      projs.map(([p, dy]) => ({ dy, lin: w.proj[p], lora: lora[p], saved: s.lin[p] })),
      input,
    );
  /** A norm's output again from its input and weight (for the LoRA factors that read it). */
  const renorm = (input: Tensor, weight: Tensor, rstd: Tensor): Tensor => {
    const n = be.empty([N, D], dt);
    be.rmsNormForward(n, rstd, input, weight, cfg.rmsNormEps);
    return n;
  };

  // MLP: x2 = x1 + down(swiglu(gate(n2), up(n2)))
  const dAct = be.empty([N, I], dt);
  let act: Tensor | null = null;
  if (lora.down_proj) {
    act = be.empty([N, I], dt);
    be.swigluForward(act, s.gate, s.up);
  }
  back(dAct, act, ['down_proj', dOut]);
  if (act) be.free(act);
  be.swigluBackward(s.gate, s.up, dAct, s.gate, s.up); // gate/up now hold their gradients
  be.free(dAct);
  const n2 = lora.gate_proj || lora.up_proj ? renorm(s.x1, w.postAttentionLayernorm, s.rstd2) : null;
  const dN2 = be.empty([N, D], dt);
  back(dN2, n2, ['gate_proj', s.gate], ['up_proj', s.up]);
  if (n2) be.free(n2);
  const dX1 = dOut;
  be.rmsNormBackward(dX1, dN2, s.x1, w.postAttentionLayernorm, s.rstd2, true);
  be.free(dN2);

  // Attention: x1 = x + o(attention(rope(q), rope(k), v)); RoPE's backward comes with attentionBackward's
  const dAttn = be.empty([N, H * hd], dt);
  back(dAttn, s.attn, ['o_proj', dX1]);
  const dq = be.empty([N, H * hd], dt),
    dk = be.empty([N, Hkv * hd], dt),
    dv = be.empty([N, Hkv * hd], dt);
  be.attentionBackward(
    be.reshape(dq, [B, T, H, hd]),
    be.reshape(dk, [B, T, Hkv, hd]),
    be.reshape(dv, [B, T, Hkv, hd]),
    be.reshape(dAttn, [B, T, H, hd]),
    be.reshape(s.q, [B, T, H, hd]),
    be.reshape(s.k, [B, T, Hkv, hd]),
    be.reshape(s.v, [B, T, Hkv, hd]),
    be.reshape(s.attn, [B, T, H, hd]),
    s.lse,
    ctx.keyMask,
    { rope: { positions: ctx.positions, theta: cfg.ropeTheta } },
  );
  be.free(dAttn);
  const dN1 = inputGradient ? be.empty([N, D], dt) : null;
  back(dN1, s.n1, ['q_proj', dq], ['k_proj', dk], ['v_proj', dv]);
  if (dN1) {
    be.rmsNormBackward(dX1, dN1, x, w.inputLayernorm, s.rstd1, true);
    be.free(dN1);
  }
  for (const t of [dq, dk, dv]) be.free(t);
  freeActivations(be, s, false);
  return dX1;
}
