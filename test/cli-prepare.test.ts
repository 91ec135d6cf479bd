import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatCommandHelp } from '../src/cli/args.js';
import { command } from '../src/cli/commands/prepare.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { lengthStats, prepareDataset, selectExamples, type PrepareOptions } from '../src/data/prepareDataset.js';
import type { DatasetCard, PromptRecord } from '../src/data/records.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { readJsonl } from '../src/util/jsonl.js';

const SPIDER = 'test/fixtures/spider';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-prepare-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sqlora = (...args: string[]) =>
  spawnSync(process.execPath, ['bin/sqlora.js', 'prepare', ...args], { encoding: 'utf8' });
const read = (dir: string) => ({
  train: readJsonl<PromptRecord>(join(dir, 'train.jsonl')),
  eval: readJsonl<PromptRecord>(join(dir, 'eval.jsonl')),
  card: JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as DatasetCard,
});
const spiderJson = (file: string) =>
  JSON.parse(readFileSync(join(SPIDER, file), 'utf8')) as { db_id: string; question: string; query: string }[];
const options = (out: string, extra: Partial<PrepareOptions> = {}): PrepareOptions => ({
  spider: SPIDER,
  out: join(tmp, out),
  format: 'schema',
  modelDir: defaultTokenizerDir(),
  trainLimit: 3500,
  evalLimit: 200,
  shuffle: false,
  seed: 42,
  trainSplits: 'spider',
  sampleRows: 0,
  maxPromptTokens: 1024,
  quiet: true,
  ...extra,
});

