/**
 * `sqlora prepare` as a function: Spider (folder or parquet) -> train.jsonl, eval.jsonl and the
 * dataset card (dataset.json for programs, README.md for people). The CLI command only parses
 * flags and calls prepareDataset.
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ChatTemplate } from './chatTemplate.js';
import { datasetReadme } from './datasetReadme.js';
import { Tokenizer } from './tokenizer.js';
import { PromptBuilder, type PromptFormat, type SchemaSource } from './prompts.js';
import type { DatasetCard, LengthStats, PromptRecord, SplitCard } from './records.js';
import {
  SpiderDatabases,
  readSpiderFolder,
  type SpiderExample,
  type SpiderSplits,
  type TrainSplits,
} from './spider.js';
import { readSpiderParquet } from './spiderParquet.js';
import { readBirdFolder, questionWithEvidence } from './bird.js';
import { BIRD_DIFFICULTIES } from '../eval/birdExecution.js';
import type { Pair } from './pairs.js';
import type { PairChecks, SplitBy } from './pairsChecks.js';
import { readPairSource, type PostgresPairs } from './pairSource.js';
import { isPostgresUrl } from '../eval/postgresUrl.js';
import { HARDNESS_LEVELS, spiderHardness, type Hardness } from '../eval/hardness.js';
import { loadSpiderSchema, type SpiderSchema } from '../eval/spiderSchema.js';
import { UserError, describeError } from '../util/errors.js';
import { writeFileAtomic } from '../util/outputs.js';
import { writeJsonl } from '../util/jsonl.js';
import { Progress } from '../util/progress.js';
import { mulberry32 } from '../util/random.js';

export interface PrepareOptions {
  /** Spider folder (official layout); the source unless `parquet` is given, else the databases. */
  spider?: string;
  /** Folder of xlangai/spider parquet files. */
  parquet?: string;
  /** BIRD release folder (train/, dev/): the source instead of Spider. */
  bird?: string;
  /** BIRD: put each question's evidence in the prompt (default true). */
  evidence?: boolean;
  /** Your own pairs (.jsonl or .csv of question, sql, db_id | db_path, evidence?): the source instead of Spider. */
  pairs?: string;
  /** Pairs: eval pairs of their own instead of a split drawn from `pairs`. */
  evalPairs?: string;
  /** Pairs: one SQLite file, or one PostgreSQL URL, for every row. */
  db?: string;
  /** Pairs on a PostgreSQL URL: gold checks and schemas through it (the CLI opens it from serve/). */
  postgres?: PostgresPairs;
  /** Pairs: share of the pairs drawn for eval (default 0.1), by row or by database. */
  evalFraction?: number;
  splitBy?: SplitBy;
  /** Pairs: time limit of each gold query's check (default 30 s). */
  checkTimeoutMs?: number;
  /** Databases for the parquet layout: a Spider folder or its database/ folder. */
  dbDir?: string;
  out: string;
  format: PromptFormat;
  /** Local model folder with tokenizer.json and tokenizer_config.json (chat_template). */
  modelDir: string;
  trainLimit: number;
  evalLimit: number;
  shuffle: boolean;
  seed: number;
  trainSplits: TrainSplits;
  sampleRows: number;
  maxPromptTokens: number;
  /** No progress output on stderr. */
  quiet?: boolean;
}

/**
 * The first `limit` rows, or with `shuffle` a random subset of `limit` rows drawn by a
 * Fisher-Yates shuffle driven by mulberry32(seed), returned in file order.
 */
export function selectExamples<T>(rows: readonly T[], limit: number, shuffle: boolean, seed: number): T[] {
  const n = Math.min(limit, rows.length);
  if (!shuffle) return rows.slice(0, n);
  const random = mulberry32(seed);
  const idx = rows.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx
    .slice(0, n)
    .sort((a, b) => a - b)
    .map((i) => rows[i]);
}

/** Nearest-rank percentiles (the smallest value with at least q of the values at or below it). */
export function lengthStats(values: readonly number[]): LengthStats {
  if (values.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] };
}

/**
 * Spider's hardness of a gold query, or null where Spider's own parser rejects it (a few gold
 * queries name tables their database does not have); such records are counted as `unparsed`.
 */
function hardnessOrNull(sql: string, schema: SpiderSchema): Hardness | null {
  try {
    return spiderHardness(sql, schema);
  } catch {
    return null;
  }
}

