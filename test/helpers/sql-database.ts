/** What the SQLite and PostgreSQL database tests share: the Spider fixture files and a query's expected failure. */
import { join } from 'node:path';
import { QueryError, type QueryLimits, type SqlDatabase } from '../../src/serve/database.js';

/** The fixture SQLite file of a Spider database. */
export const spiderDbFile = (db: string): string => join('test/fixtures/spider/database', db, `${db}.sqlite`);

/** The QueryError `db` rejects `sql` with; throws when it succeeds or fails otherwise. */
export async function queryFailure(
  db: SqlDatabase,
  sql: string,
  limits: Partial<QueryLimits> = {},
): Promise<QueryError> {
  const err: unknown = await db.query(sql, limits).then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof QueryError)) throw new Error(`expected a QueryError for ${sql}, got ${String(err)}`);
  return err;
}
