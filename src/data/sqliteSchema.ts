/**
 * A database's schema as SQLite statements, read from the database itself.
 *
 * The statements are rebuilt from PRAGMA table_info / foreign_key_list rather than copied from
 * sqlite_master.sql: Spider's stored DDL mixes tabs, quoting styles, comments and blank lines,
 * which cost prompt tokens and vary from database to database. The rebuilt form is uniform
 * (two-space indent, identifiers quoted only where SQLite needs it), keeps column names, declared
 * types, primary keys, UNIQUE constraints (a foreign key may need its target to be unique) and
 * foreign keys, and is valid SQLite (tests run every statement through SQLite and compare the
 * resulting tables with the original's). NOT NULL, DEFAULT and CHECK clauses are left out: they
 * rarely help to write a query and every token counts.
 */
import type { Database } from 'better-sqlite3';

export interface ColumnInfo {
  name: string;
  /** Declared type as written in the DDL ('' when none). */
  type: string;
  /** 1-based position in the primary key, 0 when not part of it. */
  pk: number;
}

export interface ForeignKey {
  columns: string[];
  table: string;
  /** The referenced table's schema where names need qualifying (PostgreSQL with several schemas). */
  schema?: string;
  /** Referenced columns; empty when the DDL names only the table (its primary key is meant). */
  refColumns: string[];
}

export interface TableInfo {
  name: string;
  /** The table's schema where names need qualifying (PostgreSQL with several schemas); SQLite: absent. */
  schema?: string;
  columns: ColumnInfo[];
  /** Column sets of UNIQUE constraints (not separate CREATE INDEX statements). */
  unique: string[][];
  foreignKeys: ForeignKey[];
}

// SQLite's keywords (sqlite.org/lang_keywords.html): an identifier spelled like one is quoted.
const SQLITE_KEYWORDS = new Set(
  `ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
  BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT
  CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC
  DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER
  FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN
  INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE
  LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS
  OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP
  REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET
  TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM
  VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT`.split(/\s+/),
);

// PostgreSQL's reserved key words (postgresql.org/docs/current/sql-keywords-appendix.html, reserved
// and reserved "(can be function or type)"): a column or table spelled like one is quoted.
const POSTGRES_KEYWORDS = new Set(
  `ALL ANALYSE ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC AUTHORIZATION BINARY BOTH CASE CAST CHECK
  COLLATE COLLATION COLUMN CONCURRENTLY CONSTRAINT CREATE CROSS CURRENT_CATALOG CURRENT_DATE
  CURRENT_ROLE CURRENT_SCHEMA CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER DEFAULT DEFERRABLE DESC
  DISTINCT DO ELSE END EXCEPT FALSE FETCH FOR FOREIGN FREEZE FROM FULL GRANT GROUP HAVING ILIKE IN
  INITIALLY INNER INTERSECT INTO IS ISNULL JOIN LATERAL LEADING LEFT LIKE LIMIT LOCALTIME
  LOCALTIMESTAMP NATURAL NOT NOTNULL NULL OFFSET ON ONLY OR ORDER OUTER OVERLAPS PLACING PRIMARY
  REFERENCES RETURNING RIGHT SELECT SESSION_USER SIMILAR SOME SYMMETRIC SYSTEM_USER TABLE
  TABLESAMPLE THEN TO TRAILING TRUE UNION UNIQUE USER USING VARIADIC VERBOSE WHEN WHERE WINDOW WITH`.split(/\s+/),
);

/** The SQL dialects prompts are written for. */
export type SqlDialect = 'sqlite' | 'postgresql';

/**
 * An identifier as SQL: bare when it is a plain word and not a keyword, else double-quoted.
 * PostgreSQL folds bare names to lower case, so there only lower-case names go bare.
 */
export function quoteIdent(name: string, dialect: SqlDialect = 'sqlite'): string {
  const bare =
    dialect === 'sqlite'
      ? /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !SQLITE_KEYWORDS.has(name.toUpperCase())
      : /^[a-z_][a-z0-9_]*$/.test(name) && !POSTGRES_KEYWORDS.has(name.toUpperCase());
  return bare ? name : `"${name.replace(/"/g, '""')}"`;
}

/** A table's name as SQL, with its schema where it carries one. */
function tableName(name: string, schema: string | undefined, dialect: SqlDialect): string {
  return (schema !== undefined ? quoteIdent(schema, dialect) + '.' : '') + quoteIdent(name, dialect);
}

