/**
 * `sqlora baseline` and `sqlora eval`: greedy SQL generation for every eval record (base model,
 * or base + adapter), post-processed as the reference workflow did, appended to
 * predictions.jsonl as it goes (a rerun skips the ids already there), then scored by the
 * evaluator into results.json, optionally next to a baseline's results.
 */
import { datasetOf } from '../../report/dataset.js';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { evalPromptPlan, rebuildPrompts } from '../../data/adapterPrompts.js';
import { promptSettingsFromDataset, type PromptSettings } from '../../data/promptSettings.js';
import { readDatasetCard, type PromptRecord } from '../../data/records.js';
import { setupDifferences, type ResultsSetup } from '../../report/compareSetup.js';
import { evaluatePredictions, formatSummaryTable, type LevelSummary, type Summary } from '../../eval/evaluate.js';
import { PostgresExecutor } from '../../serve/postgresExecutor.js';
import type { EvalItem } from '../../eval/predictions.js';
import { UserError } from '../../util/errors.js';
import { appendJsonl, readAppendedJsonl, readJsonFile, readJsonl } from '../../util/jsonl.js';
import { Progress } from '../../util/progress.js';
import { positiveInt, type FlagSpec, type ParsedArgs } from '../args.js';
import { checkGoldErrors, scoringFlags, scoringInputs, type ScoringInputs } from './scoring.js';
import { exitOnInterrupt } from '../../util/interrupt.js';
import { checkWritableFile } from '../../util/outputs.js';
import { acquireRunLock } from '../../util/runLock.js';
import { generateSql } from '../../api/generate.js';
import { loadModel } from '../../api/load.js';
import { deviceFlag, quantizeFlag } from './engine.js';

export type PredictMode = 'baseline' | 'eval';

export interface Prediction {
  id: string;
  /** The SQL after post-processing (what is scored). */
  sql: string;
  /** The model's text as generated (special tokens included). */
  raw: string;
}

export function predictFlags(mode: PredictMode): FlagSpec[] {
  return [
    mode === 'baseline'
      ? {
          name: 'model',
          type: 'string',
          metavar: 'DIR|ID',
          default: 'Qwen/Qwen1.5-1.8B-Chat',
          description: 'model folder or Hugging Face repo id',
        }
      : {
          name: 'model',
          type: 'string',
          metavar: 'DIR|ID',
          description: "base model folder or repo id (default: the adapter's base_model_name_or_path)",
        },
    ...(mode === 'eval'
      ? [
          {
            name: 'adapter',
            type: 'string',
            metavar: 'DIR',
            description: 'PEFT LoRA adapter folder (e.g. runs/train/adapter or a checkpoint-N folder)',
          } as FlagSpec,
        ]
      : []),
    {
      name: 'data',
      type: 'string',
      metavar: 'DIR',
      default: 'data',
      description: 'folder with eval.jsonl (and dataset.json) from sqlora prepare',
    },
    { name: 'eval-file', type: 'string', metavar: 'FILE', description: 'eval records (default: DATA/eval.jsonl)' },
    {
      name: 'out',
      type: 'string',
      metavar: 'DIR',
      default: `runs/${mode}`,
      description: 'where predictions.jsonl and results.json go',
    },
    { name: 'limit', type: 'number', metavar: 'N', description: 'only the first N eval records' },
    {
      name: 'batch-size',
      type: 'number',
      default: 0,
      description: 'prompts decoded together (0 = 64 on a GPU, 8 on the CPU)',
    },
    { name: 'max-new-tokens', type: 'number', default: 128, description: 'tokens generated at most per question' },
    {
      name: 'repetition-penalty',
      type: 'number',
      default: 1,
      description: "HF's repetition penalty (1 = off, plain greedy)",
    },
    quantizeFlag('nf4'),
    deviceFlag(),
    ...scoringFlags(
      'Spider folder for exact-set-match and execution (default: the databases recorded in DATA/dataset.json)',
    ),
    ...(mode === 'eval'
      ? [
          {
            name: 'compare',
            type: 'string',
            metavar: 'FILE',
            description: "a baseline's results.json to compare with",
          } as FlagSpec,
        ]
      : []),
  ];
}

