/**
 * Your own question/SQL pairs: a JSONL or CSV file of {question, sql, db_id | db_path, evidence?}
 * over SQLite databases (or one PostgreSQL database for every row: `--db postgres://...`), each row resolved to its database file before anything else runs, so a
 * bad row stops the run with one line naming the file, the row and the field.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { parseCsv } from '../util/csv.js';
import { UserError } from '../util/errors.js';
import { parseJsonl, readTextFile } from '../util/jsonl.js';
import { isPostgresUrl, urlDatabaseName, withoutPassword } from '../eval/postgresUrl.js';
import type { BirdExample } from './bird.js';

/** One pair, resolved: `dbPath` is the absolute path of its SQLite file, or a PostgreSQL URL without its password. */
export interface Pair extends BirdExample {
  dbPath: string;
  /** FILE:ROW, for messages. */
  where: string;
}

/** Where the databases are: a folder of db_ids, or one file for every row. */
export interface PairDatabases {
  dbDir?: string;
  /** A SQLite file or a PostgreSQL URL. */
  db?: string;
}

const SQLITE_MAGIC = 'SQLite format 3\0';

/** Whether a file starts with SQLite's header (an empty file is not a database either). */
export function isSqliteFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(16);
    return readSync(fd, buf, 0, 16, 0) === 16 && buf.toString('latin1') === SQLITE_MAGIC;
  } finally {
    closeSync(fd);
  }
}

function checkSqlite(path: string, where: string): string {
  if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`${where}: database file not found: ${path}`);
  if (!isSqliteFile(path)) throw new UserError(`${where}: ${path} is not a SQLite database (no SQLite header)`);
  return resolve(path);
}

interface RawRow {
  where: string;
  fields: Record<string, string | undefined>;
}

function readRows(path: string): RawRow[] {
  const text = readTextFile(path, 'pairs file');
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl') {
    const lines = text.split('\n').flatMap((l, i) => (l.trim() === '' ? [] : [i + 1]));
    return parseJsonl<unknown>(text, path).map((r, k) => {
      const where = `${path}:${lines[k]}`;
      if (r === null || typeof r !== 'object' || Array.isArray(r))
        throw new UserError(`${where}: expected a JSON object`);
      const fields: Record<string, string | undefined> = {};
      for (const [key, v] of Object.entries(r as Record<string, unknown>)) {
        if (v === null || v === undefined) continue;
        if (typeof v !== 'string') throw new UserError(`${where}: field "${key}" must be a string`);
        fields[key] = v;
      }
      return { where, fields };
    });
  }
  if (ext === '.csv') {
    const [header, ...records] = parseCsv(text, path);
    if (header === undefined) throw new UserError(`${path} is empty`);
    const names = header.fields.map((f) => f.trim());
    for (const need of ['question', 'sql'])
      if (!names.includes(need))
        throw new UserError(
          `${path}:${header.line}: the header has no "${need}" column (columns: ${names.join(', ')})`,
        );
    return records.map((rec) => {
      const where = `${path}:${rec.line}`;
      if (rec.fields.length !== names.length)
        throw new UserError(`${where}: ${rec.fields.length} fields, the header has ${names.length}`);
      return { where, fields: Object.fromEntries(names.map((n, j) => [n, rec.fields[j]])) };
    });
  }
  throw new UserError(`${path}: pairs must be a .jsonl or .csv file`);
}

/**
 * Reads a pairs file; `prefix` makes the ids (`pair-<row>`, `eval-<row>`). Each row's database:
 * its db_path (relative to the pairs file), its db_id under --db-dir (<id>/<id>.sqlite or
 * <id>.sqlite), or --db for every row.
 */
export function readPairs(path: string, dbs: PairDatabases, prefix: string): Pair[] {
  if (!existsSync(path)) throw new UserError(`pairs file not found: ${path}`);
  const onPostgres = dbs.db !== undefined && isPostgresUrl(dbs.db);
  if (dbs.db !== undefined && !onPostgres) checkSqlite(dbs.db, '--db');
  const rows = readRows(path);
  if (rows.length === 0) throw new UserError(`${path} has no pairs`);
  const byId = new Map<string, Pair>();
  return rows.map(({ where, fields }, k) => {
    for (const need of ['question', 'sql'])
      if (fields[need] === undefined || fields[need]!.trim() === '')
        throw new UserError(`${where}: field "${need}" is missing or empty`);
    const dbPathField = fields.db_path?.trim() || undefined;
    const dbIdField = fields.db_id?.trim() || undefined;
    let dbPath: string;
    if (dbPathField !== undefined) {
      const p = isAbsolute(dbPathField) ? dbPathField : join(dirname(path), dbPathField);
      dbPath = checkSqlite(p, `${where}: field "db_path"`);
    } else if (dbs.db !== undefined) {
      dbPath = onPostgres ? withoutPassword(dbs.db) : resolve(dbs.db);
    } else if (dbIdField !== undefined) {
      if (dbs.dbDir === undefined)
        throw new UserError(`${where}: field "db_id" needs --db-dir DIR (or give db_path, or --db FILE for every row)`);
      const nested = join(dbs.dbDir, dbIdField, `${dbIdField}.sqlite`);
      const flat = join(dbs.dbDir, `${dbIdField}.sqlite`);
      const found = [nested, flat].find((p) => existsSync(p));
      if (found === undefined)
        throw new UserError(`${where}: field "db_id": unknown database "${dbIdField}" (no ${nested} or ${flat})`);
      dbPath = checkSqlite(found, `${where}: field "db_id"`);
    } else {
      throw new UserError(`${where}: field "db_id" or "db_path" is missing (or pass --db FILE for every row)`);
    }
    const dbId =
      dbIdField ??
      (isPostgresUrl(dbPath)
        ? (urlDatabaseName(dbPath) ?? 'postgres')
        : basename(dbPath).replace(/\.(sqlite3?|db)$/i, ''));
    const other = byId.get(dbId);
    if (other !== undefined && other.dbPath !== dbPath)
      throw new UserError(
        `${where}: field "db_path": database name "${dbId}" is also ${other.dbPath} (${other.where}); give these rows distinct db_id values`,
      );
    const pair: Pair = {
      id: `${prefix}-${k}`,
      db_id: dbId,
      question: fields.question!.trim(),
      query: fields.sql!.trim(),
      evidence: fields.evidence?.trim() ?? '',
      dbPath,
      where,
    };
    byId.set(dbId, pair);
    return pair;
  });
}