function checkCount(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new UserError(`--${name} must be a whole number >= 0, got ${v}`);
}

async function readSource(o: PrepareOptions): Promise<{
  splits: SpiderSplits;
  databases: Pick<SpiderDatabases, 'dbDir' | 'sqlitePath'>;
  layout: DatasetCard['source']['layout'];
  path: string;
  checks?: PairChecks;
  /** Pairs on PostgreSQL: each URL's schema as read from the catalog. */
  catalogs?: Map<string, SchemaSource>;
}> {
  if (o.pairs !== undefined) return readPairSource(o, o.pairs);
  if (o.bird !== undefined) {
    if (o.spider !== undefined || o.parquet !== undefined)
      throw new UserError('give one source: --bird DIR, --spider DIR or --parquet DIR');
    return { ...readBirdFolder(o.bird), layout: 'bird', path: o.bird };
  }
  if (o.parquet !== undefined) {
    const dbRoot = o.dbDir ?? o.spider;
    if (dbRoot === undefined)
      throw new UserError(
        '--parquet needs the databases too: give --db-dir DIR (a Spider folder or its database/ folder) or --spider DIR',
      );
    const splits = await readSpiderParquet(o.parquet, o.trainSplits);
    return { splits, databases: SpiderDatabases.open(dbRoot), layout: 'hf-parquet', path: o.parquet };
  }
  if (o.spider === undefined)
    throw new UserError('give --spider DIR (official Spider folder) or --parquet DIR with --db-dir DIR');
  const splits = readSpiderFolder(o.spider, o.trainSplits);
  return { splits, databases: SpiderDatabases.open(o.dbDir ?? o.spider), layout: 'spider-folder', path: o.spider };
}

