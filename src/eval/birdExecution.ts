/**
 * Execution accuracy as BIRD's own evaluation computes it (AlibabaResearch/DAMO-ConvAI,
 * bird/llm/src/evaluation.py: execute_sql): both queries run unchanged on the example's one
 * database, and the prediction is right when `set(predicted_rows) == set(gold_rows)`. Rows are
 * tuples, so column order counts; row order and repeated rows do not. No DISTINCT removal, no
 * "value" placeholder, and an error or a timeout scores 0 (the script's meta_time_out is 30 s).
 */
import type { ExecutionResult } from './execution.js';
import type { QueryExecutor } from './queryExecutor.js';

export const BIRD_DIFFICULTIES = ['simple', 'moderate', 'challenging'] as const;
export type BirdDifficulty = (typeof BIRD_DIFFICULTIES)[number];

/** Python's set equality of row tuples, on the sandbox's value keys (1 and 1.0 share a key, as 1 == 1.0). */
export function birdResultsEqual(gold: readonly string[][], pred: readonly string[][]): boolean {
  const g = new Set(gold.map((r) => JSON.stringify(r)));
  const p = new Set(pred.map((r) => JSON.stringify(r)));
  if (g.size !== p.size) return false;
  for (const r of p) if (!g.has(r)) return false;
  return true;
}

export async function birdExecutionMatch(
  sandbox: QueryExecutor,
  dbPath: string,
  gold: string,
  pred: string,
  timeoutMs: number,
): Promise<ExecutionResult> {
  if (pred.trim() === '') return { match: false, error: 'empty prediction' };
  const goldOut = await sandbox.execute(dbPath, gold, timeoutMs);
  if (!goldOut.ok) return { match: false, error: `gold query failed: ${goldOut.error}`, goldFailed: true };
  // No row cap from gold's count: under set semantics a prediction with repeated rows may still be right.
  const predOut = await sandbox.execute(dbPath, pred, timeoutMs);
  if (!predOut.ok) return { match: false, error: predOut.error };
  return { match: birdResultsEqual(goldOut.rows, predOut.rows) };
}
