/** `--db` specs to databases: a postgres:// or postgresql:// URL (anything starting postgres:), else a SQLite file path. */
import { basename, extname } from 'node:path';
import type { SqlDatabase } from './database.js';
import { PostgresDatabase } from './postgresDatabase.js';
import { SqliteDatabase } from './sqliteDatabase.js';
import { isPostgresUrl, urlDatabaseName } from '../eval/postgresUrl.js';

export interface OpenOptions {
  /** Queries that may run at once: SQLite sandbox processes, PostgreSQL connections (default 1 and 4). */
  concurrency?: number;
}

/**
 * Opens the database `spec` names under `name` and reads its schema, so that a file that is not
 * a database, or a server that cannot be reached, fails here with one line (a UserError).
 */
export async function openDatabase(name: string, spec: string, opts: OpenOptions = {}): Promise<SqlDatabase> {
  if (isPostgresUrl(spec)) return PostgresDatabase.open(name, spec, { connections: opts.concurrency });
  return Promise.resolve(SqliteDatabase.open(name, spec, { workers: opts.concurrency }));
}

/** The name a database goes by when none is given: a file's base name, a URL's database. */
export function defaultDatabaseName(spec: string): string {
  // A malformed URL is reported when it is opened.
  if (isPostgresUrl(spec)) return urlDatabaseName(spec) ?? 'postgres';
  return basename(spec, extname(spec));
}
