/**
 * What `prepare --pairs` checks before writing anything, and how it splits: gold SQL that fails
 * on its database is kept out (with its error), exact duplicates are dropped, the rest is split
 * at random or by database (no database in both splits), and a question asked of the same
 * database in both splits is taken out of train, so evaluation never scores a memorised answer.
 */
import { isPostgresUrl } from '../eval/postgresUrl.js';
import type { QueryExecutor } from '../eval/queryExecutor.js';
import { SqlSandbox } from '../eval/sandbox.js';
import { UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { mulberry32 } from '../util/random.js';
import type { Pair } from './pairs.js';

export type SplitBy = 'row' | 'db';
export const SPLIT_BY: readonly SplitBy[] = ['row', 'db'];

export interface PairIssue {
  id: string;
  /** FILE:ROW of the pair. */
  where: string;
  reason: string;
}

/** dataset.json's `checks`: what was kept out, and why. */
export interface PairChecks {
  pairs: number;
  gold_failed: PairIssue[];
  duplicates: PairIssue[];
  /** Train pairs removed because the same question on the same database is in eval. */
  in_both_splits: PairIssue[];
}

export interface SplitOptions {
  /** Pairs file, named when a split comes out empty. */
  file: string;
  /** Explicit eval pairs (--eval-pairs): no split is drawn. */
  evalPairs?: Pair[];
  evalFile?: string;
  evalFraction: number;
  seed: number;
  splitBy: SplitBy;
  timeoutMs: number;
  quiet?: boolean;
  /** Runs the gold SQL of pairs on PostgreSQL URLs (read-only). */
  postgres?: QueryExecutor;
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const random = mulberry32(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const questionKey = (p: Pair) => `${p.dbPath}\0${p.question.toLowerCase().replace(/\s+/g, ' ')}`;

/** Eval's share of the pairs: a seeded random set of rows, or of whole databases until the share is reached. */
export function splitPairs(
  pairs: readonly Pair[],
  fraction: number,
  seed: number,
  by: SplitBy,
): { train: Pair[]; eval: Pair[] } {
  const want = Math.round(fraction * pairs.length);
  const inEval = new Set<Pair>();
  if (by === 'row') for (const p of shuffled(pairs, seed).slice(0, want)) inEval.add(p);
  else {
    const dbs = shuffled([...new Set(pairs.map((p) => p.dbPath))].sort(), seed);
    for (const db of dbs) {
      if (inEval.size >= want) break;
      for (const p of pairs) if (p.dbPath === db) inEval.add(p);
    }
  }
  return { train: pairs.filter((p) => !inEval.has(p)), eval: pairs.filter((p) => inEval.has(p)) };
}

async function goldFailures(
  pairs: readonly Pair[],
  timeoutMs: number,
  quiet?: boolean,
  postgres?: QueryExecutor,
): Promise<Map<Pair, string>> {
  const sandbox = pairs.some((p) => !isPostgresUrl(p.dbPath)) ? new SqlSandbox(2) : null;
  const executorFor = (p: Pair): QueryExecutor => {
    if (!isPostgresUrl(p.dbPath)) return sandbox!;
    if (postgres === undefined) throw new Error('internal: PostgreSQL pairs need a PostgreSQL executor');
    return postgres;
  };
  const progress = new Progress({ label: 'check gold SQL', total: pairs.length, unit: 'q', quiet });
  const failed = new Map<Pair, string>();
  let next = 0;
  const lane = async () => {
    while (next < pairs.length) {
      const p = pairs[next++];
      // One row is enough to know the query runs.
      const out = await executorFor(p).execute(p.dbPath, p.query, timeoutMs, 1);
      if (!out.ok) failed.set(p, out.error);
      progress.tick();
    }
  };
  try {
    await Promise.all([lane(), lane(), lane(), lane()]);
  } finally {
    sandbox?.close();
    progress.finish();
  }
  return failed;
}

export async function checkAndSplit(
  pairs: readonly Pair[],
  o: SplitOptions,
): Promise<{ train: Pair[]; eval: Pair[]; checks: PairChecks }> {
  if (o.evalPairs === undefined && !(o.evalFraction > 0 && o.evalFraction < 1))
    throw new UserError(`--eval-fraction must be between 0 and 1 (exclusive), got ${o.evalFraction}`);
  const all = [...pairs, ...(o.evalPairs ?? [])];
  const checks: PairChecks = { pairs: all.length, gold_failed: [], duplicates: [], in_both_splits: [] };
  const seen = new Map<string, Pair>();
  const unique = all.filter((p) => {
    const key = `${p.dbPath}\0${p.question}\0${p.query}`;
    const first = seen.get(key);
    if (first) {
      checks.duplicates.push({ id: p.id, where: p.where, reason: `same question, SQL and database as ${first.where}` });
      return false;
    }
    seen.set(key, p);
    return true;
  });
  const failed = await goldFailures(unique, o.timeoutMs, o.quiet, o.postgres);
  const ok = unique.filter((p) => {
    const error = failed.get(p);
    if (error !== undefined) checks.gold_failed.push({ id: p.id, where: p.where, reason: error });
    return error === undefined;
  });
  const explicit = new Set(o.evalPairs ?? []);
  const drawn =
    o.evalPairs !== undefined
      ? { train: ok.filter((p) => !explicit.has(p)), eval: ok.filter((p) => explicit.has(p)) }
      : splitPairs(ok, o.evalFraction, o.seed, o.splitBy);
  const evalSet = drawn.eval;
  const evalQuestions = new Map(evalSet.map((p) => [questionKey(p), p]));
  const train = drawn.train.filter((p) => {
    const twin = evalQuestions.get(questionKey(p));
    if (twin)
      checks.in_both_splits.push({
        id: p.id,
        where: p.where,
        reason: `same question on the same database as eval ${twin.where}`,
      });
    return !twin;
  });
  const kept = `${checks.gold_failed.length} with failing gold SQL, ${checks.duplicates.length} duplicates, ${checks.in_both_splits.length} in both splits kept out`;
  if (train.length === 0) throw new UserError(`${o.file}: the train split is empty after the checks (${kept})`);
  if (evalSet.length === 0)
    throw new UserError(
      `${o.evalFile ?? o.file}: the eval split is empty after the checks (${kept})${o.evalPairs === undefined ? '; raise --eval-fraction' : ''}`,
    );
  return { train, eval: evalSet, checks };
}

/** The checks as a table for the terminal: one row per pair kept out. */
export function formatChecks(c: PairChecks): string {
  const rows: [string, PairIssue][] = [
    ...c.gold_failed.map((i) => ['gold SQL fails', i] as [string, PairIssue]),
    ...c.duplicates.map((i) => ['duplicate', i] as [string, PairIssue]),
    ...c.in_both_splits.map((i) => ['in both splits', i] as [string, PairIssue]),
  ];
  const head = `checked ${c.pairs} pairs: ${c.gold_failed.length} gold SQL failing, ${c.duplicates.length} duplicates, ${c.in_both_splits.length} questions in both splits (removed from train)`;
  if (rows.length === 0) return head + '\n';
  const w = Math.max(...rows.map(([, i]) => i.where.length));
  return [head, ...rows.map(([what, i]) => `  ${what.padEnd(15)} ${i.where.padEnd(w)}  ${i.reason}`)].join('\n') + '\n';
}
