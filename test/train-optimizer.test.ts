/**
 * AdamW over LoRA parameters: HF's weight-decay grouping, the first-step arithmetic of
 * torch.optim.AdamW by hand, state save/restore, and clip_grad_norm_.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import type { LoraParameter } from '../src/lora/lora.js';
import { ADAMW_DEFAULTS, AdamW, appliesWeightDecay, clipGradNorm } from '../src/train/optimizer.js';

const be = new CpuBackend();

function param(name: string, values: number[], grads: number[]): LoraParameter {
  return {
    name,
    param: be.upload(Float32Array.from(values), [values.length]),
    grad: be.upload(Float32Array.from(grads), [grads.length]),
  };
}

const host = (p: LoraParameter): number[] => [...be.download(p.param)];

describe('weight decay grouping (HF get_decay_parameter_names)', () => {
  it('decays LoRA factors, not biases or norm weights', () => {
    expect(appliesWeightDecay('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')).toBe(true);
    expect(appliesWeightDecay('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')).toBe(true);
    expect(appliesWeightDecay('model.layers.0.self_attn.q_proj.bias')).toBe(false);
    expect(appliesWeightDecay('model.layers.0.input_layernorm.weight')).toBe(false);
    expect(appliesWeightDecay('model.norm.weight')).toBe(false);
  });
});

describe('AdamW', () => {
  it("takes torch's first step: p (1 - lr wd) - lr g / (|g| + eps), decay only where it applies", () => {
    // Step 1: m = 0.1 g, v = 0.001 g^2; bias-corrected m / sqrt(v) = sign(g).
    const w = param('x.lora_A.weight', [1, -2], [0.5, -4]);
    const b = param('x.bias', [1], [0.5]);
    const opt = new AdamW(be, [w, b], { ...ADAMW_DEFAULTS, weightDecay: 0.01 });
    opt.step(0.1);
    expect(host(w)[0]).toBeCloseTo(1 * (1 - 0.001) - 0.1 * (0.5 / (0.5 + 1e-8)), 6);
    expect(host(w)[1]).toBeCloseTo(-2 * (1 - 0.001) + 0.1 * (4 / (4 + 1e-8)), 6);
    expect(host(b)[0]).toBeCloseTo(1 - 0.1, 6);
    opt.free();
  });

  it('continues identically after its state is saved and restored', () => {
    const run = (split: boolean): number[] => {
      const p = param('y.lora_B.weight', [0.3, -0.7, 1.1], [0.2, 0.05, -0.4]);
      let opt = new AdamW(be, [p], { ...ADAMW_DEFAULTS, weightDecay: 0.01 });
      for (let s = 0; s < 6; s++) {
        if (split && s === 3) {
          const state = opt.stateToHost();
          const steps = opt.stepCount;
          opt.free();
          opt = new AdamW(be, [p], { ...ADAMW_DEFAULTS, weightDecay: 0.01 });
          opt.loadState(state, steps, 'test');
        }
        be.copy(p.grad, be.upload(Float32Array.from([0.2 - 0.1 * s, 0.05 * s, -0.4 + s * 0.03]), [3]));
        opt.step(0.01 * (s + 1));
      }
      opt.free();
      return host(p);
    };
    expect(run(true)).toEqual(run(false));
  });

  it('refuses state for other parameters', () => {
    const opt = new AdamW(be, [param('z.lora_A.weight', [1, 2], [0, 0])], { ...ADAMW_DEFAULTS, weightDecay: 0 });
    const other = new AdamW(be, [param('z.lora_A.weight', [1, 2, 3], [0, 0, 0])], {
      ...ADAMW_DEFAULTS,
      weightDecay: 0,
    });
    expect(() => opt.loadState(other.stateToHost(), 1, 'ckpt')).toThrow(/ckpt: optimizer state for z.lora_A.weight/);
  });
});

describe('clipGradNorm (torch clip_grad_norm_)', () => {
  it('returns the global norm and scales every gradient by max / (norm + 1e-6) when above max', () => {
    const a = param('a', [0, 0], [3, 0]),
      b = param('b', [0], [4]);
    expect(clipGradNorm(be, [a, b], 1)).toBeCloseTo(5, 6);
    const coef = 1 / (5 + 1e-6);
    expect([...be.download(a.grad)][0]).toBeCloseTo(3 * coef, 7);
    expect([...be.download(b.grad)][0]).toBeCloseTo(4 * coef, 7);
  });

  it('leaves gradients under the limit (or with clipping off) alone', () => {
    const a = param('a', [0, 0], [0.3, 0.4]);
    expect(clipGradNorm(be, [a], 1)).toBeCloseTo(0.5, 6);
    expect(clipGradNorm(be, [a], 0)).toBeCloseTo(0.5, 6);
    expect([...be.download(a.grad)]).toEqual([Math.fround(0.3), Math.fround(0.4)]);
  });
});
