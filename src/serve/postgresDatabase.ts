/**
 * PostgreSQL databases as a SqlDatabase, through `pg`.
 *
 * Generated SQL never changes the database: only statements that start as queries (SELECT, WITH,
 * VALUES, TABLE) are run, each wrapped as a subquery, which no COPY, DDL or second statement
 * survives (COPY ... TO PROGRAM runs even in a READ ONLY transaction, so the transaction alone
 * is not enough); the extended protocol takes one statement only; it runs in a READ ONLY
 * transaction under statement_timeout. The wrapper's LIMIT fetches one row past the row cap, so
 * a huge result never crosses the wire (a longer one is then counted on the server); a guard
 * column fails the query on the server as soon as the kept rows' size passes the byte cap.
 * What a superuser's SELECT may still reach (pg_read_file, lo_export) is the role's to deny:
 * connect as a role that may only read.
 */
import pg from 'pg';
import type { TableInfo } from '../data/sqliteSchema.js';
import { formatSeconds } from '../eval/sandbox.js';
import { TOO_LARGE } from '../eval/sandboxCells.js';
import { sqlPieces, statementBody } from '../eval/sandboxLexer.js';
import { UserError, describeError } from '../util/errors.js';
import { DEFAULT_LIMITS, QueryError, type QueryLimits, type QueryResult, type SqlDatabase } from './database.js';
import { readPostgresTables } from './postgresSchema.js';
import { cellTypes } from './postgresTypes.js';

export interface PostgresTarget {
  /** The URL as pg takes it (without sqlora's own `schema` parameter). */
  connectionString: string;
  /** Schemas whose tables the prompt shows: `?schema=a,b`, else the search_path in `options`, else public. */
  schemas: string[];
  /** host:port/database, for messages (never the password). */
  where: string;
}

/** Reads a postgres:// URL; a UserError says what is wrong with it. */
export function parsePostgresUrl(spec: string): PostgresTarget {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new UserError('bad PostgreSQL URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=a,b]');
  }
  if (!/^postgres(ql)?:$/.test(url.protocol) || url.hostname === '')
    throw new UserError('bad PostgreSQL URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=a,b]');
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  const where = `${url.hostname}:${url.port || '5432'}/${database || '(default database)'}`;
  const names = (list: string) =>
    list
      .split(',')
      .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
      .filter((s) => s !== '' && s !== '$user');
  let schemas = names(url.searchParams.get('schema') ?? '');
  url.searchParams.delete('schema');
  if (schemas.length === 0) {
    const path = /(?:^|\s)-c\s*search_path=(\S+)/.exec(url.searchParams.get('options') ?? '');
    schemas = path ? names(path[1]) : [];
  }
  return { connectionString: url.toString(), schemas: schemas.length > 0 ? schemas : ['public'], where };
}

const QUERY_START = new Set(['SELECT', 'WITH', 'VALUES', 'TABLE']);

/** The statement as the subquery the wrapper reads, or a rejection for anything but a query. */
function querySubject(sql: string): string {
  const body = statementBody(sql);
  const first = sqlPieces(body).find((p) => p.kind !== 'comment' && p.text.trim() !== '');
  if (!first || !(first.text === '(' || (first.kind === 'word' && QUERY_START.has(first.text.toUpperCase()))))
    throw new QueryError('rejected: only queries (SELECT, WITH, VALUES, TABLE) are run', 'rejected');
  return body;
}

export class PostgresDatabase implements SqlDatabase {
  readonly dialect = 'postgresql' as const;

  private constructor(
    readonly name: string,
    private readonly pool: pg.Pool,
    private readonly schema: TableInfo[],
  ) {}

