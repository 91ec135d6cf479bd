/**
 * BIRD in its release layout: train/train.json with train/train_databases/<db>/<db>.sqlite, and
 * dev/dev.json with dev/dev_databases/<db>/<db>.sqlite and dev/dev_tables.json. Records carry
 * question_id (dev), db_id, question, evidence, SQL and difficulty (dev).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BIRD_DIFFICULTIES, type BirdDifficulty } from '../eval/birdExecution.js';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { requireDir, type SpiderExample, type SpiderSplits } from './spider.js';

export interface BirdExample extends SpiderExample {
  /** BIRD's external knowledge for the question ('' where it has none). */
  evidence: string;
  difficulty?: BirdDifficulty;
}

export interface BirdSplits extends SpiderSplits {
  train: BirdExample[];
  eval: BirdExample[];
}

/** The question as the prompt shows it: BIRD's evidence follows on its own line, when there is one. */
export function questionWithEvidence(question: string, evidence: string): string {
  return evidence.trim() === '' ? question : `${question}\nEvidence: ${evidence.trim()}`;
}

function toBirdExamples(rows: unknown, where: string, prefix: string): BirdExample[] {
  if (!Array.isArray(rows)) throw new UserError(`${where}: expected a JSON array of examples`);
  return rows.map((row: unknown, i) => {
    const r = row as Record<string, unknown> | null;
    if (r === null || typeof r !== 'object') throw new UserError(`${where}: example ${i} is not an object`);
    for (const key of ['db_id', 'question', 'SQL'])
      if (typeof r[key] !== 'string' || r[key] === '')
        throw new UserError(`${where}: example ${i} has no "${key}" string`);
    if (r.evidence !== undefined && typeof r.evidence !== 'string')
      throw new UserError(`${where}: example ${i}: "evidence" must be a string`);
    if (r.difficulty !== undefined && !BIRD_DIFFICULTIES.includes(r.difficulty as BirdDifficulty))
      throw new UserError(
        `${where}: example ${i}: "difficulty" must be one of ${BIRD_DIFFICULTIES.join(', ')}; got ${JSON.stringify(r.difficulty)}`,
      );
    // dev.json numbers its questions; train.json does not, so its ids are file positions.
    const qid = typeof r.question_id === 'number' ? r.question_id : i;
    return {
      id: `${prefix}-${qid}`,
      db_id: r.db_id as string,
      question: r.question as string,
      query: r.SQL as string,
      evidence: (r.evidence as string | undefined) ?? '',
      ...(r.difficulty !== undefined ? { difficulty: r.difficulty as BirdDifficulty } : {}),
    };
  });
}

/** The SQLite file of each db_id, from dev_databases/ or train_databases/ (their db_ids do not overlap). */
export class BirdDatabases {
  constructor(private readonly dirs: readonly string[]) {}

  /** The folder recorded in dataset.json: dev's databases, which evaluation runs on. */
  get dbDir(): string {
    return this.dirs[0];
  }

  sqlitePath(dbId: string, where: string): string {
    for (const dir of this.dirs) {
      const path = join(dir, dbId, `${dbId}.sqlite`);
      if (existsSync(path)) return path;
    }
    throw new UserError(`${where}: unknown db_id "${dbId}": no ${dbId}/${dbId}.sqlite in ${this.dirs.join(' or ')}`);
  }
}

/** Reads dev (required) and train (when the folder has it) of a BIRD release folder. */
export function readBirdFolder(dir: string): { splits: BirdSplits; databases: BirdDatabases } {
  requireDir(dir, 'BIRD folder');
  const devFile = join(dir, 'dev', 'dev.json');
  const trainFile = join(dir, 'train', 'train.json');
  if (!existsSync(devFile))
    throw new UserError(
      `dev/dev.json not found in ${dir} (a BIRD folder holds dev/dev.json, dev/dev_databases/ and, for training, train/train.json, train/train_databases/)`,
    );
  const devDbs = join(dir, 'dev', 'dev_databases');
  requireDir(devDbs, 'BIRD dev databases');
  const dbDirs = [devDbs];
  let train: BirdExample[] = [];
  if (existsSync(trainFile)) {
    train = toBirdExamples(readJsonFile(trainFile, 'BIRD train.json'), trainFile, 'train');
    const trainDbs = join(dir, 'train', 'train_databases');
    requireDir(trainDbs, 'BIRD train databases');
    dbDirs.push(trainDbs);
  }
  return {
    splits: {
      train,
      eval: toBirdExamples(readJsonFile(devFile, 'BIRD dev.json'), devFile, 'dev'),
      trainFiles: existsSync(trainFile) ? [trainFile] : [],
      evalFiles: [devFile],
    },
    databases: new BirdDatabases(dbDirs),
  };
}
