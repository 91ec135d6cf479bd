/**
 * PostgreSQL targets for execution scoring and for `prepare --pairs --db postgres://...`: each
 * URL opened once as a PostgresDatabase (read-only wrapped queries, statement_timeout), rows
 * returned as the comparison keys the SQLite sandbox gives, and each database's schema and sample
 * rows as prompts show them. Targets are URLs without a password (what records carry); a URL
 * given with one at run time is used to connect, else pg takes PGPASSWORD from the environment.
 */
import type { SchemaSource } from '../data/prompts.js';
import { withoutPassword, urlDatabaseName } from '../eval/postgresUrl.js';
import { cellKey, type QueryExecutor } from '../eval/queryExecutor.js';
import type { QueryOutcome } from '../eval/sandbox.js';
import { describeError } from '../util/errors.js';
import { QueryError } from './database.js';
import { PostgresDatabase } from './postgresDatabase.js';
import { readSchemaSource } from './questionPrompts.js';

/** Rows and bytes a scored query may return: far past any gold result, short of filling memory. */
const SCORING_MAX_ROWS = 1_000_000;
const SCORING_MAX_BYTES = 256 * 1024 * 1024;

export class PostgresExecutor implements QueryExecutor {
  private readonly full = new Map<string, string>();
  private readonly open = new Map<string, Promise<PostgresDatabase>>();

  /** `urls`: URLs as given at run time (with their passwords), used for their password-less targets. */
  constructor(urls: readonly string[] = []) {
    for (const u of urls) this.full.set(withoutPassword(u), u);
  }

  /** Opens `target` once; a server that cannot be reached fails with one line (a UserError). */
  database(target: string): Promise<PostgresDatabase> {
    let db = this.open.get(target);
    if (!db) {
      db = PostgresDatabase.open(urlDatabaseName(target) ?? 'postgres', this.full.get(target) ?? target);
      this.open.set(target, db);
    }
    return db;
  }

  async execute(target: string, sql: string, timeoutMs: number, maxRows?: number): Promise<QueryOutcome> {
    const db = await this.database(target);
    try {
      const r = await db.query(sql, {
        timeoutMs,
        // One row past the cap, as the sandbox reads: a longer result is then seen to be longer.
        maxRows: maxRows === undefined ? SCORING_MAX_ROWS : maxRows + 1,
        maxBytes: SCORING_MAX_BYTES,
      });
      return { ok: true, rows: r.rows.map((row) => row.map(cellKey)) };
    } catch (err) {
      if (!(err instanceof QueryError)) throw err;
      return { ok: false, error: err.message, timedOut: err.failure === 'timeout' };
    }
  }

  /** The schema and `sampleRows` rows of each table, as `prepare --format schema` shows them. */
  async schema(target: string, sampleRows: number): Promise<SchemaSource> {
    return readSchemaSource(await this.database(target), sampleRows);
  }

  async close(): Promise<void> {
    const dbs = [...this.open.values()];
    this.open.clear();
    await Promise.all(dbs.map((d) => d.then((db) => db.close()).catch((err: unknown) => describeError(err))));
  }
}
