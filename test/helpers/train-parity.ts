/**
 * The training parity run shared by test/train-parity.test.ts (tiny model, CPU) and
 * tools/gpu-check/parity-1p8b.ts (Qwen1.5-1.8B's shape, GPU): an input written by
 * tools/fixtures/make-train-parity.ts or parity-1p8b.ts prepare — model, initial adapter,
 * hyperparameters, examples and the micro-batches of every step — and trainSft run on it, to be
 * compared with tools/reference/train_reference.py's expected.json.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Backend } from '../../src/backend/backend.js';
import { LoraAdapter } from '../../src/lora/lora.js';
import { readPeftAdapter } from '../../src/lora/peft.js';
import { IGNORE_INDEX } from '../../src/model/qwen2-batch.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import { fingerprintExamples, type TrainExample } from '../../src/train/batching.js';
import type { TrainRecord } from '../../src/train/metrics.js';
import { trainSft } from '../../src/train/sft.js';

export interface ParityInput {
  /** Paths relative to the repository root, or absolute. */
  model: string;
  init_adapter: string;
  hyperparameters: {
    batch_size: number;
    grad_accum: number;
    max_steps: number;
    total_steps: number;
    lr: number;
    warmup_ratio: number;
    weight_decay: number;
    max_grad_norm: number;
    seed: number;
    group_by_length: boolean;
    pad_id: number;
  };
  examples: { input_ids: number[]; labels: number[] }[];
  steps: number[][][];
  /** Optional: logits of one sequence at these positions, before training. */
  probe?: { ids: number[]; positions: number[] };
}

export interface ParityExpected {
  warmup_steps: number;
  steps: { step: number; loss: number; lr: number; grad_norm: number }[];
  final_lora: Record<string, { norm: number; first: number[] }>;
  /** With a probe: the loss of the probe sequence; its logits rows are in probe-logits.bin (f32).
   * A bf16 run also has them from an f32 copy of the base: loss_f32 and probe-logits-f32.bin. */
  probe?: { loss: number; loss_f32?: number; positions: number[]; vocab: number };
}

export function readParityInput(file: string): ParityInput {
  return JSON.parse(readFileSync(file, 'utf8')) as ParityInput;
}

export function parityExamples(input: ParityInput): TrainExample[] {
  return input.examples.map((e) => ({
    ids: Int32Array.from(e.input_ids),
    labels: Int32Array.from(e.labels),
    targets: e.labels.slice(1).filter((l) => l !== IGNORE_INDEX).length,
  }));
}

/** The input's model (dense) with its initial adapter attached, on `be`. */
export function loadParityModel(
  be: Backend,
  input: ParityInput,
  root: string,
): { model: Qwen2Model; adapter: LoraAdapter } {
  const model = Qwen2Model.load(resolve(root, input.model), be);
  const adapter = LoraAdapter.upload(
    be,
    model.config,
    readPeftAdapter(resolve(root, input.init_adapter), model.config),
  );
  model.setLora(adapter);
  return { model, adapter };
}

/** trainSft over the input's steps; returns each step's record and the warmup it planned. */
export async function runParityTraining(
  model: Qwen2Model,
  adapter: LoraAdapter,
  input: ParityInput,
): Promise<{ records: TrainRecord[]; warmupSteps: number }> {
  const h = input.hyperparameters;
  const examples = parityExamples(input);
  const records: TrainRecord[] = [];
  const result = await trainSft(
    model,
    adapter,
    { train: examples, eval: null, fingerprint: fingerprintExamples(examples) },
    {
      epochs: 1,
      maxSteps: h.max_steps,
      batchSize: h.batch_size,
      gradAccum: h.grad_accum,
      lr: h.lr,
      warmupRatio: h.warmup_ratio,
      weightDecay: h.weight_decay,
      maxGradNorm: h.max_grad_norm,
      seed: h.seed,
      groupByLength: h.group_by_length,
      evalSteps: 0,
      evalBatchSize: 4,
      saveSteps: 0,
      saveTotalLimit: 0,
      padId: h.pad_id,
      outDir: mkdtempSync(join(tmpdir(), 'sqlora-parity-')),
      baseModel: null,
      settings: {},
    },
    { onStep: (r) => records.push(r) },
  );
  return { records, warmupSteps: result.warmupSteps };
}

/** |a - b| / |b| (b not near zero). */
export const relDiff = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
