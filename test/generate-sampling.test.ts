/**
 * Token choice as HF's logits processors define it: argmax ties, repetition penalty, top-k,
 * top-p (HF's ascending-cumulative rule), temperature, and draws that follow the distribution.
 */
import { describe, expect, it } from 'vitest';
import { applyRepetitionPenalty, argmax, Sampler } from '../src/model/sampling.js';
import { mulberry32 } from '../src/util/random.js';

const logitsOf = (probs: number[]): Float32Array => Float32Array.from(probs.map((p) => Math.log(p)));

/** Empirical frequencies of n draws. */
function frequencies(sampler: Sampler, logits: Float32Array, n: number, seed = 1): number[] {
  const random = mulberry32(seed);
  const counts = new Array<number>(sampler.vocabSize).fill(0);
  for (let i = 0; i < n; i++) counts[sampler.pick(logits, 0, random)]++;
  return counts.map((c) => c / n);
}

describe('argmax', () => {
  it('returns the first maximal index of the row at the offset (as torch.argmax)', () => {
    const row = Float32Array.from([9, 9, 1, 3, 3, 2]);
    expect(argmax(row, 2, 4)).toBe(1);
    expect(argmax(row, 0, 2)).toBe(0);
  });
});

describe('applyRepetitionPenalty (HF RepetitionPenaltyLogitsProcessor)', () => {
  it('divides positive and multiplies negative logits of seen tokens', () => {
    const row = Float32Array.from([2, -2, 4, 1]);
    applyRepetitionPenalty(row, 0, new Set([0, 1]), 2);
    expect([...row]).toEqual([1, -4, 4, 1]);
  });
});

describe('Sampler', () => {
  const probs = [0.05, 0.5, 0.15, 0.3];

  it('with temperature 0 is greedy', () => {
    const s = new Sampler(4, { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 });
    expect(s.pick(logitsOf(probs), 0, () => 0.99)).toBe(1);
  });

  it('draws from softmax(logits / T)', () => {
    const f = frequencies(
      new Sampler(4, { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 }),
      logitsOf(probs),
      40000,
    );
    f.forEach((x, i) => expect(Math.abs(x - probs[i])).toBeLessThan(0.01));
    // T = 0.5 squares the probabilities before renormalizing.
    const sq = probs.map((p) => p * p),
      z = sq.reduce((a, b) => a + b);
    const g = frequencies(
      new Sampler(4, { temperature: 0.5, topK: 0, topP: 1, repetitionPenalty: 1 }),
      logitsOf(probs),
      40000,
      2,
    );
    g.forEach((x, i) => expect(Math.abs(x - sq[i] / z)).toBeLessThan(0.01));
  });

  it('top-k keeps the k largest and renormalizes', () => {
    const f = frequencies(
      new Sampler(4, { temperature: 1, topK: 2, topP: 1, repetitionPenalty: 1 }),
      logitsOf(probs),
      20000,
    );
    expect(f[0]).toBe(0);
    expect(f[2]).toBe(0);
    expect(Math.abs(f[1] - 0.5 / 0.8)).toBeLessThan(0.01);
  });

  it('top-p drops tokens whose ascending cumulative probability is <= 1 - p', () => {
    // Ascending: 0.05, 0.15, 0.3, 0.5 -> cumulative 0.05, 0.2, 0.5, 1.
    const keep = (topP: number): number[] =>
      frequencies(new Sampler(4, { temperature: 1, topK: 0, topP, repetitionPenalty: 1 }), logitsOf(probs), 4000)
        .map((x, i) => (x > 0 ? i : -1))
        .filter((i) => i >= 0);
    expect(keep(0.8)).toEqual([1, 3]); // 1 - 0.8 = 0.2 removes 0.05 and 0.15 (cumulative 0.2 <= 0.2)
    expect(keep(0.81)).toEqual([1, 2, 3]);
    expect(keep(0.1)).toEqual([1]); // the most likely token always stays
  });

  it("combines top-k and top-p in HF's order (top-k first, top-p on the renormalized rest)", () => {
    // top-k 3 leaves 0.5, 0.3, 0.15 -> 0.526, 0.316, 0.158; top-p 0.8 then drops 0.158 (cumulative 0.158 <= 0.2).
    const f = frequencies(
      new Sampler(4, { temperature: 1, topK: 3, topP: 0.8, repetitionPenalty: 1 }),
      logitsOf(probs),
      20000,
    );
    expect(f[0]).toBe(0);
    expect(f[2]).toBe(0);
    expect(Math.abs(f[1] - 0.5 / 0.8)).toBeLessThan(0.015);
  });
});
