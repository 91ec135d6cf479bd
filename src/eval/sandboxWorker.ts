/**
 * Child-process side of the SQL sandbox (see sandbox.ts). It runs one query at a time on
 * read-only connections; the parent kills this process when a query overruns its time limit,
 * because a synchronous better-sqlite3 call cannot be interrupted from JavaScript.
 */
import Database from 'better-sqlite3';
import type { SandboxReply, SandboxRequest } from './sandbox.js';
import { readCells } from './sandboxCells.js';
import { doubleQuotedToString } from './sandboxLexer.js';

const connections = new Map<string, Database.Database>();

function connect(dbPath: string): Database.Database {
  let db = connections.get(dbPath);
  if (!db) {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
    // A second lock besides the read-only open: SQLite itself refuses every write on this connection.
    db.pragma('query_only = 1');
    connections.set(dbPath, db);
  }
  return db;
}

/**
 * A value as a string that is equal exactly when Python's sqlite3 values compare equal
 * (the official evaluator compares Python tuples): an integer equals the same whole float,
 * text never equals a number, blobs compare by bytes.
 */
function valueKey(v: unknown): string {
  if (v === null) return 'N';
  if (typeof v === 'bigint') return 'I' + v.toString();
  if (typeof v === 'number') return Number.isInteger(v) ? 'I' + BigInt(v).toString() : 'R' + String(v);
  if (typeof v === 'string') return 'S' + v;
  if (v instanceof Uint8Array) return 'B' + Buffer.from(v).toString('hex');
  return 'U' + String(v);
}

const DQS_HINT = /^no such column: "(.*)" - should this be a string literal in single-quotes\?$/s;

/**
 * Prepares with SQLite's legacy reading of "text" as a string where no column of that name exists
 * (better-sqlite3 is built without it; Spider's gold queries need it): on SQLite's hint, the token
 * is rewritten as a string literal and the statement prepared again.
 */
function prepareAllowingDoubleQuotedStrings(db: Database.Database, sql: string): Database.Statement {
  for (let attempt = 0; ; attempt++) {
    try {
      return db.prepare(sql);
    } catch (err) {
      const hint = attempt < 100 && err instanceof Error ? DQS_HINT.exec(err.message) : null;
      const rewritten = hint ? doubleQuotedToString(sql, hint[1]) : sql;
      if (rewritten === sql) throw err;
      sql = rewritten;
    }
  }
}

function runQuery(req: SandboxRequest): SandboxReply {
  try {
    const stmt = prepareAllowingDoubleQuotedStrings(connect(req.dbPath), req.sql);
    if (!stmt.readonly)
      return {
        id: req.id,
        ok: false,
        error: 'rejected: the statement would modify the database (only read-only queries are run)',
      };
    if (!stmt.reader)
      return { id: req.id, ok: false, error: 'rejected: the statement returns no rows (only queries are run)' };
    if (req.cells) return { id: req.id, ok: true, table: readCells(connect(req.dbPath), stmt, req.cells) };
    stmt.raw(true).safeIntegers(true);
    const rows: string[][] = [];
    const limit = req.maxRows ?? Infinity;
    for (const row of stmt.iterate() as IterableIterator<unknown[]>) {
      rows.push(row.map(valueKey));
      if (rows.length > limit) break;
    }
    return { id: req.id, ok: true, rows };
  } catch (err) {
    return { id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

process.on('message', (msg: SandboxRequest) => {
  process.send?.(runQuery(msg));
});
// The parent went away (crashed or exited without closing us): nothing left to answer.
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true });
