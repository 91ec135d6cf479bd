/**
 * Reading a query's rows as display cells under a row and byte cap, in the sandbox's child
 * process. Bytes are capped before values reach JavaScript: better-sqlite3 copies every value of
 * a row into the JS heap as it steps, so `SELECT zeroblob(5e8)` would cost half a gigabyte before
 * any JavaScript check could see it. The query is therefore wrapped so that SQLite itself first
 * computes each row's size (octet_length does not expand zero-filled blobs) and a guard function
 * fails the step when the row would overrun what is left of the budget.
 */
import type Database from 'better-sqlite3';
import type { Cell, CellLimits, CellTable } from './sandbox.js';
import { statementBody } from './sandboxLexer.js';

export const TOO_LARGE = 'result too large';

const GUARD = 'sqlora_row_guard';

/** What the guard lets through for the next row, set by the reading loop; per connection. */
const allowance = new WeakMap<Database.Database, { bytes: number; cap: number }>();

function installGuard(db: Database.Database): { bytes: number; cap: number } {
  const known = allowance.get(db);
  if (known) return known;
  const s = { bytes: 0, cap: 0 };
  db.function(GUARD, { deterministic: false, safeIntegers: false }, (size: unknown) => {
    if (typeof size === 'number' && size > s.bytes) throw new Error(`${TOO_LARGE} (over ${s.cap} bytes)`);
    return null;
  });
  allowance.set(db, s);
  return s;
}

/**
 * `WITH q(c1..cn) AS (sql) SELECT guard(size), c1..cn FROM q`, or null when the statement cannot
 * be wrapped (PRAGMA, EXPLAIN: small outputs, read unguarded). Positional CTE column names keep
 * duplicate result names (`SELECT a.id, b.id`) apart.
 */
function guardedStatement(db: Database.Database, sql: string, n: number): Database.Statement | null {
  const cols = Array.from({ length: n }, (_, i) => `sqlora_c${i + 1}`);
  const size = cols.map((c) => `ifnull(octet_length(${c}), 0)`).join(' + ');
  const wrapped = `WITH sqlora_q(${cols.join(', ')}) AS (\n${statementBody(sql)}\n) SELECT ${GUARD}(${size}), ${cols.join(', ')} FROM sqlora_q`;
  try {
    return db.prepare(wrapped);
  } catch {
    return null;
  }
}

function cell(v: unknown): Cell {
  if (v === null || typeof v === 'string') return v;
  if (typeof v === 'bigint')
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  return String(v);
}

/** A value's size as SQLite's octet_length counts it (text of numbers, bytes of text and blobs). */
function valueBytes(v: unknown): number {
  if (v === null) return 0;
  if (typeof v === 'string') return Buffer.byteLength(v);
  if (v instanceof Uint8Array) return v.byteLength;
  return String(v).length;
}

/** Reads `stmt` (already checked read-only and a reader) into cells within `limits`. */
export function readCells(db: Database.Database, stmt: Database.Statement, limits: CellLimits): CellTable {
  const t0 = performance.now();
  const columns = stmt.columns().map((c) => c.name);
  const guarded = guardedStatement(db, stmt.source, columns.length);
  const guard = installGuard(db);
  guard.cap = limits.maxBytes;
  guard.bytes = limits.maxBytes;
  const source = (guarded ?? stmt).raw(true).safeIntegers(true);
  const skip = guarded ? 1 : 0;
  const rows: Cell[][] = [];
  let used = 0;
  let rowCount = 0;
  try {
    for (const raw of source.iterate() as IterableIterator<unknown[]>) {
      rowCount++;
      if (rows.length >= limits.maxRows) continue;
      const values = raw.slice(skip);
      used += values.reduce<number>((sum, v) => sum + valueBytes(v), 0);
      if (used > limits.maxBytes) throw new Error(`${TOO_LARGE} (over ${limits.maxBytes} bytes)`);
      rows.push(values.map(cell));
      // Kept rows share the budget; rows past the cap are only counted, each within the whole cap.
      guard.bytes = rows.length < limits.maxRows ? limits.maxBytes - used : limits.maxBytes;
    }
  } catch (err) {
    // SQLite's own length limit (better-sqlite3 sets it to V8's largest string) says the same.
    if ((err as { code?: string }).code === 'SQLITE_TOOBIG')
      throw new Error(`${TOO_LARGE} (over ${limits.maxBytes} bytes)`, { cause: err });
    throw err;
  }
  return { columns, rows, rowCount, truncated: rowCount > rows.length, elapsedMs: Math.round(performance.now() - t0) };
}
