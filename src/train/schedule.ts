/**
 * How long training runs and at which learning rate, computed as HF's Trainer does so a run
 * here and a run there with the same settings take the same number of steps at the same rates.
 */
import { UserError } from '../util/errors.js';

export interface StepPlanInput {
  examples: number;
  batchSize: number;
  gradAccum: number;
  epochs: number;
  /** Overrides epochs when > 0 (HF's max_steps). */
  maxSteps?: number;
}

export interface StepPlan {
  /** Micro-batches per epoch (the last may be short, as HF's DataLoader without drop_last). */
  batchesPerEpoch: number;
  /** Optimizer steps per epoch; the last one takes the leftover micro-batches. */
  stepsPerEpoch: number;
  totalSteps: number;
}

/**
 * Steps of a run. HF counts len(dataloader) // grad_accum updates per epoch and, since 4.46,
 * also runs the leftover micro-batches as one more update; we count that update too (ceil), so
 * with an odd number of micro-batches per epoch the schedule is one step per epoch longer than
 * HF's max_steps. With an even number (the reference: 438 micro-batches, accum 2) they agree.
 */
export function planSteps(p: StepPlanInput): StepPlan {
  if (p.examples <= 0) throw new UserError('no training examples');
  const batchesPerEpoch = Math.ceil(p.examples / p.batchSize);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / p.gradAccum);
  const totalSteps = p.maxSteps !== undefined && p.maxSteps > 0 ? p.maxSteps : Math.ceil(p.epochs * stepsPerEpoch);
  if (totalSteps <= 0) throw new UserError(`training would run 0 steps (${p.examples} examples, --epochs ${p.epochs})`);
  return { batchesPerEpoch, stepsPerEpoch, totalSteps };
}

/** HF's TrainingArguments.get_warmup_steps for a warmup ratio: ceil(ratio * total). */
export function warmupSteps(ratio: number, totalSteps: number): number {
  return Math.ceil(totalSteps * ratio);
}

/**
 * The multiplier of the base learning rate for optimizer step `step` (0-based: the first update
 * uses step 0), as transformers' get_cosine_schedule_with_warmup (num_cycles 0.5) with
 * torch's LambdaLR: linear from 0 over the warmup, then half a cosine down to 0.
 */
export function cosineWithWarmup(step: number, warmup: number, total: number): number {
  if (step < warmup) return step / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
}
