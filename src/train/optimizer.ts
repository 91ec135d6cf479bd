/**
 * torch.optim.AdamW over the LoRA parameters (the backend's adamw kernel does the arithmetic),
 * with HF Trainer's weight-decay grouping, and torch's clip_grad_norm_.
 */
import type { Backend, Tensor } from '../backend/backend.js';
import type { FlatParameters, LoraParameter } from '../lora/lora.js';
import { f32Tensor, toF32, type HostTensor } from '../tensor/tensor.js';
import { UserError } from '../util/errors.js';

export interface AdamWConfig {
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
}

/** torch's defaults, which HF's TrainingArguments repeat (adam_beta1/2, adam_epsilon). */
export const ADAMW_DEFAULTS: Omit<AdamWConfig, 'weightDecay'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/**
 * HF Trainer decays every trainable weight except biases and normalization weights
 * (get_decay_parameter_names); LoRA's lora_A / lora_B are plain weights and are decayed.
 */
export function appliesWeightDecay(name: string): boolean {
  return !/(^|\.)bias$/.test(name) && !/norm/i.test(name);
}

interface Slot {
  p: LoraParameter;
  m: Tensor;
  v: Tensor;
  decay: boolean;
}

export class AdamW {
  private readonly slots: Slot[];
  /** Moments in the layout of `flat`, when every parameter lives there and all decay alike: one kernel per step. */
  private readonly flat: { params: FlatParameters; m: Tensor; v: Tensor; decay: boolean } | null = null;
  /** Updates done so far (torch's per-parameter `step`, the same for all here). */
  stepCount = 0;

  /** `flat`: the buffers behind `params` (LoraAdapter.flat()), to update them all at once. */
  constructor(
    private readonly be: Backend,
    params: readonly LoraParameter[],
    readonly config: AdamWConfig,
    flat?: FlatParameters,
  ) {
    const decays = params.map((p) => appliesWeightDecay(p.name));
    if (flat && flat.offsets.length === params.length && decays.every((d) => d === decays[0])) {
      const size = flat.param.size;
      const m = be.alloc([size], 'f32'),
        v = be.alloc([size], 'f32');
      const view = (t: Tensor, i: number): Tensor =>
        be.reshape(be.rows(t, flat.offsets[i], params[i].param.size), params[i].param.shape);
      this.flat = { params: flat, m, v, decay: decays[0] ?? true };
      this.slots = params.map((p, i) => ({ p, m: view(m, i), v: view(v, i), decay: decays[i] }));
    } else {
      this.slots = params.map((p, i) => ({
        p,
        m: be.alloc(p.param.shape, 'f32'),
        v: be.alloc(p.param.shape, 'f32'),
        decay: decays[i],
      }));
    }
  }

  /** One update of every parameter from its gradient at learning rate `lr`. */
  step(lr: number): void {
    this.stepCount++;
    const { beta1, beta2, eps, weightDecay } = this.config;
    const opts = (decay: boolean) => ({
      lr,
      beta1,
      beta2,
      eps,
      weightDecay: decay ? weightDecay : 0,
      step: this.stepCount,
    });
    if (this.flat) {
      this.be.adamw(this.flat.params.param, this.flat.params.grad, this.flat.m, this.flat.v, opts(this.flat.decay));
      return;
    }
    for (const s of this.slots) this.be.adamw(s.p.param, s.p.grad, s.m, s.v, opts(s.decay));
  }

  /** exp_avg / exp_avg_sq of every parameter, named `<param>.exp_avg(_sq)`. */
  stateToHost(): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const s of this.slots) {
      out[`${s.p.name}.exp_avg`] = f32Tensor(s.m.shape, Float32Array.from(this.be.download(s.m)));
      out[`${s.p.name}.exp_avg_sq`] = f32Tensor(s.v.shape, Float32Array.from(this.be.download(s.v)));
    }
    return out;
  }

  /** Restores what stateToHost saved; `where` names the file in errors. */
  loadState(tensors: Record<string, HostTensor>, stepCount: number, where: string): void {
    const extra = Object.keys(tensors).length - 2 * this.slots.length;
    if (extra !== 0)
      throw new UserError(
        `${where}: the optimizer state has ${Math.abs(extra)} ${extra > 0 ? 'more' : 'fewer'} tensors than this LoRA setup's ${2 * this.slots.length} (the checkpoint is from another LoRA setup)`,
      );
    for (const s of this.slots) {
      for (const [suffix, dst] of [
        ['exp_avg', s.m],
        ['exp_avg_sq', s.v],
      ] as const) {
        const t = tensors[`${s.p.name}.${suffix}`];
        if (!t || t.shape.length !== dst.shape.length || t.shape.some((d, i) => d !== dst.shape[i])) {
          throw new UserError(
            `${where}: optimizer state for ${s.p.name} is missing or has another shape (the checkpoint is from another LoRA setup)`,
          );
        }
        const src = this.be.upload(toF32(t), dst.shape, 'f32');
        this.be.copy(dst, src);
        this.be.free(src);
      }
    }
    this.stepCount = stepCount;
  }

  free(): void {
    if (this.flat) {
      this.be.free(this.flat.m);
      this.be.free(this.flat.v);
      return;
    }
    for (const s of this.slots) {
      this.be.free(s.m);
      this.be.free(s.v);
    }
  }
}

/**
 * clip_grad_norm_ without waiting for the device: returns a 1-element f32 tensor that will hold
 * the squared norm over `grads` (the caller reads and frees it, after queuing the rest of the
 * step); the gradients are scaled on the device as clipGradNorm scales them. maxNorm <= 0 only
 * measures.
 */
export function clipGradNormOnDevice(be: Backend, grads: readonly Tensor[], maxNorm: number): Tensor {
  const acc = be.empty([1]);
  grads.forEach((g, i) => be.sumSquares(acc, g, i > 0));
  if (grads.length === 0) be.fill(acc, 0);
  if (maxNorm > 0) for (const g of grads) be.clipByNorm(g, acc, maxNorm);
  return acc;
}

/**
 * torch.nn.utils.clip_grad_norm_: the L2 norm over all gradients, and when it exceeds maxNorm
 * every gradient scaled by maxNorm / (norm + 1e-6). Returns the norm before clipping (what HF
 * logs as grad_norm); a non-finite norm is returned without touching the gradients.
 */
export function clipGradNorm(be: Backend, params: readonly LoraParameter[], maxNorm: number): number {
  const acc = be.alloc([1]);
  params.forEach((p, i) => be.sumSquares(acc, p.grad, i > 0));
  const norm = Math.sqrt(be.download(acc)[0]);
  be.free(acc);
  if (!Number.isFinite(norm)) return norm;
  const coef = maxNorm / (norm + 1e-6);
  if (maxNorm > 0 && coef < 1) for (const p of params) be.scale(p.grad, coef);
  return norm;
}
