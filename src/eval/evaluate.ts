/**
 * Scores predictions against gold, per example and in summary (overall and per Spider hardness):
 * the reference workflow's seed_exact / seed_token, Spider exact-set-match, execution accuracy.
 * Exact-set-match needs the database schemas and tables.json; execution needs the databases.
 * Whatever is missing is reported as null rather than guessed. BIRD gold (items with a
 * difficulty) is scored by BIRD's own execution rule (birdExecution.ts), per difficulty; your
 * own pairs (items with a db_path) by execution on their own files or PostgreSQL URLs (run
 * by the `postgres` executor the caller hands in). Neither gets Spider's hardness or
 * exact-set-match.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError, describeError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { exactSetMatch } from './exactSetMatch.js';
import { BIRD_DIFFICULTIES, birdExecutionMatch, type BirdDifficulty } from './birdExecution.js';
import { databaseVariants, executionMatch } from './execution.js';
import { HARDNESS_LEVELS, spiderHardness, type Hardness } from './hardness.js';
import type { EvalItem } from './predictions.js';
import { isPostgresUrl } from './postgresUrl.js';
import type { QueryExecutor } from './queryExecutor.js';
import { SqlSandbox } from './sandbox.js';
import { seedExactMatch, seedTokenMatch } from './seedMetrics.js';
import { loadForeignKeyMaps, loadSpiderSchema, type ForeignKeyMap, type SpiderSchema } from './spiderSchema.js';

/** Predictions longer than this are scored as wrong without being parsed or run (a gold query is under 1,000). */
export const MAX_PREDICTION_CHARS = 20_000;

export interface EvaluateOptions {
  /** Spider's database folder (`<db_id>/<db_id>.sqlite`): execution accuracy, hardness, schemas. */
  dbDir?: string;
  /** Spider's tables.json (foreign keys): with dbDir, enables exact-set-match. */
  tablesPath?: string;
  /** Per-query time limit; the official script's is 60 s, the CLI default 30 s. */
  timeoutMs?: number;
  /** Sandbox processes running queries in parallel. */
  workers?: number;
  keepDistinct?: boolean;
  /** Progress bar on stderr. */
  progress?: boolean;
  /** Runs the queries of pairs whose db_path is a PostgreSQL URL (serve/postgresExecutor.ts). */
  postgres?: QueryExecutor;
}

export interface ExampleResult {
  index: number;
  id?: string | number;
  db_id: string;
  hardness: Hardness | null;
  /** BIRD's difficulty, for BIRD gold records. */
  difficulty?: BirdDifficulty;
  seed_exact: boolean;
  seed_token: number;
  exact_set_match: boolean | null;
  execution: boolean | null;
  error?: string;
  /** Why the gold query failed on its database, when it did (see checkGoldErrors). */
  gold_error?: string;
  gold: string;
  pred: string;
}

/** `total` sums the per-example scores (1 per correct example; seed_token adds its fraction). */
export interface MetricScore {
  total: number;
  pct: number;
}

export interface LevelSummary {
  count: number;
  seed_exact: MetricScore;
  seed_token: MetricScore;
  exact_set_match: MetricScore | null;
  execution: MetricScore | null;
}

export interface Summary {
  overall: LevelSummary;
  /** Only the levels that have examples; empty when hardness is unknown. */
  by_hardness: Partial<Record<Hardness, LevelSummary>>;
  /** BIRD gold: per difficulty (simple / moderate / challenging), as BIRD's script reports. */
  by_difficulty?: Partial<Record<BirdDifficulty, LevelSummary>>;
}

export interface EvaluationReport {
  examples: ExampleResult[];
  summary: Summary;
}

