/**
 * Activation checkpointing and the one-kernel optimizer path: recomputing layers in the backward
 * pass gives exactly the gradients of keeping their activations (same kernels, same dropout
 * masks), a memory budget recomputes as few layers as it must, and clipping plus AdamW over the
 * adapter's flat buffers equal the per-tensor path (up to the rounding of the norm's partial sums).
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { LoraAdapter } from '../src/lora/lora.js';
import type { TrainBatch } from '../src/model/qwen2-batch.js';
import { layerActivationBytes } from '../src/model/qwen2-layer.js';
import { PROJECTIONS } from '../src/model/qwen2-linear.js';
import { ADAMW_DEFAULTS, AdamW, clipGradNorm, clipGradNormOnDevice } from '../src/train/optimizer.js';
import { loraWithRandomB, randomModel, rng, tinyConfig } from './helpers/random-qwen2.js';

const be = new CpuBackend();
const cfg = tinyConfig({ num_hidden_layers: 3 });
const model = randomModel(be, cfg, 5);

function adapter(targets: readonly (typeof PROJECTIONS)[number][]): LoraAdapter {
  return LoraAdapter.upload(
    be,
    cfg,
    loraWithRandomB(cfg, { r: 4, alpha: 8, dropout: 0.2, targetModules: [...targets], useRslora: false }, 9, 11),
  );
}

function batch(): TrainBatch {
  const B = 2,
    T = 7;
  const rand = rng(17);
  const inputIds = Int32Array.from({ length: B * T }, () => 1 + Math.floor(rand() * (cfg.vocabSize - 1)));
  const labels = inputIds.map((id, i) => (i % T < 2 ? -100 : id));
  return { batchSize: B, seqLen: T, inputIds, labels };
}

function gradients(
  lora: LoraAdapter,
  opts: { recomputeLayers?: number; activationBudget?: number },
): { loss: number; grads: Record<string, Float32Array> } {
  model.setLora(lora);
  lora.zeroGrad();
  const step = model.forwardTrain(batch(), { dropoutSeed: 3, ...opts });
  model.backward(step);
  const grads = Object.fromEntries(Object.entries(lora.gradsToHost()).map(([k, v]) => [k, Float32Array.from(v)]));
  model.setLora(null);
  return { loss: step.loss, grads };
}

describe('activation checkpointing', () => {
  for (const [what, targets] of [
    ['attention projections', ['q_proj', 'k_proj', 'v_proj', 'o_proj']],
    ['all seven projections', PROJECTIONS],
  ] as const) {
    it(`recomputed layers give the same loss and gradients as kept ones (LoRA with dropout on ${what})`, () => {
      const lora = adapter(targets);
      const kept = gradients(lora, {});
      for (const recomputeLayers of [1, 3]) {
        const again = gradients(lora, { recomputeLayers });
        expect(again.loss).toBe(kept.loss);
        for (const [name, g] of Object.entries(kept.grads)) {
          expect(
            g.some((v) => v !== 0),
            `${name} has a gradient`,
          ).toBe(true);
          expect(again.grads[name], name).toEqual(g);
        }
      }
      lora.free();
    });
  }

  it('a memory budget recomputes the fewest layers that fit', () => {
    const lora = adapter(['q_proj', 'v_proj']);
    const N = 14;
    const perLayer = layerActivationBytes(be, cfg, lora.layer(0), N);
    expect(perLayer).toBeGreaterThan(0);
    // Each layer runs attention forward once, a recomputed one twice.
    const forward = be.attentionForward.bind(be);
    let attentionPasses = 0;
    be.attentionForward = (...args) => {
      attentionPasses++;
      forward(...args);
    };
    const passes = (opts: { activationBudget?: number }): { grads: Record<string, Float32Array>; passes: number } => {
      attentionPasses = 0;
      return { grads: gradients(lora, opts).grads, passes: attentionPasses };
    };
    try {
      const kept = passes({});
      expect(kept.passes).toBe(3);
      expect(passes({ activationBudget: 3 * perLayer }).passes).toBe(3);
      const budget = passes({ activationBudget: 2 * perLayer });
      expect(budget.passes).toBe(4);
      for (const [name, g] of Object.entries(kept.grads)) expect(budget.grads[name], name).toEqual(g);
      expect(passes({ activationBudget: 0 }).passes).toBe(6);
    } finally {
      be.attentionForward = forward;
      lora.free();
    }
  });
});

describe('optimizer over the flat parameter buffers', () => {
  it('clipGradNormOnDevice and one AdamW kernel match clipGradNorm and per-tensor AdamW', () => {
    const run = (flat: boolean): Float32Array[] => {
      const lora = adapter(['q_proj', 'o_proj']);
      const params = lora.parameters();
      const opt = new AdamW(be, params, { ...ADAMW_DEFAULTS, weightDecay: 0.01 }, flat ? lora.flat() : undefined);
      const norms: number[] = [];
      for (let s = 0; s < 2; s++) {
        model.setLora(lora);
        const step = model.forwardTrain(batch(), { dropoutSeed: s });
        model.backward(step);
        if (flat) {
          const sq = clipGradNormOnDevice(be, [lora.flat().grad], 0.5);
          norms.push(Math.sqrt(be.download(sq)[0]));
          be.free(sq);
        } else {
          norms.push(clipGradNorm(be, params, 0.5));
        }
        opt.step(1e-2);
        lora.zeroGrad();
      }
      expect(norms[0]).toBeGreaterThan(0.5);
      const out = [Float32Array.from(norms), ...params.map((p) => Float32Array.from(be.download(p.param)))];
      opt.free();
      lora.free();
      model.setLora(null);
      return out;
    };
    const [perTensor, flat] = [run(false), run(true)];
    // One sum of squares over the flat buffer rounds differently from per-tensor partial sums: last-bit differences.
    for (let i = 0; i < perTensor.length; i++) {
      const scale = Math.max(...perTensor[i].map(Math.abs));
      const worst = Math.max(...perTensor[i].map((v, k) => Math.abs(v - flat[i][k])));
      expect(worst / scale, `tensor ${i}`).toBeLessThan(1e-6);
    }
  });
});
