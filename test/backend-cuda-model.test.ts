/**
 * The Qwen2 model on the CUDA backend against HF transformers + PEFT (test/fixtures/tiny):
 * in f32 as tight as the CPU backend, in bf16 (the training setting) within bf16 tolerances;
 * the NF4 base as far from HF as the CPU's NF4 model is; and three full training steps
 * (NF4 base, LoRA dropout, accumulation, clipping, AdamW) against the CPU backend.
 * Without a GPU it runs on the CUDA emulator (test/helpers/cuda-device.ts).
 *
 * bf16 tolerances (errors measured on an H100 in brackets, then given margin): the tiny models
 * have activations of order 1, so a bf16 rounding (2^-9 relative) per op accumulates over two
 * layers to 1-2% of the largest logit [1.3e-2, 1.9e-2]; the loss [4e-4] averages it out;
 * the worst LoRA gradient [8e-2 of its largest entry] sums many rounded products. Greedy
 * decoding is compared step by step only while a row's tokens equal HF's (random tiny models
 * have near-ties that bf16 may break the other way) [1.6e-2]. After AdamW, whose first steps
 * move every weight by about lr * sign(gradient), bf16 noise flips the sign of the smallest
 * gradients, so updates are compared by RMS [0.33] (a wrong update would be near 1 or more).
 */
import { describe, expect, it } from 'vitest';
import type { FloatDType } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { CudaBackend } from '../src/backend/cuda/cuda-backend.js';
import { hfFixtureErrors, recomputeGradients, trainingErrors, type HfFixtureErrors } from './helpers/model-parity.js';
import { haveTinyFixtures, MISSING_FIXTURES, VARIANTS } from './helpers/tiny-fixture.js';
import { cudaTarget } from './helpers/cuda-device.js';

const probe = cudaTarget('backend-cuda-model');
if (probe.available && !haveTinyFixtures)
  console.warn(`backend-cuda-model: skipping HF comparisons: ${MISSING_FIXTURES}`);

const TOL = {
  f32: { logits: 1e-5, loss: 1e-5, grad: 1e-4, stepLogits: 1e-5 },
  bf16: { logits: 3e-2, loss: 2e-3, grad: 0.15, stepLogits: 3e-2 },
} as const;

function expectWithin(e: HfFixtureErrors, dt: 'f32' | 'bf16'): void {
  const t = TOL[dt];
  for (const [k, x] of Object.entries(e.logits)) expect(x.rel, `${dt} ${k}`).toBeLessThan(t.logits);
  for (const [k, x] of Object.entries(e.loss)) expect(x, `${dt} ${k} loss`).toBeLessThan(t.loss);
  expect(e.gradWorst.rel, `${dt} ${e.gradWorst.name}`).toBeLessThan(t.grad);
  expect(e.stepLogits.rel, `${dt} decoding step logits`).toBeLessThan(t.stepLogits);
}

describe.skipIf(!probe.available || !haveTinyFixtures)('Qwen2 on CUDA against HF transformers + PEFT', () => {
  const cuda: Partial<Record<FloatDType, CudaBackend>> = {};
  const backend = (dt: FloatDType): CudaBackend => (cuda[dt] ??= new CudaBackend({ computeDType: dt }));

  for (const v of VARIANTS) {
    it(`${v}: f32 logits, loss, LoRA gradients and greedy decoding as tight as the CPU backend`, () => {
      const e = hfFixtureErrors(backend('f32'), v);
      expectWithin(e, 'f32');
      expect(e.tokensMatching).toBe(e.tokensTotal);
    });

    it(`${v}: bf16 compute within bf16 tolerances`, () => {
      expectWithin(hfFixtureErrors(backend('bf16'), v), 'bf16');
    });

    it(`${v}: NF4 base in bf16 is as far from HF as the CPU's NF4 model`, () => {
      const got = hfFixtureErrors(backend('bf16'), v, 'nf4'),
        ref = hfFixtureErrors(new CpuBackend(), v, 'nf4');
      for (const k of Object.keys(ref.logits))
        expect(Math.abs(got.logits[k].rms - ref.logits[k].rms), k).toBeLessThan(0.02);
    });
  }
});

describe.skipIf(!probe.available)('training on CUDA against the CPU backend', () => {
  it('f32: three SFT steps give the same losses, norms and LoRA updates', () => {
    const e = trainingErrors(new CudaBackend({ computeDType: 'f32' }));
    for (const l of [...e.losses, ...e.gradNorms]) expect(Math.abs(l.got - l.ref) / l.ref).toBeLessThan(1e-5);
    expect(e.paramsWorst.rel, e.paramsWorst.name).toBeLessThan(5e-3);
    expect(e.nf4Logits.rel).toBeLessThan(1e-5);
  });

  for (const dt of ['f32', 'bf16'] as const) {
    it(`${dt}: recomputing every layer in the backward pass gives the gradients of keeping their activations`, () => {
      const { kept, recomputed } = recomputeGradients(new CudaBackend({ computeDType: dt }));
      for (const [name, g] of Object.entries(kept)) {
        expect(
          g.some((v) => v !== 0),
          `${name} has a gradient`,
        ).toBe(true);
        expect(recomputed[name], name).toEqual(g);
      }
    });
  }

  it('bf16: three SFT steps stay within bf16 tolerances', () => {
    const e = trainingErrors(new CudaBackend());
    for (const l of e.losses) expect(Math.abs(l.got - l.ref) / l.ref).toBeLessThan(1e-2);
    for (const l of e.gradNorms) expect(Math.abs(l.got - l.ref) / l.ref).toBeLessThan(5e-2);
    expect(e.paramsWorst.rms, e.paramsWorst.name).toBeLessThan(0.6);
    expect(e.nf4Logits.rel).toBeLessThan(3e-2);
  });
});