export const PREDICT_DETAILS = [
  "Generation is greedy from each record's prompt; the reply is cut at <|im_end|>, at the first blank line and after",
  'the first ";", non-ASCII characters are dropped and whitespace collapsed (the reference workflow\'s rules).',
  'OUT/predictions.jsonl gets one {"id", "sql", "raw"} line per question as soon as it is generated: an interrupted',
  'run continues where it stopped when started again with the same settings. OUT/results.json holds the metrics',
  '(seed exact/token match; exact-set-match and execution when the databases are found), per example and per hardness.',
].join('\n');

interface RunInfo {
  mode: PredictMode;
  model: string | null;
  adapter: string | null;
  eval_file: string;
  quantize: string;
  max_new_tokens: number;
  repetition_penalty: number;
  /** The records' own prompts, or the adapter's settings they were rebuilt with. */
  prompts: 'records' | PromptSettings;
}

export async function runPredict(args: ParsedArgs, mode: PredictMode): Promise<void> {
  const data = args.string('data')!;
  const evalFile = args.string('eval-file') ?? join(data, 'eval.jsonl');
  const out = args.string('out')!;
  const adapterDir = mode === 'eval' ? args.required('adapter') : undefined;
  const limit = args.has('limit') ? positiveInt(mode, 'limit', args.number('limit')) : undefined;
  const requestedBatch = positiveInt(mode, 'batch-size', args.number('batch-size'), true);
  const maxNewTokens = positiveInt(mode, 'max-new-tokens', args.number('max-new-tokens'));
  const repetitionPenalty = args.number('repetition-penalty')!;
  if (!(repetitionPenalty > 0)) throw new UserError(`sqlora ${mode}: --repetition-penalty must be positive`);
  const scoring = scoringInputs(args, () => recordedDatabases(data));
  const compare = mode === 'eval' ? args.string('compare') : undefined;
  const baseline =
    compare !== undefined ? readJsonFile<{ summary?: Summary } & ResultsSetup>(compare, 'baseline results') : undefined;
  if (baseline && !baseline.summary?.overall)
    throw new UserError(
      `${compare}: no "summary.overall" (expected results.json from sqlora baseline or sqlora evaluate --out)`,
    );

  const allRecords = readEvalRecords(evalFile);
  const records = allRecords.slice(0, limit);
  // The adapter is scored on the prompt it was trained on (its sqlora.json).
  const plan = adapterDir ? evalPromptPlan(adapterDir, promptSettingsFromDataset(data, evalFile)) : null;
  if (plan?.note) process.stderr.write(`note: ${plan.note}\n`);
  if (plan?.rebuild?.format === 'schema' && scoring.dbDir === undefined)
    throw new UserError(
      `sqlora ${mode}: rebuilding the prompts for the adapter needs the databases: pass --spider DIR`,
    );
  const lock = acquireRunLock(out, mode);
  try {
    await predictLocked(args, mode, {
      out,
      evalFile,
      adapterDir,
      allRecords,
      records,
      maxNewTokens,
      repetitionPenalty,
      requestedBatch,
      scoring,
      compare,
      baseline,
      plan,
    });
  } finally {
    lock.release();
  }
}

interface PredictInputs {
  out: string;
  evalFile: string;
  adapterDir: string | undefined;
  allRecords: PromptRecord[];
  records: PromptRecord[];
  maxNewTokens: number;
  repetitionPenalty: number;
  requestedBatch: number;
  scoring: ScoringInputs;
  compare: string | undefined;
  baseline: { summary?: Summary } | undefined;
  plan: ReturnType<typeof evalPromptPlan> | null;
}

