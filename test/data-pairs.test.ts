import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { prepareDataset, type PrepareOptions } from '../src/data/prepareDataset.js';
import type { PromptRecord } from '../src/data/records.js';
import { evaluatePredictions } from '../src/eval/evaluate.js';
import { loadEvalItems } from '../src/eval/predictions.js';
import { readJsonl } from '../src/util/jsonl.js';

const PAIRS = 'test/fixtures/pairs';
const DBS = 'test/fixtures/bird/dev/dev_databases';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-pairs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const options = (out: string, extra: Partial<PrepareOptions> = {}): PrepareOptions => ({
  pairs: join(PAIRS, 'pairs.jsonl'),
  dbDir: DBS,
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
  evalFraction: 0.25,
  ...extra,
});
const read = (out: string) => ({
  train: readJsonl<PromptRecord>(join(tmp, out, 'train.jsonl')),
  eval: readJsonl<PromptRecord>(join(tmp, out, 'eval.jsonl')),
});
const write = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

describe('prepare --pairs', () => {
  it('keeps out failing gold SQL and duplicates, and splits the rest by a seeded draw', async () => {
    const card = await prepareDataset(options('rows'));
    expect(card.source.layout).toBe('pairs');
    expect(card.checks!.pairs).toBe(16);
    expect(card.checks!.gold_failed).toEqual([
      { id: 'pair-6', where: join(PAIRS, 'pairs.jsonl:7'), reason: 'no such table: teacher' },
    ]);
    expect(card.checks!.duplicates.map((d) => [d.id, d.reason])).toEqual([
      ['pair-5', `same question, SQL and database as ${join(PAIRS, 'pairs.jsonl:1')}`],
    ]);
    const { train, eval: ev } = read('rows');
    // 14 pairs pass the checks; a quarter (rounded) go to eval.
    expect(ev.length).toBe(4);
    const removed = card.checks!.in_both_splits.map((d) => d.id);
    expect([...train, ...ev].map((r) => r.id).length + removed.length).toBe(14);
    const evalQuestions = new Set(ev.map((r) => `${r.db_id}|${r.question.toLowerCase()}`));
    expect(train.some((r) => evalQuestions.has(`${r.db_id}|${r.question.toLowerCase()}`))).toBe(false);
    // Spider's hardness is left out, not faked; each record names its database file.
    expect(card.train.hardness).toBeUndefined();
    expect(ev.every((r) => r.hardness === null && r.db_path === resolve(DBS, r.db_id, `${r.db_id}.sqlite`))).toBe(true);
    expect(train.find((r) => r.id === 'pair-4')?.messages[1].content).toContain(
      'Question: Who has the highest GPA?\nEvidence: highest GPA refers to MAX(gpa)\n',
    );
    // The same seed draws the same split.
    await prepareDataset(options('rows-again'));
    expect(read('rows-again').eval.map((r) => r.id)).toEqual(ev.map((r) => r.id));
  });

  it('--split-by db puts no database in both splits', async () => {
    const card = await prepareDataset(options('by-db', { splitBy: 'db' }));
    const { train, eval: ev } = read('by-db');
    const evalDbs = new Set(ev.map((r) => r.db_id));
    expect(evalDbs.size).toBe(1);
    expect(train.some((r) => evalDbs.has(r.db_id))).toBe(false);
    expect(train.length + ev.length).toBe(14);
    expect(card.options.split_by).toBe('db');
  });

  it('--eval-pairs gives eval its own pairs; a train question asked in eval is removed from train', async () => {
    const card = await prepareDataset(options('explicit', { evalPairs: join(PAIRS, 'eval.jsonl') }));
    const { train, eval: ev } = read('explicit');
    expect(ev.map((r) => r.question)).toEqual(['Which book has the fewest pages?', 'List the course titles.']);
    expect(card.checks!.in_both_splits.map((d) => d.id)).toEqual(['pair-2']);
    expect(train.length).toBe(13);
  });

  it('reads CSV with db_path relative to the file, quoted commas and newlines included', async () => {
    await prepareDataset(options('csv', { pairs: join(PAIRS, 'pairs.csv'), dbDir: undefined, evalFraction: 0.5 }));
    const { train, eval: ev } = read('csv');
    const all = [...train, ...ev];
    expect(all.length).toBe(6);
    expect(all.find((r) => r.id === 'pair-5')?.question).toBe('Name, in order, the\n"grade 3" students.');
    expect(all.every((r) => r.db_id === 'school')).toBe(true);
  });

  it('evaluate scores the pairs on their own database files, with no Spider hardness', async () => {
    const gold = join(tmp, 'rows', 'eval.jsonl');
    const ev = readJsonl<PromptRecord>(gold);
    const preds = ev.map((r, i) => ({
      id: r.id,
      sql: i === 0 ? 'SELECT 0' : r.query.replace(/^SELECT /, 'SELECT DISTINCT '),
    }));
    const predPath = write('pred.jsonl', preds.map((p) => JSON.stringify(p)).join('\n') + '\n');
    const report = await evaluatePredictions(loadEvalItems({ predPath, goldPath: gold }), { workers: 1 });
    expect(report.examples.map((e) => e.execution)).toEqual([false, true, true, true]);
    expect(report.summary.by_hardness).toEqual({});
    expect(report.examples.every((e) => e.exact_set_match === null)).toBe(true);
  });
});

