/**
 * QLoRA training for library users: prompt records (train.jsonl / eval.jsonl from `prepare`) and
 * a loaded model -> a LoRA adapter, with the reference workflow's settings by default, progress
 * through callbacks, and an AbortSignal that stops after the current step with a checkpoint.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate } from '../data/chatTemplate.js';
import { initLora, LoraAdapter, type LoraConfig } from '../lora/lora.js';
import { writePeftAdapter } from '../lora/peft.js';
import { fingerprintExamples } from '../train/batching.js';
import type { EvalRecord, TrainRecord } from '../train/metrics.js';
import type { StepPlan } from '../train/schedule.js';
import { trainSft, type SftConfig, type SftResult } from '../train/sft.js';
import type { LoadedModel } from './load.js';
import { endOfTurnIds, tokenizeRecords, type TrainRecord as RecordToTrain } from './train-data.js';

export interface TrainAdapterOptions {
  train: readonly RecordToTrain[];
  eval?: readonly RecordToTrain[];
  /** Checkpoints go here, and the final adapter to <outDir>/adapter. */
  outDir: string;
  /** Default r 16, alpha 32, dropout 0.05 on q, k, v, o. */
  lora?: Partial<LoraConfig>;
  /** Default 512 tokens. */
  maxLength?: number;
  /** Default: the reference workflow (5 epochs, batch 8 x 2, lr 2e-4, 5% warmup, weight decay 0.01). */
  config?: Partial<Omit<SftConfig, 'outDir' | 'padId' | 'baseModel' | 'settings'>>;
  /** Aborting stops the run after the current step and writes a checkpoint (status "interrupted"). */
  signal?: AbortSignal;
  onStep?(record: TrainRecord, plan: StepPlan): void;
  onEval?(record: EvalRecord): void;
}

export interface TrainAdapterResult extends SftResult {
  adapter: LoraAdapter;
  /** The PEFT folder written at the end (null when interrupted: the checkpoint has the adapter). */
  adapterDir: string | null;
}

export const DEFAULT_LORA: LoraConfig = {
  r: 16,
  alpha: 32,
  dropout: 0.05,
  targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
  useRslora: false,
};

export async function trainAdapter(loaded: LoadedModel, opts: TrainAdapterOptions): Promise<TrainAdapterResult> {
  const { model, tokenizer } = loaded;
  const exampleOpts = { maxLength: opts.maxLength ?? 512, lossOnPrompt: false, endOfTurnIds: endOfTurnIds(tokenizer) };
  let chatTemplate: ChatTemplate | undefined;
  const template = () => (chatTemplate ??= ChatTemplate.fromModelDir(loaded.dir));
  const train = tokenizeRecords(opts.train, tokenizer, exampleOpts, template).examples;
  const evalExamples = opts.eval ? tokenizeRecords(opts.eval, tokenizer, exampleOpts, template).examples : null;
  const cfg: SftConfig = {
    epochs: 5,
    maxSteps: 0,
    batchSize: 8,
    gradAccum: 2,
    lr: 2e-4,
    warmupRatio: 0.05,
    weightDecay: 0.01,
    maxGradNorm: 1,
    seed: 42,
    groupByLength: true,
    evalSteps: 0,
    evalBatchSize: 8,
    saveSteps: 0,
    saveTotalLimit: 0,
    ...opts.config,
    padId: tokenizer.special.eos ?? loaded.padId,
    outDir: opts.outDir,
    baseModel: loaded.source,
    settings: {},
  };
  const lora = { ...DEFAULT_LORA, ...opts.lora };
  const adapter = LoraAdapter.upload(model.backend, model.config, initLora(model.config, lora, cfg.seed));
  model.setLora(adapter);
  mkdirSync(opts.outDir, { recursive: true });
  const result = await trainSft(
    model,
    adapter,
    { train, eval: evalExamples, fingerprint: fingerprintExamples(train) },
    cfg,
    { onStep: opts.onStep, onEval: opts.onEval, stopRequested: () => opts.signal?.aborted ?? false },
  );
  let adapterDir: string | null = null;
  if (result.status === 'completed') {
    adapterDir = join(opts.outDir, 'adapter');
    writePeftAdapter(adapterDir, adapter.toHost(), { baseModelNameOrPath: loaded.source });
  }
  return { ...result, adapter, adapterDir };
}
