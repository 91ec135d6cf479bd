/**
 * The training metrics log, `<out>/metrics.jsonl`: one `train` record per optimizer step and
 * one `eval` record per evaluation, appended as they happen (a crash keeps every line so far).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { appendJsonl, readAppendedJsonl, writeJsonl } from '../util/jsonl.js';

export interface TrainRecord {
  type: 'train';
  step: number;
  /** Epochs completed after this step, fractional. */
  epoch: number;
  /** Mean token loss of the step (all its micro-batches). */
  loss: number;
  /** Learning rate this step's update used. */
  lr: number;
  /** Gradient L2 norm before clipping. */
  grad_norm: number;
  /** Input tokens of the step (padding excluded). */
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
}

export interface EvalRecord {
  type: 'eval';
  step: number;
  epoch: number;
  /** Mean token loss over the whole eval set. */
  eval_loss: number;
  eval_tokens: number;
}

export type MetricsRecord = TrainRecord | EvalRecord;

export class MetricsLog {
  /**
   * Opens `path`. Resuming at `resumeStep` keeps the records up to that step and drops later
   * ones (written after the checkpoint by the interrupted run); a fresh run starts an empty log.
   */
  constructor(
    readonly path: string,
    resumeStep: number | null,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    const kept = resumeStep === null ? [] : readAppendedJsonl<MetricsRecord>(path).filter((r) => r.step <= resumeStep);
    writeJsonl(path, kept);
  }

  append(record: MetricsRecord): void {
    appendJsonl(this.path, record);
  }
}
