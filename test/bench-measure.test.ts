import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import {
  measureGenerate,
  measureTrain,
  randomModel,
  randomPrompts,
  shapeConfig,
  trainFlops,
} from '../bench/measure.js';

const ATTENTION = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;

describe('trainFlops', () => {
  it('counts Qwen1.5-1.8B by the documented formula', () => {
    // By hand: per layer 4 * 2048^2 (q, k, v, o) + 3 * 2048 * 5504 (MLP) = 50,593,792; 24 layers
    // plus lm_head 151936 * 2048 = 1,525,415,936. LoRA r=16 on q,k,v,o: 24 * 4 * 16 * (2048 + 2048).
    const c = shapeConfig('1.8b');
    const f = trainFlops(c, 512, 16, ATTENTION);
    expect(f.matmulParams).toBe(1_525_415_936);
    expect(f.loraParams).toBe(6_291_456);
    expect(f.perToken).toBe(4 * 1_525_415_936 + 6 * 6_291_456 + 12 * 24 * 512 * 2048);
  });
});

describe('randomPrompts', () => {
  it('makes the same prompts for a seed, lengths within 10% and ids inside the vocabulary', () => {
    const a = randomPrompts(50, 110, 1000, 3);
    expect(randomPrompts(50, 110, 1000, 3)).toEqual(a);
    expect(randomPrompts(50, 110, 1000, 4)).not.toEqual(a);
    for (const p of a) {
      expect(p.length).toBeGreaterThanOrEqual(99);
      expect(p.length).toBeLessThanOrEqual(121);
      expect(p.every((id) => Number.isInteger(id) && id >= 1 && id < 1000)).toBe(true);
    }
    expect(new Set(a.map((p) => p.length)).size).toBeGreaterThan(5);
  });
});

describe('measurements on the tiny shape (CPU)', () => {
  const be = new CpuBackend();
  const config = shapeConfig('tiny');
  const model = randomModel(config, be, 0);

  it('trains: the first loss of a near-uniform random model is about ln(vocabulary)', async () => {
    const r = await measureTrain(model, 2, 16, 2, 1, { r: 4, alpha: 8, dropout: 0.05, targets: [...ATTENTION] }, 0);
    expect(r.tokens).toBe(2 * 16 * 2);
    expect(r.tokens_per_s).toBeGreaterThan(0);
    // One wall time per timed step, together no longer than the timed run.
    expect(r.steps_ms).toHaveLength(2);
    expect(r.steps_ms.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(r.seconds * 1000 + 0.02);
    expect(Math.abs(r.loss_first - Math.log(config.vocabSize))).toBeLessThan(0.1);
    expect(r.peak_kind).toBe('process-rss');
  });

  it('generates exactly the requested new tokens for every prompt', async () => {
    const prompts = randomPrompts(5, 6, config.vocabSize, 1);
    const r = await measureGenerate(model, prompts, 3, 2);
    expect(r.new_tokens).toBe(15);
    expect(r.prompt_tokens).toBe(prompts.reduce((s, p) => s + p.length, 0));
  });
});
