/**
 * The slot KV cache's passes on the CUDA backend (a GPU, else the CUDA emulator): prefill into
 * a free row beside running ones (the prompt's keys at an offset past masked slots), decoding
 * rows of different lengths, a row leaving (the last moved into its place) and compaction give
 * the tokens generate() gives one prompt at a time on the same backend, in f32 and bf16.
 */
import { describe, expect, it } from 'vitest';
import { CudaBackend } from '../src/backend/cuda/cuda-backend.js';
import { generate } from '../src/model/generate.js';
import { Scheduler, type SequenceResult } from '../src/serve/scheduler.js';
import { cudaTarget } from './helpers/cuda-device.js';
import { randomModel, rng, tinyConfig } from './helpers/random-qwen2.js';

const probe = cudaTarget('serve-scheduler-cuda');

describe.skipIf(!probe.available)('continuous batching on the CUDA backend', () => {
  for (const dt of ['f32', 'bf16'] as const) {
    it(`${dt}: joining, leaving and compacted rows decode as each prompt alone`, async () => {
      const be = new CudaBackend({ computeDType: dt });
      const cfg = tinyConfig({ vocab_size: 64, hidden_size: 64, num_attention_heads: 2, num_key_value_heads: 1 });
      const model = randomModel(be, cfg, 3);
      const rand = rng(9);
      const prompts = [5, 9, 2, 7, 4].map((n) => Array.from({ length: n }, () => 1 + Math.floor(rand() * 63)));
      const maxTokens = [8, 3, 10, 6, 9];
      const want = [];
      for (const [i, p] of prompts.entries())
        want.push(
          (await generate(model, [p], { maxNewTokens: maxTokens[i], stopIds: [], padId: 0, batchSize: 1 }))[0].newIds,
        );
      const s = new Scheduler(model, { maxBatch: 3, capacity: 16, maxQueue: 8, stopIds: [], padId: 0 });
      const got: Promise<SequenceResult>[] = [];
      let total = 0;
      const submit = (i: number): void => {
        got[i] = s.submit({
          promptIds: prompts[i],
          maxTokens: maxTokens[i],
          onToken: () => {
            if (++total === 4) submit(3);
            if (total === 9) submit(4);
          },
        });
      };
      for (let i = 0; i < 3; i++) submit(i);
      const results: SequenceResult[] = [];
      for (let i = 0; i < prompts.length; i++) results.push(await got[i]);
      expect(results.map((r) => r.newIds)).toEqual(want);
      expect(s.stats.compactions).toBeGreaterThan(0);
      s.free();
    });
  }
});
