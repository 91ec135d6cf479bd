/** Merging an adapter into its base checkpoint gives the logits of base + adapter. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { initLora, LoraAdapter } from '../src/lora/lora.js';
import { mergeLora } from '../src/lora/merge.js';
import { readPeftAdapter } from '../src/lora/peft.js';
import { expectQwen2Tensors, saveCheckpoint } from '../src/model/checkpoint.js';
import { loadModelConfig } from '../src/model/config.js';
import type { TokenBatch } from '../src/model/qwen2-batch.js';
import { PROJECTIONS } from '../src/model/qwen2-linear.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { f32Tensor, toF32 } from '../src/tensor/tensor.js';
import {
  adapterDir,
  haveTinyFixtures,
  maxAbsDiff,
  MISSING_FIXTURES,
  modelDir,
  readReference,
  VARIANTS,
} from './helpers/tiny-fixture.js';
import { randomArray, randomWeights, rng, tinyConfig } from './helpers/random-qwen2.js';

const be = new CpuBackend();

if (!haveTinyFixtures) console.warn(`lora-merge: skipping HF fixture merge: ${MISSING_FIXTURES}`);

describe('mergeLora', () => {
  it('writes a checkpoint whose logits equal base + adapter (tied embeddings, rsLoRA, every module)', () => {
    const cfg = tinyConfig({ tie_word_embeddings: true, num_key_value_heads: 4 });
    const baseDir = mkdtempSync(join(tmpdir(), 'sqlora-base-'));
    const weights = randomWeights(cfg, 8);
    const shapes = new Map(expectQwen2Tensors(cfg).map((s) => [s.name, s.shape]));
    saveCheckpoint(
      baseDir,
      cfg,
      Object.fromEntries([...weights].map(([n, w]) => [n, f32Tensor(shapes.get(n) as number[], w)])),
    );
    const host = initLora(cfg, { r: 4, alpha: 8, dropout: 0, targetModules: [...PROJECTIONS], useRslora: true }, 1);
    const rand = rng(2);
    for (const [name, t] of Object.entries(host.tensors)) {
      if (name.includes('lora_B'))
        host.tensors[name] = f32Tensor(t.shape, Float32Array.from(randomArray(toF32(t).length, 0.3, rand)));
    }
    const mergedDir = mkdtempSync(join(tmpdir(), 'sqlora-merged-'));
    mergeLora(baseDir, host, mergedDir);

    const batch: TokenBatch = {
      batchSize: 2,
      seqLen: 4,
      inputIds: Int32Array.from([1, 2, 3, 4, 0, 5, 6, 7]),
      attentionMask: Int32Array.from([1, 1, 1, 1, 0, 1, 1, 1]),
    };
    const base = Qwen2Model.load(baseDir, be);
    base.setLora(LoraAdapter.upload(be, cfg, host));
    const unmerged = be.download(base.forward(batch));
    base.setLora(null);
    const plain = be.download(base.forward(batch));
    const merged = be.download(Qwen2Model.load(mergedDir, be).forward(batch));
    expect(maxAbsDiff(merged, unmerged)).toBeLessThan(1e-4);
    expect(maxAbsDiff(merged, plain)).toBeGreaterThan(1e-2);
  });
});

describe.skipIf(!haveTinyFixtures)('mergeLora on the HF fixtures', () => {
  for (const v of VARIANTS) {
    it(`${v}: merged PEFT adapter reproduces PEFT's LoRA logits`, () => {
      const ref = readReference(v);
      const out = mkdtempSync(join(tmpdir(), 'sqlora-merged-'));
      mergeLora(modelDir(v), readPeftAdapter(adapterDir(v), loadModelConfig(modelDir(v))), out);
      const [B, T] = ref.shape('right.input_ids');
      const mask = ref.ints('right.attention_mask');
      const logits = be.download(
        Qwen2Model.load(out, be).forward({
          batchSize: B,
          seqLen: T,
          inputIds: ref.ints('right.input_ids'),
          attentionMask: mask,
        }),
      );
      const V = logits.length / (B * T);
      expect(maxAbsDiff(logits, ref.floats('right.lora_logits'), (i) => mask[Math.floor(i / V)] === 1)).toBeLessThan(
        1e-4,
      );
    });
  }
});
