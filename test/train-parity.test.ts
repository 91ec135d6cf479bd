/**
 * 20 optimizer steps of trainSft on the tiny HF model against a plain PyTorch + PEFT loop on the
 * same micro-batches (tools/reference/train_reference.py): per-step loss, learning rate and
 * gradient norm, and the final LoRA weights.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { DataOrder } from '../src/train/batching.js';
import { planSteps } from '../src/train/schedule.js';
import {
  loadParityModel,
  parityExamples,
  readParityInput,
  relDiff as rel,
  runParityTraining,
  type ParityExpected,
} from './helpers/train-parity.js';

const DIR = join(import.meta.dirname, 'fixtures', 'train');
const EXPECTED = join(DIR, 'expected.json');
const MISSING = `${EXPECTED} is missing: run \`python3 tools/reference/train_reference.py test/fixtures/train/parity-input.json OUT\` (torch, transformers, peft) and commit OUT/expected.json there`;

const input = readParityInput(join(DIR, 'parity-input.json'));
const h = input.hyperparameters;
const root = join(import.meta.dirname, '..');
const examples = parityExamples(input);

describe('SFT parity with PyTorch + PEFT', () => {
  it('the fixture lists the micro-batches trainSft visits', () => {
    const plan = planSteps({
      examples: examples.length,
      batchSize: h.batch_size,
      gradAccum: h.grad_accum,
      epochs: 1,
      maxSteps: h.max_steps,
    });
    const order = new DataOrder(
      examples.map((e) => e.ids.length),
      plan,
      h.batch_size,
      h.grad_accum,
      { seed: h.seed, groupByLength: h.group_by_length },
    );
    expect(
      input.steps,
      'the data order changed: rerun tools/fixtures/make-train-parity.ts and the reference script',
    ).toEqual(input.steps.map((_, s) => order.microBatches(s)));
  });

  it("gives the reference's per-step loss, lr and grad norm, and its final LoRA weights", async () => {
    if (!existsSync(EXPECTED)) throw new Error(MISSING);
    const expected = JSON.parse(readFileSync(EXPECTED, 'utf8')) as ParityExpected;
    const { model, adapter } = loadParityModel(new CpuBackend(), input, root);
    const { records, warmupSteps } = await runParityTraining(model, adapter, input);
    expect(warmupSteps).toBe(expected.warmup_steps);
    expect(records.length).toBe(expected.steps.length);
    expected.steps.forEach((want, i) => {
      const got = records[i];
      expect(rel(got.loss, want.loss), `step ${want.step} loss ${got.loss} vs ${want.loss}`).toBeLessThan(1e-4);
      expect(Math.abs(got.lr - want.lr), `step ${want.step} lr`).toBeLessThan(1e-12);
      expect(
        rel(got.grad_norm, want.grad_norm),
        `step ${want.step} grad norm ${got.grad_norm} vs ${want.grad_norm}`,
      ).toBeLessThan(1e-4);
    });
    const weights = adapter.toHost().tensors;
    for (const [name, want] of Object.entries(expected.final_lora)) {
      const w = weights[name]?.data as Float32Array | undefined;
      expect(w, `no ${name} in our adapter`).toBeDefined();
      const norm = Math.hypot(...w!);
      expect(rel(norm, want.norm), `${name} norm ${norm} vs ${want.norm}`).toBeLessThan(1e-3);
    }
    expect(Object.keys(expected.final_lora).length).toBe(Object.keys(weights).length);
  });
});