describe('sqlora prepare (CLI)', () => {
  it('seed format from the Spider folder: the reference rows byte for byte, ids, card, progress', () => {
    const out = join(tmp, 'seed');
    const r = sqlora('--spider', SPIDER, '--format', 'seed', '--train-limit', '10', '--eval-limit', '20', '--out', out);
    expect(r.stderr).toMatch(/prepare \[#+\] 30\/30/);
    expect(r.status).toBe(0);
    const { train, eval: dev, card } = read(out);
    const reference = readJsonl<{ text: string }>('test/fixtures/seed/validation_head.jsonl');
    expect(dev.map((e) => e.text)).toEqual(reference.map((e) => e.text));
    expect(dev.map((e) => e.id)).toEqual(reference.map((_, i) => `dev-${i}`));
    expect(train.map(({ id, db_id, question, query }) => ({ id, db_id, question, query }))).toEqual(
      spiderJson('train_spider.json')
        .slice(0, 10)
        .map(({ db_id, question, query }, i) => ({ id: `train-${i}`, db_id, question, query })),
    );
    for (const e of [...train, ...dev]) expect(e.text.startsWith(e.prompt)).toBe(true);
    expect(card).toMatchObject({
      format: 'seed',
      source: { layout: 'spider-folder' },
      train: { count: 10, available: 56 },
      eval: { count: 20, available: 179 },
    });
    const tok = Tokenizer.fromModelDir(defaultTokenizerDir());
    expect(card.eval.tokens.prompt.max).toBe(Math.max(...dev.map((e) => tok.encode(e.prompt).length)));
    expect(card.eval.tokens.text.max).toBe(Math.max(...dev.map((e) => tok.encode(e.text).length)));
    const counts = (rs: PromptRecord[]) =>
      rs.reduce<Record<string, number>>(
        (c, e) => ({ ...c, [e.hardness ?? 'unparsed']: (c[e.hardness ?? 'unparsed'] ?? 0) + 1 }),
        {},
      );
    expect(card.eval.hardness).toMatchObject(counts(dev));
    // dev-0 is `SELECT count(*) FROM singer`: one table, no clauses.
    expect(dev[0].hardness).toBe('easy');
  });

  it('reads the xlangai/spider parquet layout with databases from --db-dir: same records', () => {
    const out = join(tmp, 'parquet');
    const r = sqlora(
      '--parquet',
      'test/fixtures/parquet',
      '--db-dir',
      SPIDER,
      '--format',
      'seed',
      '--train-limit',
      '10',
      '--eval-limit',
      '20',
      '--out',
      out,
    );
    expect(r.status).toBe(0);
    const p = read(out);
    const f = read(join(tmp, 'seed'));
    expect(p.train).toEqual(f.train);
    expect(p.eval).toEqual(f.eval);
    expect(p.card.source.layout).toBe('hf-parquet');
  });

  it('bad input: one clear line and a non-zero exit', () => {
    const bad = join(tmp, 'bad-db');
    cpSync(SPIDER, bad, { recursive: true });
    const dev = spiderJson('dev.json');
    writeFileSync(join(bad, 'dev.json'), JSON.stringify([dev[0], { ...dev[1], db_id: 'nope' }]));
    const r = sqlora('--spider', bad, '--out', join(tmp, 'bad-out'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error: example dev-1: unknown db_id "nope" \(not in .*tables\.json\)\n$/);
    const m = sqlora('--spider', SPIDER, '--model', join(tmp, 'no-model'), '--out', join(tmp, 'bad-out'));
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/^error: model not found: .*no-model is neither a directory nor a Hub repo id/);
    const stray = sqlora('--spider', SPIDER, 'extra', '--out', join(tmp, 'bad-out'));
    expect(stray.status).toBe(1);
    expect(stray.stderr).toBe('error: sqlora prepare: unexpected argument "extra" (see sqlora prepare --help)\n');
  });

  it('documents every flag in --help', () => {
    const help = formatCommandHelp(command);
    for (const flag of [
      'spider',
      'parquet',
      'db-dir',
      'out',
      'format',
      'model',
      'train-limit',
      'eval-limit',
      'shuffle',
      'seed',
      'train-splits',
      'sample-rows',
      'max-prompt-tokens',
    ]) {
      expect(help).toContain(`--${flag}`);
    }
  });
});

describe('prepareDataset (API)', () => {
  it('schema format: prompts fit the budget, trimming and overruns are counted', async () => {
    const card = await prepareDataset(options('schema', { sampleRows: 3, maxPromptTokens: 400 }));
    const { train, eval: dev } = read(join(tmp, 'schema'));
    expect(train.length).toBe(56);
    expect(dev.length).toBe(179);
    for (const e of [...train, ...dev]) {
      expect(e.text.startsWith(e.prompt)).toBe(true);
      expect(e.messages[2]).toEqual({ role: 'assistant', content: e.query });
      expect(e.messages[1].content).toContain(`Question: ${e.question}`);
    }
    expect(card.train.tokens.prompt.max).toBeLessThanOrEqual(400);
    expect(card.train.trimmed.sample_rows).toBeGreaterThan(0);
    expect(card.train.over_budget + card.eval.over_budget).toBe(0);
    // 60 tokens hold no table at all: every prompt keeps one table, is counted, and nothing fails.
    const tight = await prepareDataset(options('tight', { trainLimit: 0, maxPromptTokens: 60 }));
    expect(tight.train.count).toBe(0);
    expect(tight.eval.over_budget).toBe(179);
    expect(tight.eval.trimmed.tables).toBe(179);
    for (const e of read(join(tmp, 'tight')).eval) expect(e.prompt.match(/CREATE TABLE/g)).toHaveLength(1);
  });

  it('--shuffle: the seeded subsets of selectExamples (train: seed, eval: seed + 1), in file order', async () => {
    const card = await prepareDataset(
      options('shuffle', { shuffle: true, seed: 7, trainLimit: 5, evalLimit: 5, format: 'seed' }),
    );
    const { train, eval: dev } = read(join(tmp, 'shuffle'));
    const ids = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
    expect(train.map((e) => e.id)).toEqual(selectExamples(ids(56, 'train'), 5, true, 7));
    expect(dev.map((e) => e.id)).toEqual(selectExamples(ids(179, 'dev'), 5, true, 8));
    expect(card.options).toMatchObject({ shuffle: true, seed: 7 });
  });

  it('--train-splits both: train_spider.json then train_others.json', async () => {
    const card = await prepareDataset(
      options('both', { trainSplits: 'both', trainLimit: 10000, evalLimit: 1, format: 'seed' }),
    );
    const { train } = read(join(tmp, 'both'));
    expect(card.train).toMatchObject({ count: 76, available: 76 });
    expect(train[56].id).toBe('others-0');
    expect(train[56].db_id).toBe('restaurants');
  });

  it('rejects bad options and sources with UserErrors', async () => {
    await expect(prepareDataset(options('x', { spider: undefined }))).rejects.toThrow(/give --spider DIR/);
    await expect(prepareDataset(options('x', { spider: undefined, parquet: 'test/fixtures/parquet' }))).rejects.toThrow(
      /--parquet needs the databases too/,
    );
    await expect(prepareDataset(options('x', { spider: join(tmp, 'missing') }))).rejects.toThrow(
      /Spider folder not found/,
    );
    await expect(prepareDataset(options('x', { trainLimit: -1 }))).rejects.toThrow(
      /--train-limit must be a whole number/,
    );
    await expect(prepareDataset(options('x', { maxPromptTokens: 0 }))).rejects.toThrow(/--max-prompt-tokens must be/);
  });
});

describe('selection and statistics', () => {
  it('takes the first N, or all when N is larger', () => {
    expect(selectExamples([1, 2, 3, 4], 2, false, 0)).toEqual([1, 2]);
    expect(selectExamples([1, 2, 3], 10, true, 1)).toEqual([1, 2, 3]);
  });

  it('a seeded subset: the same for the same seed, another for another seed, in file order', () => {
    const rows = Array.from({ length: 1000 }, (_, i) => i);
    const a = selectExamples(rows, 50, true, 7);
    expect(selectExamples(rows, 50, true, 7)).toEqual(a);
    expect(selectExamples(rows, 50, true, 8)).not.toEqual(a);
    expect(new Set(a).size).toBe(50);
    expect(a).toEqual([...a].sort((x, y) => x - y));
    // Spread over the whole split, not bunched at its start.
    expect(a[a.length - 1]).toBeGreaterThan(500);
    expect(a[0]).toBeLessThan(500);
  });

  it('nearest-rank percentiles', () => {
    const v = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(lengthStats(v)).toEqual({ p50: 50, p90: 90, p99: 99, max: 100 });
    expect(lengthStats([7])).toEqual({ p50: 7, p90: 7, p99: 7, max: 7 });
  });
});