describe('prepare --pairs: bad input names the file, row and field', () => {
  const fails = (extra: Partial<PrepareOptions>) => prepareDataset(options('bad', extra));
  it('a missing column or field', async () => {
    const csv = write('nosql.csv', 'question,db_id\nHow many?,school\n');
    await expect(fails({ pairs: csv })).rejects.toThrow(
      `${csv}:1: the header has no "sql" column (columns: question, db_id)`,
    );
    const jsonl = write(
      'nosql.jsonl',
      '{"question":"a","sql":"SELECT 1","db_id":"school"}\n\n{"question":"b","db_id":"school"}\n',
    );
    await expect(fails({ pairs: jsonl })).rejects.toThrow(`${jsonl}:3: field "sql" is missing or empty`);
  });
  it('an unknown db_id', async () => {
    const jsonl = write(
      'nodb.jsonl',
      '{"question":"a","sql":"SELECT 1","db_id":"school"}\n{"question":"b","sql":"SELECT 1","db_id":"nope"}\n',
    );
    await expect(fails({ pairs: jsonl })).rejects.toThrow(
      `${jsonl}:2: field "db_id": unknown database "nope" (no ${join(DBS, 'nope', 'nope.sqlite')} or ${join(DBS, 'nope.sqlite')})`,
    );
  });
  it('a database file that is not SQLite', async () => {
    const notDb = write('notes.sqlite', 'just some text, not a database\n');
    const csv = write('text.csv', `question,sql,db_path\nHow many?,SELECT 1,${notDb}\n`);
    await expect(fails({ pairs: csv, dbDir: undefined })).rejects.toThrow(
      `${csv}:2: field "db_path": ${notDb} is not a SQLite database (no SQLite header)`,
    );
    await expect(fails({ dbDir: undefined, db: notDb })).rejects.toThrow(`--db: ${notDb} is not a SQLite database`);
  });
  it('a split left empty by the checks', async () => {
    const evalPath = write('eval-bad.jsonl', '{"question":"a","sql":"SELECT * FROM nowhere","db_id":"school"}\n');
    await expect(fails({ evalPairs: evalPath })).rejects.toThrow(
      `${evalPath}: the eval split is empty after the checks (2 with failing gold SQL, 1 duplicates, 0 in both splits kept out)`,
    );
  });
  it('the CLI prints the checks as a table and one line for an error', () => {
    const r = spawnSync(
      process.execPath,
      [
        'bin/sqlora.js',
        'prepare',
        '--pairs',
        join(PAIRS, 'pairs.jsonl'),
        '--db-dir',
        DBS,
        '--out',
        join(tmp, 'cli'),
        '--eval-pairs',
        join(PAIRS, 'eval.jsonl'),
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      'checked 18 pairs: 1 gold SQL failing, 1 duplicates, 1 questions in both splits (removed from train)\n' +
        `  gold SQL fails  ${PAIRS}/pairs.jsonl:7  no such table: teacher\n`,
    );
    const bad = spawnSync(
      process.execPath,
      ['bin/sqlora.js', 'prepare', '--pairs', join(PAIRS, 'pairs.jsonl'), '--out', join(tmp, 'cli2')],
      {
        encoding: 'utf8',
      },
    );
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toBe(
      `error: ${PAIRS}/pairs.jsonl:1: field "db_id" needs --db-dir DIR (or give db_path, or --db FILE for every row)`,
    );
  });
});
