/**
 * Supervised fine-tuning of a LoRA adapter, step for step what HF's Trainer does with the
 * reference settings: micro-batches in length-grouped order, the loss of a step normalized by
 * the target tokens of all its micro-batches (num_items_in_batch), gradients accumulated, then
 * clipped, AdamW with decoupled weight decay, and a cosine schedule with linear warmup.
 * Evaluates the eval loss and saves resumable checkpoints every N steps; stops cleanly (after
 * the step in progress, with a checkpoint) when asked, and refuses to continue on a NaN loss.
 */
import type { LoraAdapter } from '../lora/lora.js';
import type { Qwen2Model, TrainStep } from '../model/qwen2.js';
import { UserError } from '../util/errors.js';
import { mixSeed } from '../util/random.js';
import { collate, DataOrder, type TrainExample } from './batching.js';
import {
  lastFiniteCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  saveTrainCheckpoint,
  TRAINER_STATE_FORMAT,
  type EvalPoint,
  type TrainerState,
} from './checkpoint.js';
import type { EvalRecord, TrainRecord } from './metrics.js';
import { ADAMW_DEFAULTS, AdamW, clipGradNormOnDevice } from './optimizer.js';
import { cosineWithWarmup, planSteps, warmupSteps, type StepPlan } from './schedule.js';
import { yieldToEventLoop } from '../util/yield.js';

export interface SftConfig {
  epochs: number;
  /** > 0: run exactly this many steps (HF's max_steps), overriding epochs. */
  maxSteps: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  warmupRatio: number;
  weightDecay: number;
  /** Gradient clipping; 0 turns it off. */
  maxGradNorm: number;
  seed: number;
  groupByLength: boolean;
  /** Evaluate every N steps (and after the last); 0 = only after the last. */
  evalSteps: number;
  evalBatchSize: number;
  /** Checkpoint every N steps; 0 = only when interrupted. */
  saveSteps: number;
  /** Keep at most N checkpoints (plus the best); 0 keeps all. */
  saveTotalLimit: number;
  /** Token id used for right padding. */
  padId: number;
  outDir: string;
  /** Recorded in adapter_config.json as base_model_name_or_path. */
  baseModel: string | null;
  /** More files for every checkpoint's adapter folder (name -> text): sqlora.json. */
  adapterFiles?: Record<string, string>;
  /** Everything a resumed run must share with the one it continues (flag -> value). */
  settings: Record<string, unknown>;
  /**
   * Bytes the activations kept for the backward pass may take per micro-batch: layers beyond it
   * are recomputed (see TrainOptions.activationBudget). Default: no limit.
   */
  activationBudget?: number;
}

export interface SftData {
  train: readonly TrainExample[];
  eval: readonly TrainExample[] | null;
  /** See fingerprintExamples. */
  fingerprint: string;
}

export interface SftHooks {
  /** Once the run (or the resume) is accepted, before the first step: the clock of its rates starts here. */
  onStart?(plan: StepPlan, fromStep: number): void;
  onStep?(record: TrainRecord, plan: StepPlan): void;
  /** Called as an eval-loss pass starts, then with each batch's example count. */
  onEvalStart?(examples: number): void;
  onEvalBatch?(examples: number): void;
  onEval?(record: EvalRecord): void;
  /** Polled between micro-batches; true ends the run after the current step, with a checkpoint. */
  stopRequested?(): boolean;
}

export interface SftResume {
  optimizer: Parameters<AdamW['loadState']>[0];
  state: TrainerState;
  dir: string;
}

export interface SftResult {
  status: 'completed' | 'interrupted';
  plan: StepPlan;
  warmupSteps: number;
  state: TrainerState;
  /** The checkpoint written last (null when none was). */
  checkpoint: string | null;
}

/** A NaN or infinite loss: training stops, nothing after the last good checkpoint is kept. */
export class TrainingDivergedError extends UserError {}

