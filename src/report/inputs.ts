/**
 * What a report is made from: a training run folder (`sqlora train --out`: metrics.jsonl and,
 * once finished, training_summary.json) and results files (`sqlora baseline` / `sqlora eval`
 * results.json, or `sqlora evaluate --out`). Each is checked for the fields the report uses.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ExampleResult, LevelSummary, Summary } from '../eval/evaluate.js';
import type { EvalRecord, TrainRecord } from '../train/metrics.js';
import { UserError } from '../util/errors.js';
import { readAppendedJsonl, readJsonFile, readJsonl } from '../util/jsonl.js';

/** training_summary.json as `sqlora train` writes it (fields the report shows). */
export interface TrainingSummary {
  model?: string;
  adapter?: string;
  data?: {
    train_file?: string;
    eval_file?: string | null;
    train_examples?: number;
    eval_examples?: number;
    truncated?: number;
    target_tokens?: number;
  };
  settings?: Record<string, unknown>;
  trainable_params?: number;
  steps?: { total?: number; per_epoch?: number; warmup?: number };
  epochs?: number;
  train_loss?: number;
  best_eval?: { step: number; eval_loss: number } | null;
  final_eval?: { step: number; eval_loss: number } | null;
  train_seconds?: number;
  tokens_seen?: number;
  tokens_per_s?: number;
}

export interface TrainingRun {
  dir: string;
  /** One record per step, in step order (a step logged twice keeps its last record). */
  train: TrainRecord[];
  eval: EvalRecord[];
  /** Absent when training has not finished (or was interrupted). */
  summary: TrainingSummary | null;
}

export interface ResultsFile {
  path: string;
  meta: Record<string, unknown>;
  summary: Summary;
  /** Per-example results; empty when the file has none. */
  examples: ExampleResult[];
  /** Questions by example id, from the eval records named in meta.eval_file when readable. */
  questions: Map<string, string>;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export function readTrainingRun(dir: string): TrainingRun {
  if (!existsSync(dir)) throw new UserError(`training run folder not found: ${dir}`);
  const metricsPath = join(dir, 'metrics.jsonl');
  if (!existsSync(metricsPath))
    throw new UserError(`${dir} has no metrics.jsonl: --run takes the folder that sqlora train --out wrote`);
  const train = new Map<number, TrainRecord>();
  const evals = new Map<number, EvalRecord>();
  readAppendedJsonl<Record<string, unknown>>(metricsPath).forEach((r, i) => {
    const where = `${metricsPath}:${i + 1}`;
    if (r?.type === 'train') {
      if (!isNum(r.step) || !isNum(r.loss))
        throw new UserError(`${where}: a "train" record needs numbers "step" and "loss"`);
      train.set(r.step, r as unknown as TrainRecord);
    } else if (r?.type === 'eval') {
      if (!isNum(r.step) || !isNum(r.eval_loss))
        throw new UserError(`${where}: an "eval" record needs numbers "step" and "eval_loss"`);
      evals.set(r.step, r as unknown as EvalRecord);
    }
  });
  const byStep = <T extends { step: number }>(m: Map<number, T>): T[] =>
    [...m.values()].sort((a, b) => a.step - b.step);
  const summaryPath = join(dir, 'training_summary.json');
  const summary = existsSync(summaryPath) ? readJsonFile<TrainingSummary>(summaryPath, 'training summary') : null;
  if (summary !== null && (typeof summary !== 'object' || Array.isArray(summary)))
    throw new UserError(`${summaryPath}: expected a JSON object`);
  return { dir, train: byStep(train), eval: byStep(evals), summary };
}

function checkLevel(l: unknown, where: string): LevelSummary {
  const level = l as Partial<LevelSummary> | undefined;
  const score = (m: unknown): boolean => m === null || (typeof m === 'object' && isNum((m as { pct?: unknown }).pct));
  if (
    !level ||
    !isNum(level.count) ||
    !score(level.seed_exact) ||
    !score(level.seed_token) ||
    !score(level.exact_set_match ?? null) ||
    !score(level.execution ?? null)
  ) {
    throw new UserError(
      `${where}: expected {count, seed_exact, seed_token, exact_set_match, execution} with "pct" numbers`,
    );
  }
  return level as LevelSummary;
}

export function readResults(path: string, role: string): ResultsFile {
  const raw = readJsonFile<Record<string, unknown>>(path, `${role} results`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new UserError(`${path}: expected a JSON object`);
  if (raw.summary === undefined && Array.isArray(raw.detailed_results)) {
    throw new UserError(
      `${path} is a reference-workflow results file; score it first: sqlora evaluate --pred ${path} --out results.json, then pass that file`,
    );
  }
  const s = raw.summary as Partial<Summary> | undefined;
  if (!s || typeof s !== 'object')
    throw new UserError(
      `${path}: no "summary" (expected results.json from sqlora baseline, sqlora eval or sqlora evaluate --out)`,
    );
  const overall = checkLevel(s.overall, `${path}: summary.overall`);
  const byHardness: Summary['by_hardness'] = {};
  for (const [level, l] of Object.entries(s.by_hardness ?? {}))
    byHardness[level as keyof Summary['by_hardness']] = checkLevel(l, `${path}: summary.by_hardness.${level}`);
  const byDifficulty: NonNullable<Summary['by_difficulty']> = {};
  for (const [level, l] of Object.entries(s.by_difficulty ?? {}))
    byDifficulty[level as keyof typeof byDifficulty] = checkLevel(l, `${path}: summary.by_difficulty.${level}`);
  const examples = Array.isArray(raw.examples) ? (raw.examples as ExampleResult[]) : [];
  examples.forEach((e, i) => {
    if (typeof e?.gold !== 'string' || typeof e.pred !== 'string' || !isNum(e.seed_token))
      throw new UserError(`${path}: examples[${i}] needs "gold", "pred" and "seed_token"`);
  });
  const meta = raw.meta !== null && typeof raw.meta === 'object' ? (raw.meta as Record<string, unknown>) : {};
  return {
    path,
    meta,
    summary: {
      overall,
      by_hardness: byHardness,
      ...(s.by_difficulty !== undefined ? { by_difficulty: byDifficulty } : {}),
    },
    examples,
    questions: readQuestions(meta.eval_file),
  };
}

/** The question of each eval record, when the results name a readable eval file (best effort: it may have moved). */
function readQuestions(evalFile: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof evalFile !== 'string' || !existsSync(evalFile)) return out;
  try {
    for (const r of readJsonl<{ id?: unknown; question?: unknown }>(evalFile, 'eval records')) {
      if (typeof r?.id === 'string' && typeof r.question === 'string') out.set(r.id, r.question);
    }
  } catch {
    // Questions only decorate the examples; a changed or broken file must not stop the report.
    out.clear();
  }
  return out;
}
