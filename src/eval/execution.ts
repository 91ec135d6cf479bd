/**
 * Execution accuracy with the official Spider evaluator's semantics (taoyds/test-suite-sql-eval,
 * exec_eval.py): a prediction is right when, on every database of the gold database's folder,
 * it returns the same bag of rows as the gold query, up to a reordering of columns; row order
 * counts only when the gold query has `order by`. A prediction that fails or times out is wrong.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { QueryExecutor } from './queryExecutor.js';
import { sqlPieces } from './sandboxLexer.js';

export interface ExecutionOptions {
  timeoutMs: number;
  /** Compare with DISTINCT kept; the official default drops it from both queries. */
  keepDistinct?: boolean;
}

export interface ExecutionResult {
  match: boolean;
  error?: string;
  /** The gold query itself failed: a problem of the data, not of the prediction. */
  goldFailed?: boolean;
}

/**
 * The rewrites the official evaluator applies to both queries before running them: spaces inside
 * `> =`-style operators closed up, DISTINCT removed (unless kept), MySQL's YEAR(CURDATE()) -> 2020.
 */
export function prepareForExecution(sql: string, keepDistinct = false): string {
  let s = sql.replaceAll('> =', '>=').replaceAll('< =', '<=').replaceAll('! =', '!=');
  if (!keepDistinct) s = removeDistinct(s);
  return s.replace(/YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*/gi, '2020');
}

/**
 * Drops the DISTINCT keyword wherever it is a word of its own, not inside strings, quoted names or
 * comments. Like the official script (which rebuilds the query from sqlparse's first statement),
 * it keeps only the first statement: text after the first `;` outside quotes and comments is gone.
 */
export function removeDistinct(sql: string): string {
  const pieces = sqlPieces(sql);
  const end = pieces.findIndex((p) => p.kind === 'other' && p.text === ';');
  return (end < 0 ? pieces : pieces.slice(0, end + 1))
    .filter((p) => !(p.kind === 'word' && p.text.toLowerCase() === 'distinct'))
    .map((p) => p.text)
    .join('');
}

/**
 * Whether two results are the same relation: equal row count, equal column count, and some
 * permutation of the predicted columns making the rows equal as bags (or as lists when order matters).
 * Rows hold value keys, as the sandbox returns them.
 */
export function resultsEquivalent(gold: string[][], pred: string[][], orderMatters: boolean): boolean {
  if (gold.length === 0 && pred.length === 0) return true;
  if (gold.length !== pred.length) return false;
  const width = gold[0].length;
  if (pred[0].length !== width) return false;

  // A matching permutation maps each gold column onto a predicted column holding the same bag of
  // values; trying only those keeps the search small where the official script samples rows.
  const goldBags = columns(gold, width).map(bagKey);
  const predCols = columns(pred, width);
  const predBags = predCols.map(bagKey);
  const predSeqs = predCols.map((c) => JSON.stringify(c));
  const candidates = goldBags.map((bag) => predBags.flatMap((b, j) => (b === bag ? [j] : [])));
  if (candidates.some((c) => c.length === 0)) return false;

  const goldRows = gold.map((r) => JSON.stringify(r));
  const goldCounts = orderMatters ? null : countKeys(goldRows);
  const rowsMatch = (perm: number[]): boolean => {
    const permuted = pred.map((r) => JSON.stringify(perm.map((j) => r[j])));
    if (orderMatters) return permuted.every((r, k) => r === goldRows[k]);
    const counts = new Map(goldCounts!);
    for (const r of permuted) {
      const n = counts.get(r);
      if (!n) return false;
      counts.set(r, n - 1);
    }
    return true;
  };

  const perm: number[] = [];
  const used = new Set<number>();
  const search = (col: number): boolean => {
    if (col === width) return rowsMatch(perm);
    // Identical predicted columns are interchangeable: trying one of them is enough.
    const tried = new Set<string>();
    for (const j of candidates[col]) {
      if (used.has(j) || tried.has(predSeqs[j])) continue;
      tried.add(predSeqs[j]);
      used.add(j);
      perm.push(j);
      if (search(col + 1)) return true;
      perm.pop();
      used.delete(j);
    }
    return false;
  };
  return search(0);
}

function columns(rows: string[][], width: number): string[][] {
  return Array.from({ length: width }, (_, j) => rows.map((r) => r[j]));
}

function bagKey(column: string[]): string {
  return JSON.stringify([...column].sort());
}

function countKeys(keys: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

/**
 * The database files a gold query is checked on: every `.sqlite` file in the folder of the
 * example's database (one in Spider's release; many in a test-suite database folder).
 */
export function databaseVariants(dbPath: string): string[] {
  const dir = dirname(dbPath);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sqlite'))
    .sort()
    .map((f) => join(dir, f));
}

/** Runs gold and prediction on each database variant and compares the results. */
export async function executionMatch(
  sandbox: QueryExecutor,
  dbPaths: readonly string[],
  gold: string,
  pred: string,
  opts: ExecutionOptions,
): Promise<ExecutionResult> {
  const g = prepareForExecution(gold, opts.keepDistinct);
  const p = prepareForExecution(pred, opts.keepDistinct);
  if (p.trim() === '') return { match: false, error: 'empty prediction' };
  // The official check is this literal substring of the lower-cased gold query.
  const orderMatters = g.toLowerCase().includes('order by');
  for (const dbPath of dbPaths) {
    const where = dbPaths.length > 1 ? ` on ${dbPath}` : '';
    const goldOut = await sandbox.execute(dbPath, g, opts.timeoutMs);
    if (!goldOut.ok) return { match: false, error: `gold query failed${where}: ${goldOut.error}`, goldFailed: true };
    // A result with more rows than gold's is wrong whatever they hold: reading one row past
    // gold's count decides it, and a runaway result never fills memory.
    const predOut = await sandbox.execute(dbPath, p, opts.timeoutMs, goldOut.rows.length);
    if (!predOut.ok) return { match: false, error: `${predOut.error}${where}` };
    if (!resultsEquivalent(goldOut.rows, predOut.rows, orderMatters)) return { match: false };
  }
  return { match: true };
}
