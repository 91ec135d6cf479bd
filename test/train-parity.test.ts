/**
 * 20 optimizer steps of trainSft on the tiny HF model against a plain PyTorch + PEFT loop on the
 * same micro-batches (tools/reference/train_reference.py): per-step loss, learning rate and
 * gradient norm, and the final LoRA weights.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { LoraAdapter } from '../src/lora/lora.js';
import { readPeftAdapter } from '../src/lora/peft.js';
import { IGNORE_INDEX } from '../src/model/qwen2-batch.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { DataOrder, fingerprintExamples, type TrainExample } from '../src/train/batching.js';
import type { TrainRecord } from '../src/train/metrics.js';
import { planSteps } from '../src/train/schedule.js';
import { trainSft } from '../src/train/sft.js';

const DIR = join(import.meta.dirname, 'fixtures', 'train');
const EXPECTED = join(DIR, 'expected.json');
const MISSING = `${EXPECTED} is missing: run \`python3 tools/reference/train_reference.py test/fixtures/train/parity-input.json OUT\` (torch, transformers, peft) and commit OUT/expected.json there`;

interface ParityInput {
  model: string;
  init_adapter: string;
  hyperparameters: {
    batch_size: number; grad_accum: number; max_steps: number; total_steps: number; lr: number; warmup_ratio: number; weight_decay: number;
    max_grad_norm: number; seed: number; group_by_length: boolean; pad_id: number;
  };
  examples: { input_ids: number[]; labels: number[] }[];
  steps: number[][][];
}

interface Expected {
  warmup_steps: number;
  steps: { step: number; loss: number; lr: number; grad_norm: number }[];
  final_lora: Record<string, { norm: number; first: number[] }>;
}

const input = JSON.parse(readFileSync(join(DIR, 'parity-input.json'), 'utf8')) as ParityInput;
const h = input.hyperparameters;
const root = join(import.meta.dirname, '..');
const examples: TrainExample[] = input.examples.map((e) => ({
  ids: Int32Array.from(e.input_ids),
  labels: Int32Array.from(e.labels),
  targets: e.labels.slice(1).filter((l) => l !== IGNORE_INDEX).length,
}));

describe('SFT parity with PyTorch + PEFT', () => {
  it('the fixture lists the micro-batches trainSft visits', () => {
    const plan = planSteps({ examples: examples.length, batchSize: h.batch_size, gradAccum: h.grad_accum, epochs: 1, maxSteps: h.max_steps });
    const order = new DataOrder(examples.map((e) => e.ids.length), plan, h.batch_size, h.grad_accum, { seed: h.seed, groupByLength: h.group_by_length });
    expect(input.steps, 'the data order changed: rerun tools/fixtures/make-train-parity.ts and the reference script').toEqual(input.steps.map((_, s) => order.microBatches(s)));
  });

  it('gives the reference\'s per-step loss, lr and grad norm, and its final LoRA weights', async () => {
    if (!existsSync(EXPECTED)) throw new Error(MISSING);
    const expected = JSON.parse(readFileSync(EXPECTED, 'utf8')) as Expected;
    const be = new CpuBackend();
    const model = Qwen2Model.load(join(root, input.model), be);
    const adapter = LoraAdapter.upload(be, model.config, readPeftAdapter(join(root, input.init_adapter), model.config));
    model.setLora(adapter);
    const records: TrainRecord[] = [];
    const result = await trainSft(model, adapter, { train: examples, eval: null, fingerprint: fingerprintExamples(examples) }, {
      epochs: 1, maxSteps: h.max_steps, batchSize: h.batch_size, gradAccum: h.grad_accum, lr: h.lr, warmupRatio: h.warmup_ratio,
      weightDecay: h.weight_decay, maxGradNorm: h.max_grad_norm, seed: h.seed, groupByLength: h.group_by_length,
      evalSteps: 0, evalBatchSize: 4, saveSteps: 0, saveTotalLimit: 0, padId: h.pad_id, outDir: mkdtempSync(join(tmpdir(), 'sqlora-parity-')), baseModel: null, settings: {},
    }, { onStep: (r) => records.push(r) });
    expect(result.warmupSteps).toBe(expected.warmup_steps);
    expect(records.length).toBe(expected.steps.length);
    const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
    expected.steps.forEach((want, i) => {
      const got = records[i];
      expect(rel(got.loss, want.loss), `step ${want.step} loss ${got.loss} vs ${want.loss}`).toBeLessThan(1e-4);
      expect(Math.abs(got.lr - want.lr), `step ${want.step} lr`).toBeLessThan(1e-12);
      expect(rel(got.grad_norm, want.grad_norm), `step ${want.step} grad norm ${got.grad_norm} vs ${want.grad_norm}`).toBeLessThan(1e-4);
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
