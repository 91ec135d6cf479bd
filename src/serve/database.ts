/**
 * What `ask`, `serve` and `prepare --pairs` need of a user's database, whatever its engine: its
 * schema (to build the prompt the adapter was trained on) and read-only execution of generated
 * SQL under limits. Implementations: SQLite files and PostgreSQL URLs.
 */
import type { SqlDialect, TableInfo } from '../data/sqliteSchema.js';
import { UserError } from '../util/errors.js';

export type Dialect = SqlDialect;

export interface QueryLimits {
  /** Per-query wall-clock limit. */
  timeoutMs: number;
  /** Rows returned at most; more set `truncated`. */
  maxRows: number;
  /** Bytes of result values at most (a larger result fails the query as "result too large"). */
  maxBytes: number;
}

/** What a query gets unless the caller says otherwise. */
export const DEFAULT_LIMITS: QueryLimits = { timeoutMs: 10_000, maxRows: 1000, maxBytes: 8 * 1024 * 1024 };

/** Why a query failed: what the client may be told (never a path or a stack trace). */
export type QueryFailure = 'rejected' | 'timeout' | 'too_large' | 'sql';

/** A failed query; its message is one line fit to show the user. */
export class QueryError extends UserError {
  constructor(
    message: string,
    readonly failure: QueryFailure,
  ) {
    super(message);
    this.name = 'QueryError';
  }
}

export interface QueryResult {
  columns: string[];
  /** JSON-safe cells: string, number, null (blobs as hex strings, bigints as strings). */
  rows: (string | number | null)[][];
  /** Rows the query returned before the cap (equal to rows.length unless truncated). */
  rowCount: number;
  truncated: boolean;
  elapsedMs: number;
}

export interface SqlDatabase {
  /** The name requests use (`--db NAME=...`), never a path. */
  readonly name: string;
  readonly dialect: Dialect;
  /** Tables, columns, types, primary and foreign keys. */
  tables(): Promise<TableInfo[]>;
  /**
   * The first `k` rows of a table (named as tables() names it, `schema.table` where it carries a
   * schema) as values: the prompt's sample rows.
   */
  sampleRows(table: string, k: number): Promise<unknown[][]>;
  /** Runs one statement read-only; rejects with a QueryError on any failure. */
  query(sql: string, limits?: Partial<QueryLimits>): Promise<QueryResult>;
  close(): Promise<void>;
}