export async function evaluatePredictions(
  items: readonly EvalItem[],
  opts: EvaluateOptions = {},
): Promise<EvaluationReport> {
  if (items.length === 0) throw new UserError('nothing to evaluate: no predictions');
  // Your own pairs name their database file; Spider's hardness, exact-set-match and its
  // dataset-specific rewrites ("value", DISTINCT) do not apply to them and are left out.
  const own = items.some((it) => it.db_path !== undefined);
  const dbPaths = own ? ownDatabases(items) : opts.dbDir === undefined ? null : resolveDatabases(items, opts.dbDir);
  // BIRD gold is scored by BIRD's rules only: its execution metric, per difficulty; Spider's
  // hardness and exact-set-match do not apply to it and are left out.
  const bird = items.some((it) => it.difficulty !== undefined);
  const spiderRules = !bird && !own;
  const fkMaps =
    opts.tablesPath === undefined || dbPaths === null || !spiderRules ? null : foreignKeyMaps(items, opts.tablesPath);
  // Schemas load before any query runs, so a bad database file stops the run at once.
  const schemas = new Map<string, SpiderSchema>();
  if (dbPaths && spiderRules && (fkMaps || items.some((it) => it.hardness === undefined))) {
    for (const [db, path] of dbPaths) {
      // loadSpiderSchema's errors name the file already.
      schemas.set(db, loadSpiderSchema(path));
    }
  }
  const variants = new Map<string, string[]>();
  const variantsOf = (db: string): string[] => {
    let v = variants.get(db);
    if (!v) variants.set(db, (v = databaseVariants(dbPaths!.get(db)!)));
    return v;
  };

  const onPostgres = own && [...dbPaths!.values()].some(isPostgresUrl);
  if (onPostgres && opts.postgres === undefined)
    throw new UserError('these pairs are on PostgreSQL: scoring them needs a PostgreSQL connection (internal)');
  const sqliteSandbox =
    dbPaths && [...dbPaths.values()].some((p) => !isPostgresUrl(p)) ? new SqlSandbox(opts.workers ?? 2) : null;
  const executorFor = (path: string): QueryExecutor => (isPostgresUrl(path) ? opts.postgres! : sqliteSandbox!);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const progress = new Progress({ label: 'evaluate', total: items.length, unit: 'ex', quiet: !opts.progress });
  const results: ExampleResult[] = new Array(items.length);
  let executed = 0;
  let executedOk = 0;

  const evaluateOne = async (it: EvalItem): Promise<ExampleResult> => {
    const errors: string[] = [];
    // A runaway generation is wrong whatever it holds; parsing or running megabytes of it is not worth the time.
    const tooLong = it.pred.length > MAX_PREDICTION_CHARS;
    if (tooLong)
      errors.push(
        `the prediction is ${it.pred.length} characters long, over the limit of ${MAX_PREDICTION_CHARS}: scored as wrong without parsing or running it`,
      );
    // The official script reads a literal "value" in a prediction as a placeholder for 1.
    const pred = spiderRules ? it.pred.replaceAll('value', '1') : it.pred;
    let hardness: Hardness | null = it.hardness ?? null;
    const schema = schemas.get(it.db_id);
    if (hardness === null && schema) {
      try {
        hardness = spiderHardness(it.gold, schema);
      } catch (err) {
        errors.push(`hardness: ${describeError(err)}`);
      }
    }
    let esm: boolean | null = null;
    if (fkMaps && schema && tooLong) esm = false;
    else if (fkMaps && schema) {
      try {
        const r = exactSetMatch(it.gold, pred, schema, fkMaps.get(it.db_id)!);
        esm = r.match;
        if (r.error) errors.push(`exact-set-match: ${r.error}`);
      } catch (err) {
        esm = false;
        errors.push(`exact-set-match: ${describeError(err)}`);
      }
    }
    let execution: boolean | null = null;
    let goldError: string | undefined;
    if (dbPaths && tooLong) execution = false;
    else if (dbPaths) {
      const r = bird
        ? await birdExecutionMatch(sqliteSandbox!, dbPaths!.get(it.db_id)!, it.gold, pred, timeoutMs)
        : own
          ? await executionMatch(executorFor(dbPaths!.get(it.db_id)!), [dbPaths!.get(it.db_id)!], it.gold, pred, {
              timeoutMs,
              keepDistinct: true,
            })
          : await executionMatch(sqliteSandbox!, variantsOf(it.db_id), it.gold, pred, {
              timeoutMs,
              keepDistinct: opts.keepDistinct,
            });
      execution = r.match;
      if (r.error) errors.push(`execution: ${r.error}`);
      if (r.goldFailed) goldError = r.error;
      executed++;
      if (r.match) executedOk++;
    }
    return {
      index: it.index,
      ...(it.id !== undefined ? { id: it.id } : {}),
      db_id: it.db_id,
      hardness,
      ...(it.difficulty !== undefined ? { difficulty: it.difficulty } : {}),
      seed_exact: seedExactMatch(it.gold, it.pred),
      seed_token: seedTokenMatch(it.gold, it.pred),
      exact_set_match: esm,
      execution,
      ...(errors.length ? { error: errors.join('; ') } : {}),
      ...(goldError !== undefined ? { gold_error: goldError } : {}),
      gold: it.gold,
      pred: it.pred,
    };
  };

  // Several examples in flight keep every sandbox process busy while another example is compared.
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const k = next++;
      try {
        results[k] = await evaluateOne(items[k]);
      } catch (err) {
        failed = true;
        throw err;
      }
      progress.tick(1, executed ? { exec: `${((100 * executedOk) / executed).toFixed(1)}%` } : undefined);
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.min(items.length, 2 * (sqliteSandbox?.size ?? (onPostgres ? 2 : 1))) }, lane),
    );
  } finally {
    sqliteSandbox?.close();
    progress.finish();
  }
  return { examples: results, summary: summarize(results) };
}

