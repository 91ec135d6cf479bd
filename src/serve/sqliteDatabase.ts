/**
 * SQLite files as a SqlDatabase. The schema is read in this process on a read-only connection;
 * queries run in the evaluator's sandbox (src/eval/sandbox.ts): a child process on a read-only,
 * query_only connection that refuses anything but one row-returning statement, killed when a
 * query overruns its time limit, and capping result rows and bytes before values are copied.
 * Extensions cannot load: better-sqlite3 leaves SQL's load_extension() disabled.
 */
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { readTables, type TableInfo } from '../data/sqliteSchema.js';
import { SqlSandbox } from '../eval/sandbox.js';
import { TOO_LARGE } from '../eval/sandboxCells.js';
import { UserError, describeError } from '../util/errors.js';
import { DEFAULT_LIMITS, QueryError, type QueryLimits, type QueryResult, type SqlDatabase } from './database.js';

export interface SqliteOptions {
  /** Queries that may run at once (one child process each). */
  workers?: number;
}

export class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const;
  private readonly sandbox: SqlSandbox;

  private constructor(
    readonly name: string,
    private readonly path: string,
    private readonly schema: TableInfo[],
    opts: SqliteOptions,
  ) {
    this.sandbox = new SqlSandbox(opts.workers ?? 1);
  }

  /** Opens `path` read-only and reads its schema; a UserError names the file if either fails. */
  static open(name: string, path: string, opts: SqliteOptions = {}): SqliteDatabase {
    // better-sqlite3 says only "unable to open database file" for both: say which it is.
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) throw new UserError(`cannot open SQLite database ${path}: no such file`);
    if (st.isDirectory()) throw new UserError(`cannot open SQLite database ${path}: a folder, not a SQLite file`);
    return new SqliteDatabase(name, path, withConnection(path, readTables), opts);
  }

  tables(): Promise<TableInfo[]> {
    return Promise.resolve(this.schema);
  }

  sampleRows(table: string, k: number): Promise<unknown[][]> {
    const known = this.schema.find((t) => t.name === table);
    if (!known) return Promise.reject(new UserError(`no table ${table} in database ${this.name}`));
    return Promise.resolve(
      withConnection(
        this.path,
        (db) =>
          db
            .prepare(`SELECT * FROM "${known.name.replace(/"/g, '""')}" LIMIT ?`)
            .raw()
            .safeIntegers(true)
            .all(k) as unknown[][],
      ),
    );
  }

  async query(sql: string, limits: Partial<QueryLimits> = {}): Promise<QueryResult> {
    const { timeoutMs, maxRows, maxBytes } = { ...DEFAULT_LIMITS, ...limits };
    const out = await this.sandbox.table(this.path, sql, timeoutMs, { maxRows, maxBytes });
    if (!out.ok) throw new QueryError(out.error, out.timedOut ? 'timeout' : failureOf(out.error));
    return out.table;
  }

  close(): Promise<void> {
    this.sandbox.close();
    return Promise.resolve();
  }
}

function failureOf(error: string): 'rejected' | 'too_large' | 'sql' {
  if (error.startsWith('rejected:') || /more than one statement/.test(error)) return 'rejected';
  if (error.startsWith(TOO_LARGE)) return 'too_large';
  return 'sql';
}

function withConnection<T>(path: string, read: (db: Database.Database) => T): T {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    return read(db);
  } catch (err) {
    throw new UserError(`cannot open SQLite database ${path}: ${describeError(err)}`);
  } finally {
    db?.close();
  }
}
