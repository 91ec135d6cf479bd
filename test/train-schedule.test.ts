/**
 * Step counts and the learning-rate schedule against the reference run's published numbers
 * (1,095 optimizer steps for 3,500 examples, batch 8 x accum 2, 5 epochs) and hand-computed
 * values of transformers' get_cosine_schedule_with_warmup.
 */
import { describe, expect, it } from 'vitest';
import { cosineWithWarmup, planSteps, warmupSteps } from '../src/train/schedule.js';

describe('planSteps', () => {
  it('gives the reference workflow its 1,095 steps and 55 warmup steps', () => {
    const plan = planSteps({ examples: 3500, batchSize: 8, gradAccum: 2, epochs: 5 });
    expect(plan).toEqual({ batchesPerEpoch: 438, stepsPerEpoch: 219, totalSteps: 1095 });
    expect(warmupSteps(0.05, plan.totalSteps)).toBe(55); // ceil(54.75)
  });

  it('counts the leftover micro-batches of an epoch as one more step', () => {
    expect(planSteps({ examples: 26, batchSize: 4, gradAccum: 2, epochs: 3 })).toEqual({
      batchesPerEpoch: 7,
      stepsPerEpoch: 4,
      totalSteps: 12,
    });
  });

  it('lets max steps override epochs, and rounds fractional epochs up', () => {
    expect(planSteps({ examples: 26, batchSize: 4, gradAccum: 2, epochs: 3, maxSteps: 20 }).totalSteps).toBe(20);
    expect(planSteps({ examples: 26, batchSize: 4, gradAccum: 2, epochs: 0.6 }).totalSteps).toBe(3); // ceil(2.4)
  });

  it('refuses an empty training set', () => {
    expect(() => planSteps({ examples: 0, batchSize: 8, gradAccum: 2, epochs: 5 })).toThrow(/no training examples/);
  });
});

describe('cosineWithWarmup', () => {
  // lr = 2e-4 * lambda(step) for warmup 55 of 1095 steps, from HF's lr_lambda by hand.
  const expected: [number, number][] = [
    [0, 0],
    [1, 3.636363636363636e-6],
    [27, 9.818181818181818e-5],
    [54, 1.9636363636363636e-4],
    [55, 2e-4],
    [100, 1.9907751513455302e-4],
    [575, 1e-4],
    [1000, 4.089477031261113e-6],
    [1094, 4.5624985651748773e-10],
  ];
  for (const [step, lr] of expected) {
    it(`step ${step}: lr ${lr}`, () => {
      expect(2e-4 * cosineWithWarmup(step, 55, 1095)).toBeCloseTo(lr, 15);
    });
  }

  it('is 0 at the end and never negative; without warmup it starts at the peak', () => {
    expect(cosineWithWarmup(1095, 55, 1095)).toBe(0);
    expect(cosineWithWarmup(0, 0, 10)).toBe(1);
    for (let s = 0; s < 20; s++) expect(cosineWithWarmup(s, 0, 10)).toBeGreaterThanOrEqual(0);
  });
});