  /** Connects and reads the schema; a UserError names the server (not the password) if either fails. */
  static async open(name: string, spec: string, opts: { connections?: number } = {}): Promise<PostgresDatabase> {
    const target = parsePostgresUrl(spec);
    const pool = new pg.Pool({
      connectionString: target.connectionString,
      max: opts.connections ?? 4,
      connectionTimeoutMillis: 10_000,
      application_name: 'sqlora',
    });
    // An idle connection the server drops must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        return new PostgresDatabase(name, pool, await readPostgresTables(client, target.schemas));
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw new UserError(
        `cannot open PostgreSQL database ${target.where}: ${describeError(err) || 'connection failed'}`,
      );
    }
  }

  tables(): Promise<TableInfo[]> {
    return Promise.resolve(this.schema);
  }

  async sampleRows(table: string, k: number): Promise<unknown[][]> {
    const known = this.schema.find((t) => (t.schema ? `${t.schema}.${t.name}` : t.name) === table);
    if (!known) throw new UserError(`no table ${table} in database ${this.name}`);
    const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
    const from = known.schema ? `${ident(known.schema)}.${ident(known.name)}` : ident(known.name);
    return (await this.query(`SELECT * FROM ${from} LIMIT ${Math.max(0, Math.floor(k))}`, { maxRows: k })).rows;
  }

  async query(sql: string, limits: Partial<QueryLimits> = {}): Promise<QueryResult> {
    const { timeoutMs, maxRows, maxBytes } = { ...DEFAULT_LIMITS, ...limits };
    const body = querySubject(sql);
    const t0 = performance.now();
    const left = () => Math.max(1, Math.round(timeoutMs - (performance.now() - t0)));
    const client = await this.pool.connect().catch((err: unknown) => {
      throw new QueryError(`cannot reach the database: ${describeError(err)}`, 'sql');
    });
    let broken = false;
    try {
      await client.query('BEGIN TRANSACTION READ ONLY');
      await client.query(`SET LOCAL statement_timeout = ${left()}`);
      // Rows past the cap are not fetched; the guard fails the query on the server as soon as the
      // kept rows' size (pg_column_size: cheap, near the text that would be sent) passes the cap.
      const guard =
        `CASE WHEN row_number() OVER w <= ${maxRows} AND sum(pg_column_size(q.*)) OVER w > ${maxBytes} ` +
        `THEN ('${TOO_LARGE} (over ${maxBytes} bytes) ' || row_number() OVER w)::int END`;
      const select: pg.QueryArrayConfig & { queryMode: 'extended'; query_timeout: number } = {
        text: `SELECT ${guard} AS sqlora_guard, q.* FROM (\n${body}\n) AS q WINDOW w AS (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) LIMIT ${maxRows + 1}`,
        rowMode: 'array',
        types: cellTypes,
        queryMode: 'extended', // one statement only: nothing can follow the wrapped query
        query_timeout: timeoutMs + 5000, // pg's own limit, for a server that stops answering
      };
      const fetched = await client.query(select);
      const rows = (fetched.rows as Cell[][]).slice(0, maxRows).map((r) => r.slice(1));
      if (rows.reduce((sum, r) => sum + rowBytes(r), 0) > maxBytes)
        throw new QueryError(`${TOO_LARGE} (over ${maxBytes} bytes)`, 'too_large');
      let rowCount = rows.length;
      if (fetched.rows.length > maxRows) {
        // Counted on the server, within what is left of the time limit.
        await client.query(`SET LOCAL statement_timeout = ${left()}`);
        const counted = await client.query<{ n: string }>({
          text: `SELECT count(*) AS n FROM (\n${body}\n) AS q`,
          queryMode: 'extended',
        } as pg.QueryConfig);
        rowCount = Number(counted.rows[0].n);
      }
      return {
        columns: fetched.fields.slice(1).map((f) => f.name),
        rows,
        rowCount,
        truncated: rowCount > rows.length,
        elapsedMs: Math.round(performance.now() - t0),
      };
    } catch (err) {
      // A server error leaves the connection usable; anything else (a lost socket, pg's read timeout) does not.
      broken = !(err instanceof QueryError) && !(err instanceof Error && 'code' in err);
      throw queryError(err, timeoutMs);
    } finally {
      await client.query('ROLLBACK').catch(() => (broken = true));
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

type Cell = string | number | null;

function rowBytes(row: Cell[]): number {
  return row.reduce<number>(
    (sum, v) => sum + (v === null ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : String(v).length),
    0,
  );
}

function queryError(err: unknown, timeoutMs: number): QueryError {
  if (err instanceof QueryError) return err;
  const code = (err as { code?: string }).code;
  const message = describeError(err);
  if (code === '57014') return new QueryError(`timed out after ${formatSeconds(timeoutMs)}`, 'timeout');
  if (code === '22P02' && message.includes(TOO_LARGE)) {
    return new QueryError(/"(result too large \(over \d+ bytes\))/.exec(message)?.[1] ?? TOO_LARGE, 'too_large');
  }
  if (code === '25006') return new QueryError(`rejected: ${message}`, 'rejected');
  if (/Query read timeout/.test(message))
    return new QueryError(`timed out after ${formatSeconds(timeoutMs)}`, 'timeout');
  return new QueryError(message, 'sql');
}
