/**
 * generate() on a small random model, checked against a plain recomputation that runs the whole
 * sequence through model.forward for every new token (no KV cache, no batching): greedy tokens,
 * stopping (rows leave the batch and the cache is compacted), sampling reproducibility.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { generate } from '../src/model/generate.js';
import { argmax } from '../src/model/sampling.js';
import { randomModel, rng, tinyConfig } from './helpers/random-qwen2.js';

const be = new CpuBackend();
const cfg = tinyConfig();
const model = randomModel(be, cfg, 7);
const V = cfg.vocabSize;
const rand = rng(21);
const prompts = [5, 9, 1, 7, 3, 12, 2].map((n) => Array.from({ length: n }, () => 1 + Math.floor(rand() * (V - 1))));

/** Greedy continuation by full forward passes over the growing sequence. */
function naiveGreedy(prompt: number[], steps: number, stop: Set<number>): number[] {
  const seq = [...prompt];
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const logits = be.download(model.forward({ batchSize: 1, seqLen: seq.length, inputIds: Int32Array.from(seq) }));
    const id = argmax(logits, (seq.length - 1) * V, V);
    out.push(id);
    seq.push(id);
    if (stop.has(id)) break;
  }
  return out;
}

describe('generate', () => {
  it('batched greedy decoding over the KV cache equals full recomputation, prompt by prompt', async () => {
    const got = await generate(model, prompts, { maxNewTokens: 10, stopIds: [], padId: 0, batchSize: 4 });
    got.forEach((g, i) => {
      expect(g.promptIds).toEqual(prompts[i]);
      expect(g.newIds).toEqual(naiveGreedy(prompts[i], 10, new Set()));
      expect(g.finishReason).toBe('length');
    });
  });

  it('stops rows at their stop id and keeps decoding the others correctly after they leave', async () => {
    // A stop id that several rows produce at different steps.
    const free = await generate(model, prompts, { maxNewTokens: 10, stopIds: [], padId: 0, batchSize: 7 });
    const counts = new Map<number, number>();
    for (const g of free) for (const id of new Set(g.newIds.slice(0, 8))) counts.set(id, (counts.get(id) ?? 0) + 1);
    const stopId = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
    const order: number[] = [];
    const got = await generate(model, prompts, {
      maxNewTokens: 10,
      stopIds: [stopId],
      padId: 0,
      batchSize: 7,
      onResult: (i) => order.push(i),
    });
    let stopped = 0;
    got.forEach((g, i) => {
      const want = naiveGreedy(prompts[i], 10, new Set([stopId]));
      expect(g.newIds).toEqual(want);
      expect(g.finishReason).toBe(want[want.length - 1] === stopId ? 'stop' : 'length');
      if (g.finishReason === 'stop') stopped++;
    });
    expect(stopped).toBeGreaterThan(1);
    expect(stopped).toBeLessThan(prompts.length);
    expect([...order].sort((a, b) => a - b)).toEqual(prompts.map((_, i) => i));
  });

  it('samples reproducibly per seed, whatever the batch size, and reports every token', async () => {
    const sampling = { temperature: 0.9, topK: 20, topP: 0.9, repetitionPenalty: 1.1 };
    const a = await generate(model, prompts, {
      maxNewTokens: 8,
      stopIds: [],
      padId: 0,
      batchSize: 3,
      sampling,
      seed: 5,
    });
    const tokens = prompts.map(() => [] as number[]);
    const b = await generate(model, prompts, {
      maxNewTokens: 8,
      stopIds: [],
      padId: 0,
      batchSize: 7,
      sampling,
      seed: 5,
      onToken: (i, id) => tokens[i].push(id),
    });
    const c = await generate(model, prompts, {
      maxNewTokens: 8,
      stopIds: [],
      padId: 0,
      batchSize: 7,
      sampling,
      seed: 6,
    });
    expect(b.map((g) => g.newIds)).toEqual(a.map((g) => g.newIds));
    expect(tokens).toEqual(b.map((g) => g.newIds));
    expect(c.map((g) => g.newIds)).not.toEqual(a.map((g) => g.newIds));
  });

  it('sampling: rows that stop leave the batch without changing what the others draw', async () => {
    const sampling = { temperature: 1.2, topK: 0, topP: 1, repetitionPenalty: 1 };
    const opts = { maxNewTokens: 10, padId: 0, sampling, seed: 3 };
    const alone = await Promise.all(
      prompts.map(async (p, i) => {
        // Prompt i on its own draws from the generator of prompt i (seed, i) only when it is at index i.
        const single = prompts.map((q, j) => (j === i ? q : [1]));
        return (await generate(model, single, { ...opts, stopIds: [], batchSize: 1 }))[i].newIds;
      }),
    );
    const counts = new Map<number, number>();
    for (const ids of alone) for (const id of new Set(ids.slice(0, 8))) counts.set(id, (counts.get(id) ?? 0) + 1);
    const stopId = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
    const got = await generate(model, prompts, { ...opts, stopIds: [stopId], batchSize: 7 });
    const cut = (ids: number[]): number[] => (ids.includes(stopId) ? ids.slice(0, ids.indexOf(stopId) + 1) : ids);
    expect(got.map((g) => g.newIds)).toEqual(alone.map(cut));
    expect(got.filter((g) => g.finishReason === 'stop').length).toBeGreaterThan(3);
  });

  it('refuses an empty prompt', async () => {
    await expect(
      generate(model, [[1, 2], []], { maxNewTokens: 2, stopIds: [], padId: 0, batchSize: 2 }),
    ).rejects.toThrow(/prompt 2 is empty/);
  });
});