export async function prepareDataset(o: PrepareOptions): Promise<DatasetCard> {
  // The output folder is made first: a bad --out fails before the tokenizing work.
  if (existsSync(o.out) && !statSync(o.out).isDirectory())
    throw new UserError(`--out ${o.out} is a file; give a folder for train.jsonl, eval.jsonl and dataset.json`);
  try {
    mkdirSync(o.out, { recursive: true });
  } catch (err) {
    throw new UserError(`cannot create the output folder ${o.out}: ${describeError(err)}`);
  }
  for (const [name, v] of [
    ['train-limit', o.trainLimit],
    ['eval-limit', o.evalLimit],
    ['sample-rows', o.sampleRows],
    ['seed', o.seed],
  ] as const)
    checkCount(name, v);
  if (!Number.isInteger(o.maxPromptTokens) || o.maxPromptTokens < 1)
    throw new UserError(`--max-prompt-tokens must be a whole number >= 1, got ${o.maxPromptTokens}`);
  const { splits, databases, layout, path, checks, catalogs = new Map<string, SchemaSource>() } = await readSource(o);
  const bird = layout === 'bird';
  // Spider's hardness is Spider's: BIRD grades its own difficulty, your own pairs have neither.
  const spiderData = layout === 'spider-folder' || layout === 'hf-parquet';
  const train = selectExamples(splits.train, o.trainLimit, o.shuffle, o.seed);
  const dev = selectExamples(splits.eval, o.evalLimit, o.shuffle, o.seed + 1);
  // Resolve every database before any work: a bad db_id fails at once, not halfway through.
  const sqlite = new Map<string, string>();
  for (const ex of [...train, ...dev])
    if ((ex as Partial<Pair>).dbPath !== undefined) continue;
    else if (!sqlite.has(ex.db_id)) sqlite.set(ex.db_id, databases.sqlitePath(ex.db_id, `example ${ex.id}`));

  const template = ChatTemplate.fromModelDir(o.modelDir);
  const tokenizer = Tokenizer.fromModelDir(o.modelDir);
  const builder = new PromptBuilder(template, tokenizer, {
    format: o.format,
    sampleRows: o.format === 'schema' ? o.sampleRows : 0,
    maxPromptTokens: o.maxPromptTokens,
  });
  const progress = new Progress({ label: 'prepare', total: train.length + dev.length, unit: 'ex', quiet: o.quiet });

  const build = (examples: SpiderExample[], available: number): { records: PromptRecord[]; card: SplitCard } => {
    const records: PromptRecord[] = [];
    const promptTokens: number[] = [];
    const textTokens: number[] = [];
    const hardness = Object.fromEntries([...HARDNESS_LEVELS, 'unparsed'].map((h) => [h, 0])) as NonNullable<
      SplitCard['hardness']
    >;
    const difficulty = Object.fromEntries([...BIRD_DIFFICULTIES, 'unknown'].map((d) => [d, 0])) as NonNullable<
      SplitCard['difficulty']
    >;
    const card = { trimmed: { sample_rows: 0, tables: 0 }, over_budget: 0 };
    for (const ex of examples) {
      const b = ex as Partial<Pair>;
      const dbPath = b.dbPath ?? (sqlite.get(ex.db_id) as string);
      const level = spiderData ? hardnessOrNull(ex.query, loadSpiderSchema(dbPath)) : null; // cached per database
      const question =
        b.evidence !== undefined && o.evidence !== false ? questionWithEvidence(ex.question, b.evidence) : ex.question;
      const catalog = catalogs.get(dbPath);
      const built = catalog
        ? builder.buildFor({ ...ex, question }, catalog)
        : builder.build({ ...ex, question }, dbPath);
      records.push({
        id: ex.id,
        db_id: ex.db_id,
        question: ex.question,
        ...(b.evidence !== undefined ? { evidence: b.evidence } : {}),
        query: ex.query,
        hardness: level,
        ...(b.difficulty !== undefined ? { difficulty: b.difficulty } : {}),
        ...(b.dbPath !== undefined ? { db_path: b.dbPath } : {}),
        messages: built.messages,
        text: built.text,
        prompt: built.prompt,
      });
      if (bird) difficulty[b.difficulty ?? 'unknown']++;
      else if (spiderData) hardness[level ?? 'unparsed']++;
      promptTokens.push(built.promptTokens);
      textTokens.push(built.textTokens);
      if (built.trimmedRows) card.trimmed.sample_rows++;
      if (built.trimmedTables) card.trimmed.tables++;
      if (built.overBudget) card.over_budget++;
      progress.tick();
    }
    return {
      records,
      card: {
        count: records.length,
        available,
        tokens: { prompt: lengthStats(promptTokens), text: lengthStats(textTokens) },
        ...(bird ? { difficulty } : spiderData ? { hardness } : {}),
        ...card,
      },
    };
  };
  const trainOut = build(train, splits.train.length);
  const evalOut = build(dev, splits.eval.length);
  progress.finish();

  const card: DatasetCard = {
    format: o.format,
    source: {
      layout,
      path: resolve(path),
      train_files: splits.trainFiles.map((f) => resolve(f)),
      eval_files: splits.evalFiles.map((f) => resolve(f)),
      databases: isPostgresUrl(databases.dbDir) ? databases.dbDir : resolve(databases.dbDir),
    },
    model: { dir: resolve(o.modelDir) },
    options: {
      train_limit: o.trainLimit,
      eval_limit: o.evalLimit,
      shuffle: o.shuffle,
      seed: o.shuffle ? o.seed : null,
      train_splits: o.trainSplits,
      sample_rows: o.format === 'schema' ? o.sampleRows : 0,
      max_prompt_tokens: o.maxPromptTokens,
      ...(bird || layout === 'pairs' ? { evidence: o.evidence !== false } : {}),
      ...(layout === 'pairs'
        ? o.evalPairs !== undefined
          ? { eval_pairs: resolve(o.evalPairs) }
          : { eval_fraction: o.evalFraction ?? 0.1, split_by: o.splitBy ?? 'row', split_seed: o.seed }
        : {}),
      ...(catalogs.size > 0 ? { dialect: 'postgresql' as const } : {}),
    },
    ...(checks ? { checks } : {}),
    selection: o.shuffle
      ? `seeded random subset (Fisher-Yates with mulberry32; train seed ${o.seed}, eval seed ${o.seed + 1}), kept in file order`
      : 'first N examples in file order',
    train: trainOut.card,
    eval: evalOut.card,
  };
  writeJsonl(join(o.out, 'train.jsonl'), trainOut.records);
  writeJsonl(join(o.out, 'eval.jsonl'), evalOut.records);
  writeFileAtomic(join(o.out, 'README.md'), datasetReadme(card, trainOut.records[0] ?? evalOut.records[0]));
  writeFileSync(join(o.out, 'dataset.json'), JSON.stringify(card, null, 2) + '\n');
  return card;
}
