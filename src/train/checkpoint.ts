/**
 * Training checkpoints: `<out>/checkpoint-<step>/` holds the adapter in PEFT format (usable
 * as is by `sqlora eval --adapter`), the AdamW moments (optimizer.safetensors) and
 * trainer_state.json (step, settings, data fingerprint, best eval loss, running sums). The data
 * order and dropout masks are pure functions of (seed, step), so this is all a resumed run
 * needs to continue on exactly the same loss curve.
 */
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readPeftAdapter, writePeftAdapter, type PeftAdapter } from '../lora/peft.js';
import type { HostLora } from '../lora/lora.js';
import type { Qwen2Config } from '../model/config.js';
import { SafetensorsFile, writeSafetensors } from '../tensor/safetensors.js';
import type { HostTensor } from '../tensor/tensor.js';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_FORMAT = 'sqlora-trainer-state/1';

export interface EvalPoint {
  step: number;
  eval_loss: number;
}

export interface TrainerState {
  format: typeof TRAINER_STATE_FORMAT;
  /** Optimizer steps completed. */
  step: number;
  total_steps: number;
  /** Epochs completed, fractional. */
  epoch: number;
  /** Settings a resumed run must share (flag name -> value). */
  settings: Record<string, unknown>;
  /** Hash of the tokenized training data: resuming on other data is refused. */
  data_fingerprint: string;
  base_model: string | null;
  best_eval: EvalPoint | null;
  last_eval: EvalPoint | null;
  /** Sum of the per-step train losses so far (for the run's mean train loss). */
  loss_sum: number;
  /** Input tokens processed so far. */
  tokens_seen: number;
  /** Seconds spent training so far, over all sessions. */
  train_seconds: number;
}

export interface TrainCheckpoint {
  dir: string;
  adapter: PeftAdapter;
  optimizer: Record<string, HostTensor>;
  state: TrainerState;
}

export function checkpointDir(outDir: string, step: number): string {
  return join(outDir, `checkpoint-${step}`);
}

/** Writes a checkpoint into a temporary folder renamed into place: a crash never leaves half of one. */
export function saveTrainCheckpoint(
  outDir: string,
  adapter: HostLora,
  optimizer: Record<string, HostTensor>,
  state: Omit<TrainerState, 'format'>,
  adapterFiles: Record<string, string> = {},
): string {
  const dir = checkpointDir(outDir, state.step);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  writePeftAdapter(tmp, adapter, { baseModelNameOrPath: state.base_model, extraFiles: adapterFiles });
  writeSafetensors(join(tmp, OPTIMIZER_FILE), optimizer, { format: 'pt' });
  writeFileSync(
    join(tmp, TRAINER_STATE_FILE),
    JSON.stringify({ format: TRAINER_STATE_FORMAT, ...state }, null, 2) + '\n',
  );
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

export function loadTrainCheckpoint(dir: string, model: Qwen2Config): TrainCheckpoint {
  const statePath = join(dir, TRAINER_STATE_FILE);
  if (!existsSync(statePath)) throw new UserError(`${dir} is not a training checkpoint (no ${TRAINER_STATE_FILE})`);
  const state = readJsonFile<TrainerState>(statePath, 'trainer state');
  if (state?.format !== TRAINER_STATE_FORMAT)
    throw new UserError(
      `${statePath}: unknown format ${JSON.stringify(state?.format)} (expected ${TRAINER_STATE_FORMAT})`,
    );
  const adapter = readPeftAdapter(dir, model);
  return { dir, adapter, optimizer: SafetensorsFile.readAll(join(dir, OPTIMIZER_FILE)), state };
}

/** Complete checkpoints under `outDir`, oldest first. */
export function listCheckpoints(outDir: string): { step: number; dir: string }[] {
  if (!existsSync(outDir)) return [];
  return readdirSync(outDir)
    .map((name) => /^checkpoint-(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(outDir, m[0], TRAINER_STATE_FILE)))
    .map((m) => ({ step: Number(m[1]), dir: join(outDir, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Keeps the newest `keep` checkpoints and the one at `protectStep` (the best eval loss so far),
 * deleting the others, as HF's save_total_limit with load_best_model_at_end; keep <= 0 keeps all.
 */
export function pruneCheckpoints(outDir: string, keep: number, protectStep: number | null): void {
  if (keep <= 0) return;
  const all = listCheckpoints(outDir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) {
    if (c.step !== protectStep) rmSync(c.dir, { recursive: true, force: true });
  }
}
