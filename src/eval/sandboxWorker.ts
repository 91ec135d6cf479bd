/**
 * Child-process side of the SQL sandbox (see sandbox.ts). It runs one query at a time on
 * read-only connections; the parent kills this process when a query overruns its time limit,
 * because a synchronous better-sqlite3 call cannot be interrupted from JavaScript.
 */
import Database from 'better-sqlite3';
import { Worker } from 'node:worker_threads';
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

/**
 * Result bytes a query may return (value keys, as sent to the parent): a bigger result is
 * refused as "too large" before it fills this process's memory. Gold results are kilobytes.
 */
export const MAX_RESULT_BYTES = 64 * 2 ** 20;

class ResultTooLarge extends Error {}

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
    let bytes = 0;
    const sized = (v: unknown): string => {
      // Blobs are measured before their hex key is built: the key is twice their size.
      const size = v instanceof Uint8Array ? 2 * v.length : typeof v === 'string' ? v.length : 0;
      if (bytes + size > MAX_RESULT_BYTES) throw new ResultTooLarge();
      const key = valueKey(v);
      bytes += key.length;
      return key;
    };
    for (const row of stmt.iterate() as IterableIterator<unknown[]>) {
      rows.push(row.map(sized));
      if (rows.length > limit) break;
    }
    return { id: req.id, ok: true, rows };
  } catch (err) {
    if (err instanceof ResultTooLarge)
      return {
        id: req.id,
        ok: false,
        error: `result too large (over ${MAX_RESULT_BYTES / 2 ** 20} MB): only queries with small results are compared`,
      };
    return { id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

process.on('message', (msg: SandboxRequest) => {
  process.send?.(runQuery(msg));
});
// The parent went away (crashed or exited without closing us): nothing left to answer.
process.on('disconnect', () => process.exit(0));
// 'disconnect' cannot fire while a query runs (a synchronous native call blocks this thread), and
// a parent killed by a signal runs no cleanup: a thread of our own watches for being orphaned
// (our parent pid changes when the parent dies) and kills this whole process, query and all.
const watchdog = new Worker(
  `const { workerData } = require('node:worker_threads');
   setInterval(() => { if (process.ppid !== workerData) process.kill(process.pid, 'SIGKILL'); }, 100);`,
  { eval: true, workerData: process.ppid, execArgv: [] },
);
watchdog.unref();
process.send?.({ ready: true });
