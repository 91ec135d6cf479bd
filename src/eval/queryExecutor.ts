/**
 * What execution scoring needs of a database engine: one statement run read-only under a time
 * limit, its rows as comparison keys. SqlSandbox runs SQLite files; a PostgreSQL executor
 * (serve/postgresExecutor.ts) runs postgres:// targets and is handed down by the layer above.
 */
import type { QueryOutcome } from './sandbox.js';

export interface QueryExecutor {
  /** Runs `sql` on `target` (a SQLite path or a URL); with `maxRows`, reads at most one row past it. */
  execute(target: string, sql: string, timeoutMs: number, maxRows?: number): Promise<QueryOutcome>;
}

/**
 * A display cell as a comparison key, in the sandbox's key space (sandboxWorker.ts valueKey): an
 * integer equals the same whole float, text never equals a number.
 */
export function cellKey(v: string | number | null): string {
  if (v === null) return 'N';
  if (typeof v === 'number') return Number.isInteger(v) ? 'I' + BigInt(v).toString() : 'R' + String(v);
  return 'S' + v;
}
