import { describe, expect, it } from 'vitest';
import {
  detectableDifference,
  mcnemarExact,
  pairedBootstrap,
  quantileSorted,
  questionsNeeded,
  verdict,
} from '../src/eval/mmluStats.js';

/** Paired outcomes: `both` right by both, `baseOnly`, `adapterOnly`, the rest wrong by both. */
function table(n: number, both: number, baseOnly: number, adapterOnly: number): [boolean[], boolean[]] {
  const before: boolean[] = [],
    after: boolean[] = [];
  const push = (b: boolean, a: boolean, k: number): void => {
    for (let i = 0; i < k; i++) {
      before.push(b);
      after.push(a);
    }
  };
  push(true, true, both);
  push(true, false, baseOnly);
  push(false, true, adapterOnly);
  push(false, false, n - both - baseOnly - adapterOnly);
  return [before, after];
}

describe("McNemar's exact test", () => {
  // By hand: 2 * sum_{i<=k} C(b+c, i) / 2^(b+c); the last value from Python's exact fractions.
  it.each([
    [1, 9, 22 / 1024],
    [5, 15, (2 * (1 + 20 + 190 + 1140 + 4845 + 15504)) / 2 ** 20],
    [9, 1, 22 / 1024],
    [0, 0, 1],
    [3, 4, 1],
    [0, 6, 2 / 64],
    [100, 150, 0.001883300935076157],
  ])('b = %i, c = %i -> p = %f', (b, c, p) => {
    expect(mcnemarExact(b, c)).toBeCloseTo(p, 14);
  });
});

describe('paired bootstrap', () => {
  it("interpolates quantiles as numpy's percentile does", () => {
    expect(quantileSorted([1, 2, 3, 4], 0.25)).toBe(1.75);
    expect(quantileSorted([1, 2, 3, 4], 0.975)).toBeCloseTo(3.925, 12);
  });

  it('is 0 wide when the two models agree on every question, and repeats with its seed', () => {
    const [b, a] = table(200, 50, 0, 0);
    expect(pairedBootstrap(b, a)).toMatchObject({ low: 0, high: 0 });
    const [b2, a2] = table(300, 60, 30, 20);
    expect(pairedBootstrap(b2, a2, 2000, 5)).toEqual(pairedBootstrap(b2, a2, 2000, 5));
    expect(pairedBootstrap(b2, a2, 2000, 5)).not.toEqual(pairedBootstrap(b2, a2, 2000, 6));
  });

  it('matches the paired normal interval on a large table: mean(d) +- 1.96 sqrt(var(d) / n)', () => {
    const n = 2000;
    const [b, a] = table(n, 600, 150, 100);
    const mean = (100 - 150) / n;
    const variance = (100 + 150) / n - mean * mean;
    const half = 1.959964 * Math.sqrt(variance / n);
    const ci = pairedBootstrap(b, a);
    expect(Math.abs(ci.low - (mean - half))).toBeLessThan(0.002);
    expect(Math.abs(ci.high - (mean + half))).toBeLessThan(0.002);
  });
});

describe('sample size', () => {
  it("needs ~318 questions for the reference workflow's 25% vs 16% (Connor's formula, by hand: 317.4)", () => {
    expect(questionsNeeded(0.25, 0.16)).toBe(318);
    // With fewer disagreements than independent errors give, fewer questions are needed.
    expect(questionsNeeded(0.25, 0.16, 0.15)).toBe(
      Math.ceil((1.959964 * Math.sqrt(0.15) + 0.841621 * Math.sqrt(0.15 - 0.0081)) ** 2 / 0.0081),
    );
  });

  it('the detectable difference is where the needed count equals the questions at hand', () => {
    const d = detectableDifference(318, 0.33)!;
    expect(d).toBeGreaterThan(0.0895);
    expect(d).toBeLessThan(0.0905);
    expect(detectableDifference(100, 0)).toBeNull();
  });
});

describe('verdict', () => {
  it('calls a drop with p < 0.05 significant and says so in words', () => {
    const [b, a] = table(1000, 200, 60, 25);
    const v = verdict(b, a);
    expect(v.mcnemar).toEqual({ base_only: 60, adapter_only: 25, p_value: mcnemarExact(60, 25) });
    expect(v.mcnemar.p_value).toBeLessThan(0.001);
    expect(v.significant).toBe(true);
    expect(v.base_accuracy).toBe(0.26);
    expect(v.adapter_accuracy).toBe(0.225);
    expect(v.line).toMatch(
      /^significant drop of 3\.5 points: 26\.0% -> 22\.5% on 1000 questions \(difference -3\.5, 95% CI \[-5\.\d, -1\.\d\], McNemar p = /,
    );
  });

  it("does not call the reference workflow's 50-question 25% -> 16% significant", () => {
    // 12 right before, 8 after: 8 questions only the base got right, 4 only the adapter.
    const [b, a] = table(50, 4, 8, 4);
    const v = verdict(b, a);
    expect(v.base_accuracy).toBe(0.24);
    expect(v.adapter_accuracy).toBe(0.16);
    expect(v.mcnemar.p_value).toBeCloseTo(mcnemarExact(8, 4), 15);
    expect(v.significant).toBe(false);
    expect(v.line.startsWith('no significant change: 24.0% -> 16.0% on 50 questions')).toBe(true);
  });
});
