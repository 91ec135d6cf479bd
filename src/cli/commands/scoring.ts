/**
 * Where Spider's databases are and how predictions run: the flags and their checks shared by
 * the commands that score SQL (evaluate, baseline, eval).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { positiveInt, type FlagSpec, type ParsedArgs } from '../args.js';
import type { EvaluationReport } from '../../eval/evaluate.js';
import { UserError } from '../../util/errors.js';

/** --spider (described per command), --db-dir, --tables, --timeout and --workers. */
export function scoringFlags(spiderDescription: string): FlagSpec[] {
  return [
    { name: 'spider', type: 'string', metavar: 'DIR', description: spiderDescription },
    {
      name: 'db-dir',
      type: 'string',
      metavar: 'DIR',
      description:
        'database folder (<db_id>/<db_id>.sqlite; every .sqlite beside it is checked too, as with test-suite databases); default: SPIDER/database',
    },
    {
      name: 'tables',
      type: 'string',
      metavar: 'FILE',
      description: 'tables.json for exact-set-match; default: SPIDER/tables.json',
    },
    {
      name: 'timeout',
      type: 'number',
      metavar: 'SECONDS',
      default: 30,
      description: `time limit per query (${MIN_TIMEOUT_S} s to ${MAX_TIMEOUT_S} s = 1 day); a query over it counts as wrong`,
    },
    {
      name: 'workers',
      type: 'number',
      metavar: 'N',
      default: Math.min(4, availableParallelism()),
      description: 'processes running queries in parallel',
    },
    {
      name: 'allow-gold-errors',
      type: 'boolean',
      description:
        'score examples whose gold query fails on its database as wrong and exit 0 (default: such a run is an error, the data or databases are broken)',
    },
  ];
}

/** Below 10 ms a query cannot even start; above a day Node's timers overflow (2^31 ms is 24.8 days). */
export const MIN_TIMEOUT_S = 0.01;
export const MAX_TIMEOUT_S = 86_400;

export interface ScoringInputs {
  dbDir?: string;
  tablesPath?: string;
  timeoutMs: number;
  workers: number;
  allowGoldErrors: boolean;
}

/**
 * The scoring flags, checked. `fallback` gives the databases when no flag names them (baseline
 * and eval: the ones `sqlora prepare` recorded).
 */
export function scoringInputs(
  args: ParsedArgs,
  fallback: () => { dbDir?: string; tablesPath?: string } = () => ({}),
): ScoringInputs {
  const spider = args.string('spider');
  if (spider !== undefined && !existsSync(spider)) throw new UserError(`Spider folder not found: ${spider}`);
  let dbDir = args.string('db-dir') ?? (spider !== undefined ? join(spider, 'database') : undefined);
  let tablesPath = args.string('tables') ?? (spider !== undefined ? join(spider, 'tables.json') : undefined);
  if (dbDir === undefined) {
    const found = fallback();
    dbDir = found.dbDir;
    tablesPath ??= found.tablesPath;
  }
  if (dbDir !== undefined && !existsSync(dbDir))
    throw new UserError(
      `database folder not found: ${dbDir}${args.has('db-dir') ? '' : ' (a Spider folder holds database/ and tables.json; see --db-dir)'}`,
    );
  if (tablesPath !== undefined && !existsSync(tablesPath))
    throw new UserError(`tables.json not found: ${tablesPath}${args.has('tables') ? '' : ' (see --tables)'}`);
  if (tablesPath !== undefined && dbDir === undefined)
    throw new UserError('--tables needs the databases too (--spider or --db-dir): exact-set-match reads their schemas');
  const timeout = args.number('timeout')!;
  if (!(timeout >= MIN_TIMEOUT_S && timeout <= MAX_TIMEOUT_S))
    throw new UserError(
      `sqlora ${args.command}: --timeout must be from ${MIN_TIMEOUT_S} to ${MAX_TIMEOUT_S} seconds (1 day), got ${timeout}`,
    );
  return {
    dbDir,
    tablesPath,
    timeoutMs: Math.round(timeout * 1000),
    workers: positiveInt(args.command, 'workers', args.number('workers')),
    allowGoldErrors: args.boolean('allow-gold-errors'),
  };
}

/**
 * A gold query that fails is a problem of the data (a damaged or empty database, a wrong
 * db_id), not of the predictions: unless allowed, the run fails after its results are written.
 */
export function checkGoldErrors(report: EvaluationReport, allowed: boolean, written: string | undefined): void {
  const failed = report.examples.filter((e) => e.gold_error !== undefined);
  if (failed.length === 0 || allowed) return;
  const first = failed[0];
  throw new UserError(
    `${failed.length} of ${report.examples.length} gold queries failed on their databases (first: example ${first.index}${first.id !== undefined ? ` id ${first.id}` : ''}, db ${first.db_id}: ${first.gold_error}); the databases or the gold file are broken${written ? ` (results are in ${written})` : ''}. Fix them, or pass --allow-gold-errors to score those examples as wrong`,
  );
}