async function predictLocked(args: ParsedArgs, mode: PredictMode, inputs: PredictInputs): Promise<void> {
  const { out, evalFile, adapterDir, allRecords, records, maxNewTokens, repetitionPenalty, plan } = inputs;
  const resultsPath = join(out, 'results.json');
  const predPath = join(out, 'predictions.jsonl');
  const runPath = join(out, 'run.json');
  for (const p of [resultsPath, predPath, runPath]) checkWritableFile(p, 'output');
  const info: RunInfo = {
    mode,
    model: args.string('model') ?? null,
    adapter: adapterDir ?? null,
    eval_file: evalFile,
    quantize: args.string('quantize')!,
    max_new_tokens: maxNewTokens,
    repetition_penalty: repetitionPenalty,
    prompts: plan?.rebuild ?? 'records',
  };
  const done = new Map<string, Prediction>();
  // Predictions past --limit stay in the file (a later run without it uses them).
  const known = new Set(allRecords.map((r) => r.id)),
    wanted = new Set(records.map((r) => r.id));
  const existing = readAppendedJsonl<Prediction>(predPath);
  // Settings describe predictions: a folder without any (a failed start) takes the new ones.
  let infoWritten = existing.length > 0 && checkRunInfo(runPath, info);
  for (const p of existing) {
    if (!known.has(p.id))
      throw new UserError(
        `${predPath} has a prediction for id ${JSON.stringify(p.id)}, which is not among the records of ${evalFile}: use another --out`,
      );
    if (wanted.has(p.id)) done.set(p.id, p);
  }
  const todo = records.filter((r) => !done.has(r.id));
  const started = Date.now();
  let newTokens = 0;
  let phase: 'generating' | 'scoring' = 'generating';
  const stopHandling = exitOnInterrupt(() =>
    phase === 'generating'
      ? `${done.size} of ${records.length} predictions are kept in ${predPath}; run the same command again to continue from there`
      : `all ${records.length} predictions are in ${predPath}; run the same command again to score them (nothing is generated again)`,
  );
  try {
    if (todo.length > 0) {
      if (done.size > 0)
        process.stderr.write(`${predPath}: ${done.size} of ${records.length} already predicted; continuing\n`);
      const loaded = await loadModel({
        model: args.string('model'),
        adapter: adapterDir,
        device: args.string('device')!,
        quantize: args.string('quantize')!,
      });
      const texts = plan?.rebuild
        ? rebuildPrompts(todo, plan.rebuild, loaded.dir, inputs.scoring.dbDir)
        : todo.map((r) => r.prompt);
      const progress = new Progress({ label: mode, total: records.length, unit: 'ex' }, done.size);
      try {
        await generateSql(loaded, texts, {
          maxNewTokens,
          batchSize: inputs.requestedBatch,
          sampling: { temperature: 0, topK: 0, topP: 1, repetitionPenalty },
          onResult(index, reply) {
            const p: Prediction = { id: todo[index].id, sql: reply.sql, raw: reply.raw };
            if (!infoWritten) {
              writeFileSync(runPath, JSON.stringify(info, null, 2) + '\n');
              infoWritten = true;
            }
            appendJsonl(predPath, p);
            done.set(p.id, p);
            newTokens += reply.newTokens;
            progress.tick(1, { 'tok/s': newTokens / ((Date.now() - started) / 1000) });
          },
        });
      } finally {
        progress.finish();
      }
    }
    phase = 'scoring';
    await scoreAndReport({ ...inputs, mode, info, done, todo, started, newTokens, predPath, resultsPath });
  } finally {
    stopHandling();
  }
}

interface ScoreInputs extends PredictInputs {
  mode: PredictMode;
  info: RunInfo;
  done: Map<string, Prediction>;
  todo: PromptRecord[];
  started: number;
  newTokens: number;
  predPath: string;
  resultsPath: string;
}

async function scoreAndReport(inputs: ScoreInputs): Promise<void> {
  const { mode, info, done, todo, started, newTokens, predPath, resultsPath, records, evalFile } = inputs;
  const { compare, baseline } = inputs;
  const { dbDir, tablesPath, timeoutMs, workers, allowGoldErrors } = inputs.scoring;
  const genSeconds = (Date.now() - started) / 1000;

  const items: EvalItem[] = records.map((r, index) => ({
    index,
    id: r.id,
    db_id: r.db_id,
    gold: r.query,
    pred: done.get(r.id)!.sql,
    ...(r.hardness ? { hardness: r.hardness } : {}),
    ...(r.difficulty ? { difficulty: r.difficulty } : {}),
    ...(r.db_path ? { db_path: r.db_path } : {}),
  }));
  // Pairs on PostgreSQL (a db_path URL) connect on first use; nothing opens otherwise.
  const postgres = new PostgresExecutor();
  const report = await evaluatePredictions(items, {
    dbDir,
    tablesPath,
    timeoutMs,
    workers,
    progress: true,
    postgres,
  }).finally(() => postgres.close());
  const comparison = baseline?.summary ? compareSummaries(baseline.summary.overall, report.summary.overall) : undefined;
  const meta = {
    ...info,
    count: records.length,
    generated: todo.length,
    generation_seconds: genSeconds,
    new_tokens: newTokens,
    db_dir: dbDir ?? null,
    tables: tablesPath ?? null,
    compare: compare ?? null,
    dataset: datasetOf(evalFile),
  };
  writeFileSync(
    resultsPath,
    JSON.stringify(
      { meta, summary: report.summary, ...(comparison ? { comparison } : {}), examples: report.examples },
      null,
      1,
    ) + '\n',
  );

  const lines = [
    `${mode}: ${records.length} questions of ${evalFile}${todo.length > 0 ? `, ${todo.length} generated in ${genSeconds.toFixed(1)} s` : ''}`,
    '',
    formatSummaryTable(report.summary),
  ];
  if (comparison) {
    const unlike = setupDifferences(baseline as ResultsSetup, {
      meta,
      summary: report.summary,
      examples: report.examples,
    });
    for (const d of unlike) process.stderr.write(`warning: ${compare} was not run like this eval: ${d}\n`);
    lines.push(`compared with ${compare} (overall):`, formatComparison(comparison));
    if (unlike.length > 0) lines.push(`(unlike runs: ${unlike.join('; ')})`);
  }
  if (dbDir === undefined && !items.some((it) => it.db_path !== undefined))
    lines.push('exact-set-match and execution need the databases: pass --spider DIR');
  lines.push(`wrote ${predPath} and ${resultsPath}`);
  process.stdout.write(lines.join('\n') + '\n');
  checkGoldErrors(report, allowGoldErrors, resultsPath);
}

