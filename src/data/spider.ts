/**
 * Spider in its official folder layout: dev.json, train_spider.json, train_others.json,
 * tables.json and database/<db_id>/<db_id>.sqlite.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

/** One question of a split; `id` is `<split>-<index in its source file>`, stable across runs. */
export interface SpiderExample {
  id: string;
  db_id: string;
  question: string;
  query: string;
}

/** Which training files to use: Spider's own train_spider.json, train_others.json, or both (in that order). */
export type TrainSplits = 'spider' | 'others' | 'both';
export const TRAIN_SPLITS: readonly TrainSplits[] = ['spider', 'others', 'both'];

/** The examples of a source, in file order, and where each split came from. */
export interface SpiderSplits {
  train: SpiderExample[];
  eval: SpiderExample[];
  trainFiles: string[];
  evalFiles: string[];
}

export function requireDir(path: string, what: string): void {
  if (!existsSync(path)) throw new UserError(`${what} not found: ${path}`);
  if (!statSync(path).isDirectory()) throw new UserError(`${what} is not a folder: ${path}`);
}

/**
 * Checks the fields the pipeline needs; `where` names the file, `prefix` makes the ids
 * (`dev`, `train`, `others`).
 */
export function toSpiderExamples(rows: unknown, where: string, prefix: string): SpiderExample[] {
  if (!Array.isArray(rows)) throw new UserError(`${where}: expected a JSON array of examples`);
  return rows.map((row: unknown, i) => {
    const r = row as Record<string, unknown> | null;
    for (const key of ['db_id', 'question', 'query']) {
      if (r === null || typeof r !== 'object' || typeof r[key] !== 'string' || r[key] === '') {
        throw new UserError(`${where}: example ${i} has no "${key}" string`);
      }
    }
    const e = r as Record<'db_id' | 'question' | 'query', string>;
    return { id: `${prefix}-${i}`, db_id: e.db_id, question: e.question, query: e.query };
  });
}

function readSplitFile(dir: string, file: string, prefix: string): SpiderExample[] {
  const path = join(dir, file);
  if (!existsSync(path)) {
    throw new UserError(
      `${file} not found in ${dir} (a Spider folder holds dev.json, train_spider.json, train_others.json, tables.json and database/)`,
    );
  }
  return toSpiderExamples(readJsonFile(path, 'Spider split'), path, prefix);
}

/** Reads the dev split and the chosen training files of a Spider folder, in file order. */
export function readSpiderFolder(dir: string, trainSplits: TrainSplits): SpiderSplits {
  requireDir(dir, 'Spider folder');
  const trainFiles: [string, string][] = [];
  if (trainSplits !== 'others') trainFiles.push(['train_spider.json', 'train']);
  if (trainSplits !== 'spider') trainFiles.push(['train_others.json', 'others']);
  const train = trainFiles.flatMap(([file, prefix]) => readSplitFile(dir, file, prefix));
  return {
    train,
    eval: readSplitFile(dir, 'dev.json', 'dev'),
    trainFiles: trainFiles.map(([file]) => join(dir, file)),
    evalFiles: [join(dir, 'dev.json')],
  };
}

/**
 * Finds each db_id's SQLite file under a `database/` folder, checking it against tables.json
 * when there is one, so a typo in a db_id is reported before any work is done.
 */
export class SpiderDatabases {
  private readonly known: Set<string> | undefined;

  private constructor(
    readonly dbDir: string,
    readonly tablesFile: string | undefined,
  ) {
    if (tablesFile === undefined) return;
    const tables = readJsonFile<unknown>(tablesFile, 'Spider tables.json');
    if (!Array.isArray(tables)) throw new UserError(`${tablesFile}: expected a JSON array of database schemas`);
    this.known = new Set(
      tables.map((t: unknown, i) => {
        const id = (t as { db_id?: unknown } | null)?.db_id;
        if (typeof id !== 'string') throw new UserError(`${tablesFile}: entry ${i} has no "db_id" string`);
        return id;
      }),
    );
  }

  /**
   * `dir` is a Spider folder (with database/ and tables.json) or a folder of databases itself
   * (<db_id>/<db_id>.sqlite), as --db-dir may name either.
   */
  static open(dir: string): SpiderDatabases {
    requireDir(dir, 'database folder');
    const nested = join(dir, 'database');
    if (existsSync(nested) && statSync(nested).isDirectory()) {
      const tables = join(dir, 'tables.json');
      return new SpiderDatabases(nested, existsSync(tables) ? tables : undefined);
    }
    return new SpiderDatabases(dir, undefined);
  }

  /** The SQLite file of a db_id; `where` says which example asked (for the error message). */
  sqlitePath(dbId: string, where: string): string {
    if (this.known && !this.known.has(dbId))
      throw new UserError(`${where}: unknown db_id "${dbId}" (not in ${this.tablesFile})`);
    const path = join(this.dbDir, dbId, `${dbId}.sqlite`);
    if (!existsSync(path)) throw new UserError(`${where}: no SQLite file for db_id "${dbId}" (expected ${path})`);
    return path;
  }
}
