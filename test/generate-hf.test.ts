/**
 * Greedy generation against HF transformers' generate() on the tiny models of
 * test/fixtures/tiny/ (tools/reference/generate_reference.py): 24 prompts batched with left
 * padding, with and without an eos token that stops rows at different steps, and with a
 * repetition penalty.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { generate } from '../src/model/generate.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { GREEDY } from '../src/model/sampling.js';
import { LoraAdapter } from '../src/lora/lora.js';
import { readPeftAdapter } from '../src/lora/peft.js';
import {
  adapterDir,
  haveTinyFixtures,
  MISSING_FIXTURES,
  modelDir,
  readReference,
  VARIANTS,
} from './helpers/tiny-fixture.js';

const DIR = join(import.meta.dirname, 'fixtures', 'generate');
const EXPECTED = join(DIR, 'expected.json');
const MISSING = `${EXPECTED} is missing: run \`python3 tools/reference/generate_reference.py test/fixtures/generate/prompts.json test/fixtures/tiny OUT\` (torch, transformers) and commit OUT/expected.json there`;

interface Spec {
  batch_size: number;
  pad_id: number;
  max_new_tokens: number;
  repetition_penalty: number;
  prompts: number[][];
}

interface Expected {
  variants: Record<string, { eos_id: number; greedy: number[][]; greedy_eos: number[][]; greedy_penalty: number[][] }>;
}

const spec = JSON.parse(readFileSync(join(DIR, 'prompts.json'), 'utf8')) as Spec;
const be = new CpuBackend();

describe('generate() against HF generate()', () => {
  it('has the reference outputs', () => {
    if (!haveTinyFixtures) throw new Error(MISSING_FIXTURES);
    if (!existsSync(EXPECTED)) throw new Error(MISSING);
  });

  for (const v of VARIANTS) {
    describe.skipIf(!haveTinyFixtures)(v, () => {
      const expected = existsSync(EXPECTED)
        ? (JSON.parse(readFileSync(EXPECTED, 'utf8')) as Expected).variants[v]
        : null;
      const model = haveTinyFixtures ? Qwen2Model.load(modelDir(v), be) : null;
      const base = { maxNewTokens: spec.max_new_tokens, padId: spec.pad_id, batchSize: spec.batch_size };
      const newIds = async (stopIds: number[], repetitionPenalty = 1): Promise<number[][]> =>
        (await generate(model!, spec.prompts, { ...base, stopIds, sampling: { ...GREEDY, repetitionPenalty } })).map(
          (g) => g.newIds,
        );

      it("reproduces tiny_model.py's HF greedy sequences, with and without its LoRA adapter", async () => {
        const ref = readReference(v);
        const [B, T] = ref.shape('left.input_ids');
        const ids = ref.ints('left.input_ids'),
          mask = ref.ints('left.attention_mask');
        const prompts = Array.from({ length: B }, (_, b) =>
          [...ids.subarray(b * T, (b + 1) * T)].filter((_, t) => mask[b * T + t] === 1),
        );
        const adapter = LoraAdapter.upload(be, model!.config, readPeftAdapter(adapterDir(v), model!.config));
        for (const [lora, key] of [
          [null, 'sequences'],
          [adapter, 'lora_sequences'],
        ] as const) {
          model!.setLora(lora);
          const seqs = ref.ints(`generate.${key}`);
          const W = ref.shape(`generate.${key}`)[1];
          const got = await generate(model!, prompts, { maxNewTokens: W - T, stopIds: [], padId: 0, batchSize: 2 });
          got.forEach((g, b) => expect(g.newIds).toEqual([...seqs.subarray(b * W + T, (b + 1) * W)]));
        }
        model!.setLora(null);
        adapter.free();
      });

      const withExpected = existsSync(EXPECTED) ? it : it.skip;
      withExpected(`greedy tokens of all ${spec.prompts.length} prompts equal HF's`, async () => {
        expect(await newIds([])).toEqual(expected!.greedy);
      });

      withExpected('stops each row at its eos (included) as HF does', async () => {
        const got = await newIds([expected!.eos_id]);
        expect(got).toEqual(expected!.greedy_eos);
        expect(got.some((ids) => ids.length < spec.max_new_tokens)).toBe(true);
      });

      withExpected('applies the repetition penalty as HF does', async () => {
        expect(await newIds([], spec.repetition_penalty)).toEqual(expected!.greedy_penalty);
      });
    });
  }
});
