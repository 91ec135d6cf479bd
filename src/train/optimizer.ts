/**
 * torch.optim.AdamW over the LoRA parameters (the backend's adamw kernel does the arithmetic),
 * with HF Trainer's weight-decay grouping, and torch's clip_grad_norm_.
 */
import type { Backend, Tensor } from '../backend/backend.js';
import type { LoraParameter } from '../lora/lora.js';
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
  /** Updates done so far (torch's per-parameter `step`, the same for all here). */
  stepCount = 0;

  constructor(private readonly be: Backend, params: readonly LoraParameter[], readonly config: AdamWConfig) {
    this.slots = params.map((p) => ({ p, m: be.alloc(p.param.shape, 'f32'), v: be.alloc(p.param.shape, 'f32'), decay: appliesWeightDecay(p.name) }));
  }

  /** One update of every parameter from its gradient at learning rate `lr`. */
  step(lr: number): void {
    this.stepCount++;
    const { beta1, beta2, eps, weightDecay } = this.config;
    for (const s of this.slots) {
      this.be.adamw(s.p.param, s.p.grad, s.m, s.v, { lr, beta1, beta2, eps, weightDecay: s.decay ? weightDecay : 0, step: this.stepCount });
    }
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
    for (const s of this.slots) {
      for (const [suffix, dst] of [['exp_avg', s.m], ['exp_avg_sq', s.v]] as const) {
        const t = tensors[`${s.p.name}.${suffix}`];
        if (!t || t.shape.length !== dst.shape.length || t.shape.some((d, i) => d !== dst.shape[i])) {
          throw new UserError(`${where}: optimizer state for ${s.p.name} is missing or has another shape (the checkpoint is from another LoRA setup)`);
        }
        const src = this.be.upload(toF32(t), dst.shape, 'f32');
        this.be.copy(dst, src);
        this.be.free(src);
      }
    }
    this.stepCount = stepCount;
  }

  free(): void {
    for (const s of this.slots) {
      this.be.free(s.m);
      this.be.free(s.v);
    }
  }
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