/** Each db_id's SQLite file; an unknown db_id stops the run before any work. */
function resolveDatabases(items: readonly EvalItem[], dbDir: string): Map<string, string> {
  if (!existsSync(dbDir)) throw new UserError(`database folder not found: ${dbDir}`);
  const out = new Map<string, string>();
  for (const it of items) {
    if (out.has(it.db_id)) continue;
    const path = join(dbDir, it.db_id, `${it.db_id}.sqlite`);
    if (!existsSync(path))
      throw new UserError(`unknown db_id "${it.db_id}" (example ${it.index}): ${path} does not exist`);
    out.set(it.db_id, path);
  }
  return out;
}

/** Pairs' own database files, keyed by db_id; one db_id naming two files is refused. */
function ownDatabases(items: readonly EvalItem[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const it of items) {
    if (it.db_path === undefined)
      throw new UserError(
        `example ${it.index} has no "db_path" while others do: mixed gold files cannot be scored together`,
      );
    if (!isPostgresUrl(it.db_path) && !existsSync(it.db_path))
      throw new UserError(`example ${it.index}: database file not found: ${it.db_path}`);
    const known = out.get(it.db_id);
    if (known !== undefined && known !== it.db_path)
      throw new UserError(
        `example ${it.index}: db_id "${it.db_id}" names both ${known} and ${it.db_path}; give them distinct db_id values`,
      );
    out.set(it.db_id, it.db_path);
  }
  return out;
}

function foreignKeyMaps(items: readonly EvalItem[], tablesPath: string): Map<string, ForeignKeyMap> {
  if (!existsSync(tablesPath)) throw new UserError(`tables.json not found: ${tablesPath}`);
  const maps = loadForeignKeyMaps(tablesPath);
  for (const it of items) {
    if (!maps.has(it.db_id))
      throw new UserError(`unknown db_id "${it.db_id}" (example ${it.index}): not in ${tablesPath}`);
  }
  return maps;
}

export function summarize(examples: readonly ExampleResult[]): Summary {
  const by_hardness: Partial<Record<Hardness, LevelSummary>> = {};
  for (const level of HARDNESS_LEVELS) {
    const some = examples.filter((e) => e.hardness === level);
    if (some.length) by_hardness[level] = summarizeLevel(some);
  }
  const summary: Summary = { overall: summarizeLevel(examples), by_hardness };
  if (examples.some((e) => e.difficulty !== undefined)) {
    const by_difficulty: Partial<Record<BirdDifficulty, LevelSummary>> = {};
    for (const level of BIRD_DIFFICULTIES) {
      const some = examples.filter((e) => e.difficulty === level);
      if (some.length) by_difficulty[level] = summarizeLevel(some);
    }
    summary.by_difficulty = by_difficulty;
  }
  return summary;
}

function summarizeLevel(examples: readonly ExampleResult[]): LevelSummary {
  const n = examples.length;
  const score = (pick: (e: ExampleResult) => number): MetricScore => {
    const total = examples.reduce((s, e) => s + pick(e), 0);
    return { total, pct: n ? (100 * total) / n : 0 };
  };
  // A metric is summarized only where every example has it (one run computes the same metrics for all).
  const optional = (pick: (e: ExampleResult) => boolean | null): MetricScore | null =>
    n > 0 && examples.every((e) => pick(e) !== null) ? score((e) => (pick(e) ? 1 : 0)) : null;
  return {
    count: n,
    seed_exact: score((e) => (e.seed_exact ? 1 : 0)),
    seed_token: score((e) => e.seed_token),
    exact_set_match: optional((e) => e.exact_set_match),
    execution: optional((e) => e.execution),
  };
}

/** The summary as a fixed-width table, levels as columns (as the official script prints). */
export function formatSummaryTable(summary: Summary): string {
  const byLevel: Partial<Record<string, LevelSummary>> = summary.by_difficulty ?? summary.by_hardness;
  // Without levels (your own pairs, or no databases to grade hardness), only the total is shown.
  const names: readonly string[] = summary.by_difficulty
    ? BIRD_DIFFICULTIES
    : Object.keys(summary.by_hardness).length > 0
      ? HARDNESS_LEVELS
      : [];
  const levels = [...names.map((h) => [h, byLevel[h]] as const), ['all', summary.overall] as const];
  const w = Math.max(9, ...names.map((n) => n.length + 1));
  const row = (name: string, cell: (l: LevelSummary) => string): string =>
    name.padEnd(18) + levels.map(([, l]) => (l ? cell(l) : '-').padStart(w)).join('');
  const pct = (pick: (l: LevelSummary) => MetricScore | null) => (l: LevelSummary) => {
    const m = pick(l);
    return m ? m.pct.toFixed(2) : 'n/a';
  };
  return (
    [
      ''.padEnd(18) + levels.map(([name]) => name.padStart(w)).join(''),
      row('count', (l) => String(l.count)),
      row(
        'seed exact %',
        pct((l) => l.seed_exact),
      ),
      row(
        'seed token %',
        pct((l) => l.seed_token),
      ),
      row(
        'exact-set-match %',
        pct((l) => l.exact_set_match),
      ),
      row(
        'execution %',
        pct((l) => l.execution),
      ),
    ].join('\n') + '\n'
  );
}
