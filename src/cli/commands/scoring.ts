/**
 * Where Spider's databases are and how predictions run: the flags and their checks shared by
 * the commands that score SQL (evaluate, baseline, eval).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { positiveInt, type FlagSpec, type ParsedArgs } from '../args.js';
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
      description: 'time limit per query; a query over it counts as wrong',
    },
    {
      name: 'workers',
      type: 'number',
      metavar: 'N',
      default: Math.min(4, availableParallelism()),
      description: 'processes running queries in parallel',
    },
  ];
}

export interface ScoringInputs {
  dbDir?: string;
  tablesPath?: string;
  timeoutMs: number;
  workers: number;
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
  if (!(timeout > 0))
    throw new UserError(`sqlora ${args.command}: --timeout must be a positive number, got ${timeout}`);
  return {
    dbDir,
    tablesPath,
    timeoutMs: Math.round(timeout * 1000),
    workers: positiveInt(args.command, 'workers', args.number('workers')),
  };
}