/** The user tables of a database, in creation order (internal sqlite_* tables and views left out). */
export function readTables(db: Database): TableInfo[] {
  const names = db
    .prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
    )
    .pluck()
    .all() as string[];
  return names.map((name) => {
    const cols = db.prepare(`PRAGMA table_info(${quoteIdent(name)})`).all() as {
      name: string;
      type: string;
      pk: number;
    }[];
    const fkRows = db.prepare(`PRAGMA foreign_key_list(${quoteIdent(name)})`).all() as {
      id: number;
      seq: number;
      table: string;
      from: string;
      to: string | null;
    }[];
    // PRAGMA lists constraints last-declared first (id 0 is the last one): restore DDL order.
    const byId = new Map<number, typeof fkRows>();
    for (const r of fkRows) byId.set(r.id, [...(byId.get(r.id) ?? []), r]);
    const foreignKeys = [...byId.entries()]
      .sort(([a], [b]) => b - a)
      .map(([, rows]) => {
        rows.sort((a, b) => a.seq - b.seq);
        return {
          columns: rows.map((r) => r.from),
          table: rows[0].table,
          refColumns: rows.every((r) => r.to !== null) ? rows.map((r) => r.to as string) : [],
        };
      });
    const indexes = db.prepare(`PRAGMA index_list(${quoteIdent(name)})`).all() as {
      seq: number;
      name: string;
      origin: string;
    }[];
    const unique = indexes
      .filter((ix) => ix.origin === 'u')
      .sort((a, b) => b.seq - a.seq)
      .map((ix) =>
        (db.prepare(`PRAGMA index_info(${quoteIdent(ix.name)})`).all() as { seqno: number; name: string }[])
          .sort((a, b) => a.seqno - b.seqno)
          .map((c) => c.name),
      );
    return { name, columns: cols.map((c) => ({ name: c.name, type: c.type, pk: c.pk })), unique, foreignKeys };
  });
}

/** `CREATE TABLE ... );` for one table of a SQLite database: columns with types, primary key, foreign keys. */
export function createTableSql(table: TableInfo): string {
  return createTableStatement(table, 'sqlite');
}

/** `CREATE TABLE ... );` in the given dialect (identifiers quoted as it needs, schemas named). */
export function createTableStatement(table: TableInfo, dialect: SqlDialect): string {
  const q = (name: string) => quoteIdent(name, dialect);
  const pkCols = table.columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  const lines = table.columns.map((c) => {
    const inlinePk = pkCols.length === 1 && pkCols[0] === c ? ' PRIMARY KEY' : '';
    const inlineUnique = table.unique.some((u) => u.length === 1 && u[0] === c.name) ? ' UNIQUE' : '';
    return `  ${q(c.name)}${c.type ? ' ' + c.type : ''}${inlinePk}${inlineUnique}`;
  });
  if (pkCols.length > 1) lines.push(`  PRIMARY KEY (${pkCols.map((c) => q(c.name)).join(', ')})`);
  for (const u of table.unique) if (u.length > 1) lines.push(`  UNIQUE (${u.map(q).join(', ')})`);
  for (const fk of table.foreignKeys) {
    const ref = fk.refColumns.length > 0 ? `(${fk.refColumns.map(q).join(', ')})` : '';
    const target = tableName(fk.table, fk.schema, dialect);
    lines.push(`  FOREIGN KEY (${fk.columns.map(q).join(', ')}) REFERENCES ${target}${ref}`);
  }
  return `CREATE TABLE ${tableName(table.name, table.schema, dialect)} (\n${lines.join(',\n')}\n);`;
}

/** Longest text value shown in a sample row; longer ones are cut and marked with `...`. */
export const SAMPLE_TEXT_CHARS = 40;

function sqlLiteral(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number') {
    if (Number.isInteger(v) || String(v).length <= 12) return String(v);
    return String(Number(v.toPrecision(8)));
  }
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return `X'${v.subarray(0, 16).toString('hex').toUpperCase()}'`;
  // Whitespace runs (newlines included) collapse so a row stays on one line.
  let s = String(v).replace(/\s+/g, ' ');
  if (s.length > SAMPLE_TEXT_CHARS) s = s.slice(0, SAMPLE_TEXT_CHARS) + '...';
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * The first `k` rows of a table as one `INSERT INTO ... VALUES` statement (values shortened, see
 * SAMPLE_TEXT_CHARS), or '' when the table is empty or k is 0.
 */
export function sampleRowsSql(db: Database, table: TableInfo, k: number): string {
  if (k <= 0) return '';
  const rows = db
    .prepare(`SELECT * FROM ${quoteIdent(table.name)} LIMIT ?`)
    .raw()
    .safeIntegers(true)
    .all(k) as unknown[][];
  return insertRowsSql(table, rows, 'sqlite');
}

/** Rows of a table (values as read: numbers, bigints, strings, Buffers, null) as one INSERT, or ''. */
export function insertRowsSql(table: TableInfo, rows: unknown[][], dialect: SqlDialect): string {
  if (rows.length === 0) return '';
  return `INSERT INTO ${tableName(table.name, table.schema, dialect)} VALUES\n${rows.map((r) => `(${r.map(sqlLiteral).join(', ')})`).join(',\n')};`;
}