/** Mean token loss of `examples` (summed over tokens, not averaged per batch), no dropout. */
export async function evaluateLoss(
  model: Qwen2Model,
  examples: readonly TrainExample[],
  batchSize: number,
  padId: number,
  onBatch?: (examples: number) => void,
): Promise<{ loss: number; tokens: number }> {
  // Similar lengths together waste less padding; the sum does not depend on the order.
  const order = examples.map((_, i) => i).sort((a, b) => examples[b].ids.length - examples[a].ids.length);
  let sum = 0;
  let tokens = 0;
  for (let i = 0; i < order.length; i += batchSize) {
    const batch = collate(
      order.slice(i, i + batchSize).map((k) => examples[k]),
      padId,
    );
    const r = model.evalLoss(batch, { lossNormalizer: 1 });
    sum += r.loss;
    tokens += r.tokens;
    onBatch?.(batch.batchSize);
    await yieldToEventLoop();
  }
  return { loss: tokens > 0 ? sum / tokens : NaN, tokens };
}

export async function trainSft(
  model: Qwen2Model,
  adapter: LoraAdapter,
  data: SftData,
  cfg: SftConfig,
  hooks: SftHooks = {},
  resume?: SftResume,
): Promise<SftResult> {
  const be = model.backend;
  const plan = planSteps({
    examples: data.train.length,
    batchSize: cfg.batchSize,
    gradAccum: cfg.gradAccum,
    epochs: cfg.epochs,
    maxSteps: cfg.maxSteps,
  });
  const warmup = warmupSteps(cfg.warmupRatio, plan.totalSteps);
  const params = adapter.parameters();
  const optimizer = new AdamW(be, params, { ...ADAMW_DEFAULTS, weightDecay: cfg.weightDecay }, adapter.flat());
  const state: TrainerState = resume
    ? { ...resume.state }
    : {
        format: TRAINER_STATE_FORMAT,
        step: 0,
        total_steps: plan.totalSteps,
        epoch: 0,
        settings: cfg.settings,
        data_fingerprint: data.fingerprint,
        base_model: cfg.baseModel,
        best_eval: null,
        last_eval: null,
        loss_sum: 0,
        tokens_seen: 0,
        train_seconds: 0,
      };
  if (resume) {
    checkResumable(resume, cfg, data, plan);
    optimizer.loadState(resume.optimizer, resume.state.step, resume.dir);
  }
  const order = new DataOrder(
    data.train.map((e) => e.ids.length),
    plan,
    cfg.batchSize,
    cfg.gradAccum,
    { seed: cfg.seed, groupByLength: cfg.groupByLength },
  );

  let lastCheckpoint: string | null = null;
  const save = (): void => {
    lastCheckpoint = saveTrainCheckpoint(
      cfg.outDir,
      adapter.toHost(),
      optimizer.stateToHost(),
      state,
      cfg.adapterFiles,
    );
    pruneCheckpoints(cfg.outDir, cfg.saveTotalLimit, state.best_eval?.step ?? null);
  };
  const runEval = async (): Promise<void> => {
    if (!data.eval || data.eval.length === 0) return;
    hooks.onEvalStart?.(data.eval.length);
    const r = await evaluateLoss(model, data.eval, cfg.evalBatchSize, cfg.padId, hooks.onEvalBatch);
    const point: EvalPoint = { step: state.step, eval_loss: r.loss };
    state.last_eval = point;
    if (!state.best_eval || r.loss < state.best_eval.eval_loss) state.best_eval = point;
    hooks.onEval?.({ type: 'eval', step: state.step, epoch: state.epoch, eval_loss: r.loss, eval_tokens: r.tokens });
  };

  hooks.onStart?.(plan, state.step);
  try {
    adapter.zeroGrad();
    while (state.step < plan.totalSteps) {
      const started = performance.now();
      const step = state.step;
      const micro = order.microBatches(step).map((mb) => mb.map((i) => data.train[i]));
      const normalizer = micro.reduce((s, mb) => s + mb.reduce((t, e) => t + e.targets, 0), 0);
      // The whole step is queued before anything is read back: the device never waits for the host mid-step.
      const outs: TrainStep[] = [];
      let tokens = 0;
      for (let m = 0; m < micro.length; m++) {
        const out = model.forwardTrain(collate(micro[m], cfg.padId), {
          dropoutSeed: mixSeed(cfg.seed, step, m, 0x5eed),
          lossNormalizer: normalizer,
          activationBudget: cfg.activationBudget,
        });
        model.backward(out);
        outs.push(out);
        tokens += micro[m].reduce((t, e) => t + e.ids.length, 0);
        await yieldToEventLoop();
      }
      const normSquared = clipGradNormOnDevice(be, [adapter.flat().grad], cfg.maxGradNorm);
      const lr = cfg.lr * cosineWithWarmup(step, warmup, plan.totalSteps);
      optimizer.step(lr);
      adapter.zeroGrad();
      const gradNorm = Math.sqrt(be.download(normSquared)[0]);
      be.free(normSquared);
      let loss = 0;
      outs.forEach((out, m) => {
        if (!Number.isFinite(out.loss))
          diverged(cfg.outDir, `the loss is ${out.loss} at step ${step + 1} (micro-batch ${m + 1} of ${micro.length})`);
        loss += out.loss;
      });
      // A non-finite norm left the gradients unclipped and the update is garbage; nothing of it is saved.
      if (!Number.isFinite(gradNorm)) diverged(cfg.outDir, `the gradient norm is ${gradNorm} at step ${step + 1}`);

      const seconds = (performance.now() - started) / 1000;
      state.step = step + 1;
      state.epoch = state.step / plan.stepsPerEpoch;
      state.loss_sum += loss;
      state.tokens_seen += tokens;
      state.train_seconds += seconds;
      hooks.onStep?.(
        {
          type: 'train',
          step: state.step,
          epoch: state.epoch,
          loss,
          lr,
          grad_norm: gradNorm,
          tokens,
          tokens_per_s: seconds > 0 ? tokens / seconds : 0,
          elapsed_s: state.train_seconds,
        },
        plan,
      );

      const last = state.step === plan.totalSteps;
      if ((cfg.evalSteps > 0 && state.step % cfg.evalSteps === 0) || last) await runEval();
      const stop = !last && hooks.stopRequested?.() === true;
      if ((cfg.saveSteps > 0 && state.step % cfg.saveSteps === 0 && !last) || stop) save();
      if (stop) return { status: 'interrupted', plan, warmupSteps: warmup, state, checkpoint: lastCheckpoint };
    }
    return { status: 'completed', plan, warmupSteps: warmup, state, checkpoint: lastCheckpoint };
  } finally {
    optimizer.free();
  }
}

