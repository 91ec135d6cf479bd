/**
 * `prepare --pairs` as prepare's source: the pairs read, checked and split (pairs.ts,
 * pairsChecks.ts), the checks printed as a table, each pair carrying its own database file (or
 * the PostgreSQL URL of `--db postgres://...`, without its password).
 */
import { dirname } from 'node:path';
import { isPostgresUrl, withoutPassword } from '../eval/postgresUrl.js';
import type { QueryExecutor } from '../eval/queryExecutor.js';
import { UserError } from '../util/errors.js';
import { readPairs } from './pairs.js';
import { checkAndSplit, formatChecks } from './pairsChecks.js';
import type { PrepareOptions } from './prepareDataset.js';
import type { SchemaSource } from './prompts.js';

/**
 * PostgreSQL for pairs on a postgres:// URL, handed in by the layer that can connect
 * (serve/postgresExecutor.ts): gold SQL run read-only, and each database's schema for prompts.
 */
export interface PostgresPairs extends QueryExecutor {
  schema(target: string, sampleRows: number): Promise<SchemaSource>;
}

export async function readPairSource(o: PrepareOptions, file: string) {
  if (o.spider !== undefined || o.parquet !== undefined || o.bird !== undefined)
    throw new UserError('give one source: --pairs FILE, --bird DIR, --spider DIR or --parquet DIR');
  const onPostgres = o.db !== undefined && isPostgresUrl(o.db);
  if (onPostgres && o.postgres === undefined)
    throw new Error('internal: --db postgres:// needs prepare options.postgres');
  const dbs = { dbDir: o.dbDir, db: o.db };
  const pairs = readPairs(file, dbs, 'pair');
  const evalPairs = o.evalPairs === undefined ? undefined : readPairs(o.evalPairs, dbs, 'eval');
  // PostgreSQL schemas (and sample rows) come from the catalog, once per database, before the
  // checks: a server that cannot be reached stops the run here with one line.
  const catalogs = new Map<string, SchemaSource>();
  for (const p of [...pairs, ...(evalPairs ?? [])])
    if (isPostgresUrl(p.dbPath) && !catalogs.has(p.dbPath))
      catalogs.set(p.dbPath, await o.postgres!.schema(p.dbPath, o.format === 'schema' ? o.sampleRows : 0));
  const {
    train,
    eval: evalSet,
    checks,
  } = await checkAndSplit(pairs, {
    file,
    evalPairs,
    evalFile: o.evalPairs,
    evalFraction: o.evalFraction ?? 0.1,
    seed: o.seed,
    splitBy: o.splitBy ?? 'row',
    timeoutMs: o.checkTimeoutMs ?? 30_000,
    quiet: o.quiet,
    postgres: o.postgres,
  });
  if (!o.quiet) process.stderr.write(formatChecks(checks));
  const databases = {
    dbDir: onPostgres ? withoutPassword(o.db!) : (o.dbDir ?? (o.db !== undefined ? dirname(o.db) : dirname(file))),
    // Pairs carry their database file; no lookup by db_id is needed.
    sqlitePath: (): string => {
      throw new Error('internal: pairs carry their database path');
    },
  };
  return {
    splits: {
      train,
      eval: evalSet,
      trainFiles: [file],
      evalFiles: [o.evalPairs ?? file],
    },
    databases,
    layout: 'pairs' as const,
    path: file,
    checks,
    catalogs,
  };
}
