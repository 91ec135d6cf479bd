/**
 * The continuous-batching scheduler on the CPU against generate() run one prompt at a time:
 * requests submitted together, joining while others decode, finishing early (stop ids, a stop
 * the caller sees, max tokens) and cancelled, over a KV cache small enough that its rows must
 * be compacted, give the same tokens as each request alone.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { generate } from '../src/model/generate.js';
import { QueueFullError, RequestError, Scheduler, type SequenceResult } from '../src/serve/scheduler.js';
import { randomModel, rng, tinyConfig } from './helpers/random-qwen2.js';

const be = new CpuBackend();
const cfg = tinyConfig({ vocab_size: 64 });
const model = randomModel(be, cfg, 11);
const rand = rng(5);
const prompts = [6, 11, 3, 9, 1, 14, 7, 5, 12, 4].map((n) =>
  Array.from({ length: n }, () => 1 + Math.floor(rand() * (cfg.vocabSize - 1))),
);

async function alone(prompt: number[], maxTokens: number, stopIds: number[] = [], seed?: number, temperature = 0) {
  const sampling = { temperature, topP: temperature > 0 ? 0.9 : 1, topK: 0, repetitionPenalty: 1 };
  const [g] = await generate(model, [prompt], {
    maxNewTokens: maxTokens,
    stopIds,
    padId: 0,
    batchSize: 1,
    sampling,
    seed,
  });
  return g.newIds;
}

describe('continuous batching scheduler', () => {
  it('answers concurrent, joining and early-finishing greedy requests exactly as one at a time, through compactions', async () => {
    const maxTokens = [12, 5, 16, 9, 14, 3, 10, 16, 7, 11];
    // A stop id some answers reach early.
    const free = await Promise.all(prompts.map((p, i) => alone(p, maxTokens[i])));
    const counts = new Map<number, number>();
    for (const ids of free) for (const id of new Set(ids.slice(1, 8))) counts.set(id, (counts.get(id) ?? 0) + 1);
    const stopId = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
    const want = await Promise.all(prompts.map((p, i) => alone(p, maxTokens[i], [stopId])));

    // 4 rows of 24 slots: 10 requests of up to 21 tokens cannot run without packing the rows.
    const s = new Scheduler(model, { maxBatch: 4, capacity: 24, maxQueue: 16, stopIds: [stopId], padId: 0 });
    const got: Promise<SequenceResult>[] = [];
    let total = 0;
    let nextJoin = 6;
    const submit = (i: number): void => {
      got[i] = s.submit({
        promptIds: prompts[i],
        maxTokens: maxTokens[i],
        // Requests 6..9 arrive while the others decode (after every 5th token).
        onToken: () => {
          if (++total % 5 === 0 && nextJoin < prompts.length) submit(nextJoin++);
        },
      });
    };
    for (let i = 0; i < 6; i++) submit(i);
    // Requests submitted later are awaited once they exist.
    const results: SequenceResult[] = [];
    for (let i = 0; i < prompts.length; i++) results.push(await got[i]);
    results.forEach((r, i) => {
      expect(r.newIds, `request ${i}`).toEqual(want[i]);
      expect(r.finishReason).toBe(want[i][want[i].length - 1] === stopId ? 'stop' : 'length');
    });
    const stopped = results.filter((r) => r.finishReason === 'stop').length;
    expect(stopped).toBeGreaterThan(0);
    expect(stopped).toBeLessThan(prompts.length);
    expect(nextJoin).toBe(prompts.length);
    const stats = s.stats;
    expect(stats.compactions).toBeGreaterThan(0);
    expect(stats.running + stats.waiting).toBe(0);
    // Fewer decoding steps than tokens: rows were decoded together.
    expect(stats.steps).toBeLessThan(results.reduce((a, r) => a + r.newIds.length, 0) / 2);
    s.free();
  });

  it('samples per request with its own settings and seed, as generate() does for one prompt', async () => {
    const s = new Scheduler(model, { maxBatch: 3, capacity: 40, maxQueue: 8, stopIds: [], padId: 0 });
    const reqs = prompts.slice(0, 5).map((p, i) => ({
      promptIds: p,
      maxTokens: 8,
      seed: 100 + i,
      sampling: i % 2 ? { temperature: 0.8 + i / 10, topP: 0.9 } : { temperature: 0, topP: 1 },
    }));
    const got = await Promise.all(reqs.map((r) => s.submit(r)));
    for (const [i, r] of reqs.entries())
      expect(got[i].newIds, `request ${i}`).toEqual(
        await alone(r.promptIds, 8, [], r.seed, r.sampling.temperature > 0 ? r.sampling.temperature : 0),
      );
    s.free();
  });

  it('ends a sequence where the caller sees a stop, and frees a cancelled row for the next request', async () => {
    const s = new Scheduler(model, { maxBatch: 2, capacity: 48, maxQueue: 8, stopIds: [], padId: 0 });
    const ac = new AbortController();
    let seen = 0;
    const cancelled = s.submit({
      promptIds: prompts[1],
      maxTokens: 30,
      signal: ac.signal,
      onToken: () => void (++seen === 3 && ac.abort()),
    });
    let own = 0;
    const stopAt = s.submit({ promptIds: prompts[2], maxTokens: 30, onToken: () => ++own === 5 });
    const waiting = s.submit({ promptIds: prompts[3], maxTokens: 6 });
    expect(s.stats.waiting).toBe(3);
    const [c, st, w] = await Promise.all([cancelled, stopAt, waiting]);
    expect(c.finishReason).toBe('cancelled');
    expect(c.newIds.length).toBeLessThanOrEqual(4);
    expect(c.newIds).toEqual((await alone(prompts[1], 30)).slice(0, c.newIds.length));
    expect(st.finishReason).toBe('stop');
    expect(st.newIds).toEqual((await alone(prompts[2], 30)).slice(0, 5));
    expect(w.newIds).toEqual(await alone(prompts[3], 6));
    // A request aborted while queued leaves the queue without running.
    const ac2 = new AbortController();
    const busy = s.submit({ promptIds: prompts[0], maxTokens: 10 });
    const busy2 = s.submit({ promptIds: prompts[4], maxTokens: 10 });
    const queued = s.submit({ promptIds: prompts[5], maxTokens: 10, signal: ac2.signal });
    ac2.abort();
    expect((await queued).finishReason).toBe('cancelled');
    expect((await queued).newIds).toEqual([]);
    await Promise.all([busy, busy2]);
    s.free();
  });

  it('refuses requests beyond the queue, too long for a row, or after close', async () => {
    const s = new Scheduler(model, { maxBatch: 1, capacity: 20, maxQueue: 2, stopIds: [], padId: 0 });
    const a = s.submit({ promptIds: prompts[0], maxTokens: 4 });
    const b = s.submit({ promptIds: prompts[2], maxTokens: 4 });
    expect(() => s.submit({ promptIds: prompts[3], maxTokens: 4 })).toThrow(QueueFullError);
    expect(() => s.submit({ promptIds: prompts[5], maxTokens: 7 })).toThrow(RequestError);
    expect(() => s.submit({ promptIds: [], maxTokens: 4 })).toThrow(/empty/);
    const drained = s.drain(10_000);
    expect(() => s.submit({ promptIds: prompts[0], maxTokens: 4 })).toThrow(/shutting down/);
    await drained;
    expect((await a).newIds).toEqual(await alone(prompts[0], 4));
    expect((await b).newIds).toEqual(await alone(prompts[2], 4));
    s.free();
  });

  it('fails the batch whose pass fails (here a callback throws), then serves on', async () => {
    const s = new Scheduler(model, { maxBatch: 2, capacity: 40, maxQueue: 8, stopIds: [], padId: 0 });
    expect(() => s.submit({ promptIds: [1, cfg.vocabSize], maxTokens: 2 })).toThrow(/outside the vocabulary/);
    const bad = s.submit({
      promptIds: prompts[0],
      maxTokens: 10,
      onToken: () => {
        throw new Error('callback failed');
      },
    });
    const neighbour = s.submit({ promptIds: prompts[1], maxTokens: 10 });
    await expect(bad).rejects.toThrow('callback failed');
    await expect(neighbour).rejects.toThrow('callback failed');
    expect(s.stats.running).toBe(0);
    expect((await s.submit({ promptIds: prompts[2], maxTokens: 6 })).newIds).toEqual(await alone(prompts[2], 6));
    s.free();
  });

  it('drain cancels what is still running after its time limit', async () => {
    const s = new Scheduler(model, { maxBatch: 2, capacity: 500, maxQueue: 2, stopIds: [], padId: 0 });
    const long = s.submit({ promptIds: prompts[0], maxTokens: 480 });
    await new Promise((r) => setTimeout(r, 20));
    await s.drain(30);
    const r = await long;
    expect(r.finishReason).toBe('cancelled');
    expect(r.newIds.length).toBeLessThan(480);
    s.free();
  });
});