/** A resumed run must see the same data and settings, or its loss curve would not continue the original one. */
function checkResumable(resume: SftResume, cfg: SftConfig, data: SftData, plan: StepPlan): void {
  const saved = resume.state.settings;
  const differ = [...new Set([...Object.keys(saved), ...Object.keys(cfg.settings)])]
    .filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(cfg.settings[k]))
    .map((k) => `--${k} ${JSON.stringify(saved[k])} there, ${JSON.stringify(cfg.settings[k])} now`);
  if (differ.length > 0)
    throw new UserError(
      `cannot resume from ${resume.dir}: settings differ (${differ.join('; ')}); use the original settings or start a new run`,
    );
  if (resume.state.data_fingerprint !== data.fingerprint) {
    throw new UserError(
      `cannot resume from ${resume.dir}: the training data differ from the data it was trained on (other train.jsonl, tokenizer or --max-length)`,
    );
  }
  if (resume.state.total_steps !== plan.totalSteps) {
    throw new UserError(
      `cannot resume from ${resume.dir}: it belongs to a run of ${resume.state.total_steps} steps, these settings give ${plan.totalSteps}`,
    );
  }
  const epoch = resume.state.step / plan.stepsPerEpoch;
  if (Math.abs(resume.state.epoch - epoch) > 1e-9 * Math.max(1, epoch))
    throw new UserError(
      `${resume.dir}: "epoch" is ${resume.state.epoch} but step ${resume.state.step} of ${plan.stepsPerEpoch} per epoch is epoch ${epoch}: the checkpoint is damaged`,
    );
  if (resume.state.step >= plan.totalSteps)
    throw new UserError(
      `${resume.dir} is the end of its run (step ${resume.state.step} of ${plan.totalSteps}); nothing to resume`,
    );
}

function diverged(outDir: string, what: string): never {
  const good = lastFiniteCheckpoint(outDir);
  const saved = listCheckpoints(outDir).length;
  const keep = good
    ? `The last checkpoint with finite weights is ${good.dir} (step ${good.step}); its adapter is usable as is. Resuming would repeat the same steps: start a new run with a lower --lr or a larger --warmup-ratio.`
    : `${saved > 0 ? 'No checkpoint holds finite weights' : 'No checkpoint was saved yet'}; start again with a lower --lr or a larger --warmup-ratio.`;
  throw new TrainingDivergedError(`training stopped: ${what}. ${keep}`);
}
