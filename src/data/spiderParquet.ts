/**
 * Spider as the Hugging Face dataset `xlangai/spider` stores it: parquet shards per split, under
 * the config folder `spider/` (`spider/train-00000-of-00001.parquet`, 7,000 rows = train_spider.json;
 * `spider/validation-00000-of-00001.parquet`, 1,034 rows = dev.json), snappy-compressed, with
 * columns db_id, query, question (+ token lists we do not need). The auto-converted branch
 * (`refs/convert/parquet`) uses `spider/train/0000.parquet` instead; both are accepted.
 * train_others.json has no counterpart there, and the databases are not in it: they come from a
 * Spider folder (--db-dir / --spider).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { UserError, describeError } from '../util/errors.js';
import { requireDir, toSpiderExamples, type SpiderExample, type SpiderSplits, type TrainSplits } from './spider.js';

const SPLIT_NAMES = { train: ['train'], eval: ['validation', 'dev'] } as const;

/**
 * The shards of one split under `dir`: files named `<split>-*.parquet` or `<split>.parquet`, or
 * every parquet file of a `<split>/` folder; searched in `dir` and `dir/spider`. Sorted by name,
 * which is shard order.
 */
export function findSplitShards(dir: string, split: keyof typeof SPLIT_NAMES): string[] {
  for (const base of [dir, join(dir, 'spider')]) {
    if (!existsSync(base) || !statSync(base).isDirectory()) continue;
    for (const name of SPLIT_NAMES[split]) {
      const flat = readdirSync(base)
        .filter((f) => f.endsWith('.parquet') && (f === `${name}.parquet` || f.startsWith(`${name}-`)))
        .sort()
        .map((f) => join(base, f));
      if (flat.length > 0) return flat;
      const folder = join(base, name);
      if (existsSync(folder) && statSync(folder).isDirectory()) {
        const shards = readdirSync(folder)
          .filter((f) => f.endsWith('.parquet'))
          .sort()
          .map((f) => join(folder, f));
        if (shards.length > 0) return shards;
      }
    }
  }
  return [];
}

async function readShard(path: string): Promise<Record<string, unknown>[]> {
  try {
    const file = await asyncBufferFromFile(path);
    return await parquetReadObjects({ file, columns: ['db_id', 'query', 'question'] });
  } catch (err) {
    throw new UserError(
      `cannot read parquet file ${path}: ${describeError(err)} (expected columns db_id, query, question)`,
    );
  }
}

async function readSplit(
  dir: string,
  split: keyof typeof SPLIT_NAMES,
  prefix: string,
): Promise<{ rows: SpiderExample[]; files: string[] }> {
  const files = findSplitShards(dir, split);
  if (files.length === 0) {
    const names = SPLIT_NAMES[split].map((n) => `${n}-*.parquet`).join(' or ');
    throw new UserError(
      `no ${names} found in ${dir} or ${join(dir, 'spider')} (the layout of the Hugging Face dataset xlangai/spider)`,
    );
  }
  const rows: Record<string, unknown>[] = [];
  for (const f of files) rows.push(...(await readShard(f)));
  const where = files.length === 1 ? files[0] : `${dir} (${files.map((f) => relative(dir, f)).join(', ')})`;
  return { rows: toSpiderExamples(rows, where, prefix), files };
}

/** Reads the train and validation splits of an xlangai/spider parquet download, in file order. */
export async function readSpiderParquet(dir: string, trainSplits: TrainSplits): Promise<SpiderSplits> {
  requireDir(dir, 'parquet folder');
  if (trainSplits !== 'spider') {
    throw new UserError(
      `--train-splits ${trainSplits} needs train_others.json, which the parquet layout does not have; use --spider DIR instead of --parquet`,
    );
  }
  const train = await readSplit(dir, 'train', 'train');
  const dev = await readSplit(dir, 'eval', 'dev');
  return { train: train.rows, eval: dev.rows, trainFiles: train.files, evalFiles: dev.files };
}
