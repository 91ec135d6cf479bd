/**
 * Training checkpoints: `<out>/checkpoint-<step>/` holds the adapter in PEFT format (usable
 * as is by `sqlora eval --adapter`), the AdamW moments (optimizer.safetensors) and
 * trainer_state.json (step, settings, data fingerprint, best eval loss, running sums). The data
 * order and dropout masks are pure functions of (seed, step), so this is all a resumed run
 * needs to continue on exactly the same loss curve.
 */
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ADAPTER_WEIGHTS_FILE, readPeftAdapter, writePeftAdapter, type PeftAdapter } from '../lora/peft.js';
import type { HostLora } from '../lora/lora.js';
import type { Qwen2Config } from '../model/config.js';
import { SafetensorsFile, writeSafetensors } from '../tensor/safetensors.js';
import { toF32, type HostTensor } from '../tensor/tensor.js';
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

/** A checkpoint's trainer_state.json, validated (see validateTrainerState) and matched with its folder name. */
export function readTrainerState(dir: string): TrainerState {
  const statePath = join(dir, TRAINER_STATE_FILE);
  if (!existsSync(statePath)) throw new UserError(`${dir} is not a training checkpoint (no ${TRAINER_STATE_FILE})`);
  const state = validateTrainerState(readJsonFile<unknown>(statePath, 'trainer state'), statePath);
  const named = /^checkpoint-(\d+)$/.exec(basename(dir));
  if (named && Number(named[1]) !== state.step)
    throw new UserError(
      `${statePath}: "step" is ${state.step} but the folder is ${basename(dir)}: the checkpoint is damaged`,
    );
  return state;
}

export function loadTrainCheckpoint(dir: string, model: Qwen2Config): TrainCheckpoint {
  const state = readTrainerState(dir);
  const adapter = readPeftAdapter(dir, model);
  const optimizerPath = join(dir, OPTIMIZER_FILE);
  if (!existsSync(optimizerPath)) throw new UserError(`${dir} has no ${OPTIMIZER_FILE}: the checkpoint is incomplete`);
  const optimizer = SafetensorsFile.readAll(optimizerPath);
  checkOptimizerState(optimizer, optimizerPath);
  return { dir, adapter, optimizer, state };
}

/**
 * Every field of trainer_state.json, checked before a resume touches anything: a damaged or
 * hand-edited state is refused naming the field rather than run for a wrong number of steps.
 */
export function validateTrainerState(raw: unknown, path: string): TrainerState {
  const bad = (field: string, what: string, value: unknown): never => {
    throw new UserError(
      `${path}: "${field}" must be ${what}, got ${value === undefined ? 'nothing' : JSON.stringify(value)}: the checkpoint is damaged; resume from another checkpoint-N folder`,
    );
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('(top level)', 'an object', raw);
  const s = raw as Record<string, unknown>;
  if (s.format !== TRAINER_STATE_FORMAT) return bad('format', JSON.stringify(TRAINER_STATE_FORMAT), s.format);
  const int = (field: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = s[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      bad(field, `an integer from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'any' : max}`, v);
    return v as number;
  };
  const num = (field: string, v: unknown = s[field]): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(field, 'a finite number >= 0', v);
    return v as number;
  };
  const totalSteps = int('total_steps', 1);
  const step = int('step', 1, totalSteps);
  num('epoch');
  num('loss_sum');
  int('tokens_seen', 0);
  num('train_seconds');
  if (typeof s.settings !== 'object' || s.settings === null || Array.isArray(s.settings))
    bad('settings', 'an object of flag values', s.settings);
  if (typeof s.data_fingerprint !== 'string' || s.data_fingerprint === '')
    bad('data_fingerprint', 'a non-empty string', s.data_fingerprint);
  if (s.base_model !== null && typeof s.base_model !== 'string') bad('base_model', 'a string or null', s.base_model);
  for (const field of ['best_eval', 'last_eval']) {
    const e = s[field];
    if (e === null) continue;
    const p = e as Partial<EvalPoint> | undefined;
    if (typeof p !== 'object' || p === null || Array.isArray(p)) {
      bad(field, 'null or {"step", "eval_loss"}', e);
    } else {
      if (typeof p.step !== 'number' || !Number.isInteger(p.step) || p.step < 1 || p.step > step)
        bad(`${field}.step`, `an integer from 1 to the checkpoint's step ${step}`, p.step);
      num(`${field}.eval_loss`, p.eval_loss);
    }
  }
  return s as unknown as TrainerState;
}

/** AdamW's moments: every exp_avg finite, every exp_avg_sq finite and >= 0. */
function checkOptimizerState(tensors: Record<string, HostTensor>, path: string): void {
  for (const [name, t] of Object.entries(tensors)) {
    const values = toF32(t);
    const square = name.endsWith('.exp_avg_sq');
    if (!square && !name.endsWith('.exp_avg'))
      throw new UserError(`${path}: unexpected tensor ${name} (expected only .exp_avg and .exp_avg_sq moments)`);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isFinite(v) || (square && v < 0))
        throw new UserError(`${path}: ${name} holds ${v} at index ${i}: the optimizer state is damaged`);
    }
  }
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

/** Whether every weight of the adapter in `dir` is finite (unreadable counts as not). */
export function adapterWeightsFinite(dir: string): boolean {
  try {
    const tensors = SafetensorsFile.readAll(join(dir, ADAPTER_WEIGHTS_FILE));
    return Object.values(tensors).every((t) => toF32(t).every(Number.isFinite));
  } catch {
    return false;
  }
}

/**
 * The newest checkpoint whose adapter weights are all finite: after a divergence the newest
 * checkpoints may hold the update that broke the weights although their loss was still finite.
 */
export function lastFiniteCheckpoint(outDir: string): { step: number; dir: string } | null {
  const all = listCheckpoints(outDir);
  for (let i = all.length - 1; i >= 0; i--) if (adapterWeightsFinite(all[i].dir)) return all[i];
  return null;
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