function readEvalRecords(path: string): PromptRecord[] {
  const rows = readJsonl<Partial<PromptRecord>>(path, 'eval records');
  if (rows.length === 0) throw new UserError(`${path} has no records`);
  return rows.map((r, i) => {
    for (const f of ['id', 'db_id', 'query', 'prompt'] as const) {
      if (typeof r?.[f] !== 'string')
        throw new UserError(`${path}: record ${i + 1} has no string "${f}" (write eval.jsonl with sqlora prepare)`);
    }
    return r as PromptRecord;
  });
}

/**
 * Predictions of one run must come from one setup: a rerun with other settings is refused.
 * Returns whether `path` already records these settings (false: no record yet, write it).
 */
function checkRunInfo(path: string, info: RunInfo): boolean {
  if (!existsSync(path)) return false;
  const before = readJsonFile<Record<string, unknown>>(path, 'run info');
  const differ = Object.entries(info)
    .filter(([k, v]) => JSON.stringify(before[k]) !== JSON.stringify(v))
    .map(([k]) => k);
  if (differ.length > 0) {
    throw new UserError(
      `${dirname(path)} holds predictions made with other settings (${differ.join(', ')} differ; see ${path}): use another --out, or delete it`,
    );
  }
  return true;
}

/** The databases (and tables.json) `sqlora prepare` recorded in DATA/dataset.json, where they still exist. */
function recordedDatabases(data: string): { dbDir?: string; tablesPath?: string } {
  const card = readDatasetCard(data);
  const recorded = card?.source?.databases;
  if (typeof recorded !== 'string' || !existsSync(recorded)) return {};
  const candidates = [card?.source?.path, dirname(recorded)]
    .filter((p): p is string => typeof p === 'string')
    .map((p) => join(p, 'tables.json'));
  return { dbDir: recorded, tablesPath: candidates.find((p) => existsSync(p)) };
}

type Metric = 'seed_exact' | 'seed_token' | 'exact_set_match' | 'execution';
const METRICS: [Metric, string][] = [
  ['seed_exact', 'seed exact %'],
  ['seed_token', 'seed token %'],
  ['exact_set_match', 'exact-set-match %'],
  ['execution', 'execution %'],
];

export type Comparison = Partial<Record<Metric, { baseline: number; eval: number; change: number }>>;

/** Overall percentages side by side; a metric either run lacks is left out. */
export function compareSummaries(base: LevelSummary, now: LevelSummary): Comparison {
  const out: Comparison = {};
  for (const [m] of METRICS) {
    const b = base[m]?.pct,
      e = now[m]?.pct;
    if (b !== undefined && e !== undefined) out[m] = { baseline: b, eval: e, change: e - b };
  }
  return out;
}

export function formatComparison(c: Comparison): string {
  const rows = [''.padEnd(18) + 'baseline'.padStart(10) + 'eval'.padStart(10) + 'change'.padStart(10)];
  for (const [m, label] of METRICS) {
    const r = c[m];
    if (r)
      rows.push(
        label.padEnd(18) +
          r.baseline.toFixed(2).padStart(10) +
          r.eval.toFixed(2).padStart(10) +
          `${r.change >= 0 ? '+' : ''}${r.change.toFixed(2)}`.padStart(10),
      );
  }
  return rows.join('\n') + '\n';
}
