import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { birdResultsEqual } from '../src/eval/birdExecution.js';
import { evaluatePredictions } from '../src/eval/evaluate.js';
import { loadEvalItems, type EvalItem } from '../src/eval/predictions.js';
import type { DatasetCard, PromptRecord } from '../src/data/records.js';
import { readJsonl } from '../src/util/jsonl.js';
import { readResults } from '../src/report/inputs.js';
import { writeReport } from '../src/report/report.js';

const BIRD = 'test/fixtures/bird';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-bird-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sqlora = (...args: string[]) => spawnSync(process.execPath, ['bin/sqlora.js', ...args], { encoding: 'utf8' });
const dev = JSON.parse(readFileSync(join(BIRD, 'dev/dev.json'), 'utf8')) as {
  question_id: number;
  db_id: string;
  SQL: string;
  difficulty: 'simple' | 'moderate' | 'challenging';
}[];
const preds = readJsonl<{ id: string; sql: string; why: string }>(join(BIRD, 'predictions.jsonl'));
// Written by tools/reference/bird_execution.py: BIRD's own rule run with Python's sqlite3.
const reference = JSON.parse(readFileSync(join(BIRD, 'reference.json'), 'utf8')) as {
  execution: number[];
  by_difficulty: Record<string, { count: number; correct: number }>;
};
const items = (withDifficulty: boolean): EvalItem[] =>
  dev.map((ex, index) => ({
    index,
    id: `dev-${ex.question_id}`,
    db_id: ex.db_id,
    gold: ex.SQL,
    pred: preds[index].sql,
    ...(withDifficulty ? { difficulty: ex.difficulty } : {}),
  }));
/** The verdict each case's `why` states for a metric ("both right", "spider wrong ...", "bird right"). */
const stated = (why: string, metric: 'spider' | 'bird'): boolean => {
  const m = new RegExp(`(?:both|${metric})[^,]*?\\b(right|wrong)`).exec(why);
  if (!m) throw new Error(`no ${metric} verdict in: ${why}`);
  return m[1] === 'right';
};

describe('BIRD execution accuracy', () => {
  it('compares rows as sets of tuples: column order counts, row order and repeats do not', () => {
    expect(birdResultsEqual([['I1', 'Sa']], [['Sa', 'I1']])).toBe(false);
    expect(birdResultsEqual([['Sa'], ['Sb']], [['Sb'], ['Sa'], ['Sb']])).toBe(true);
    expect(birdResultsEqual([['Sa'], ['Sb']], [['Sa']])).toBe(false);
    expect(birdResultsEqual([], [])).toBe(true);
  });

  it("agrees with BIRD's script on every fixture case, and differs from Spider's metric where stated", async () => {
    const bird = await evaluatePredictions(items(true), { dbDir: join(BIRD, 'dev/dev_databases'), workers: 1 });
    const spider = await evaluatePredictions(items(false), { dbDir: join(BIRD, 'dev/dev_databases'), workers: 1 });
    expect(bird.examples.map((e) => (e.execution ? 1 : 0))).toEqual(reference.execution);
    expect(bird.examples.map((e) => e.execution)).toEqual(preds.map((p) => stated(p.why, 'bird')));
    expect(spider.examples.map((e) => e.execution)).toEqual(preds.map((p) => stated(p.why, 'spider')));
    const differ = bird.examples.filter((e, i) => e.execution !== spider.examples[i].execution).length;
    expect(differ).toBe(6);
    // Spider's hardness and exact-set-match are not computed for BIRD.
    expect(bird.examples.every((e) => e.hardness === null && e.exact_set_match === null)).toBe(true);
    for (const [level, r] of Object.entries(reference.by_difficulty)) {
      const s = level === 'all' ? bird.summary.overall : bird.summary.by_difficulty?.[level as 'simple'];
      expect([s?.count, s?.execution?.total]).toEqual([r.count, r.correct]);
    }
    expect(spider.summary.by_difficulty).toBeUndefined();
  });
});

describe("evaluate on BIRD's own files", () => {
  it('reads dev.json as gold and predict_dev.json (SQL, separator, db_id) as predictions', async () => {
    const loaded = loadEvalItems({ predPath: join(BIRD, 'predict_dev.json'), goldPath: join(BIRD, 'dev/dev.json') });
    expect(loaded.map((it) => [it.pred, it.difficulty])).toEqual(preds.map((p, i) => [p.sql, dev[i].difficulty]));
    const report = await evaluatePredictions(loaded, { dbDir: join(BIRD, 'dev/dev_databases'), workers: 1 });
    expect(report.examples.map((e) => (e.execution ? 1 : 0))).toEqual(reference.execution);
    const bad = join(tmp, 'predict_bad.json');
    writeFileSync(bad, '{"1": "SELECT 1\\t----- bird -----\\tschool"}');
    expect(() => loadEvalItems({ predPath: bad, goldPath: join(BIRD, 'dev/dev.json') })).toThrow(
      `${bad}: no prediction for question 0 (BIRD's predictions are keyed "0".."0")`,
    );
  });
});

describe('prepare --bird', () => {
  it('reads the release layout and puts the evidence in the prompt; --no-evidence leaves it out', () => {
    const out = join(tmp, 'bird');
    const r = sqlora('prepare', '--bird', BIRD, '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const evalRecs = readJsonl<PromptRecord>(join(out, 'eval.jsonl'));
    const train = readJsonl<PromptRecord>(join(out, 'train.jsonl'));
    expect(train.map((t) => t.id)).toEqual(['train-0', 'train-1', 'train-2', 'train-3', 'train-4', 'train-5']);
    expect(evalRecs.map((e) => e.id)).toEqual(dev.map((d) => `dev-${d.question_id}`));
    expect(evalRecs[0].difficulty).toBe('simple');
    expect(evalRecs[0].hardness).toBeNull();
    expect(evalRecs[0].messages[1].content).toContain(
      "Question: How many students live in Lyon?\nEvidence: live in Lyon refers to city = 'Lyon'\n",
    );
    // A question without evidence gets no Evidence line.
    expect(evalRecs[3].messages[1].content).not.toContain('Evidence:');
    const card = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')) as DatasetCard;
    expect(card.source.layout).toBe('bird');
    expect(card.eval.difficulty).toEqual({ simple: 10, moderate: 8, challenging: 6, unknown: 0 });
    expect(card.train.difficulty).toEqual({ simple: 0, moderate: 0, challenging: 0, unknown: 6 });
    expect(card.eval.hardness).toBeUndefined();
    expect(card.options.evidence).toBe(true);

    const bare = join(tmp, 'bird-bare');
    expect(sqlora('prepare', '--bird', BIRD, '--out', bare, '--no-evidence').status).toBe(0);
    const bareRecs = readJsonl<PromptRecord>(join(bare, 'eval.jsonl'));
    expect(bareRecs.some((e) => e.messages[1].content.includes('Evidence:'))).toBe(false);
    expect(bareRecs[0].evidence).toBe("live in Lyon refers to city = 'Lyon'");

    // evaluate on the prepared eval.jsonl scores by BIRD's rules, per difficulty.
    const e = sqlora(
      'evaluate',
      '--pred',
      join(BIRD, 'predictions.jsonl'),
      '--gold',
      join(out, 'eval.jsonl'),
      '--db-dir',
      join(BIRD, 'dev/dev_databases'),
      '--json',
      '--out',
      join(out, 'results.json'),
    );
    expect(e.status, e.stderr).toBe(0);
    const summary = (JSON.parse(e.stdout) as { summary: { overall: { execution: { total: number } } } }).summary;
    expect(summary.overall.execution.total).toBe(reference.by_difficulty.all.correct);

    // The report names the dataset and its prompt format, and shows BIRD's difficulties, not Spider's hardness.
    const written = writeReport(join(out, 'report'), {
      run: null,
      baseline: null,
      finetuned: readResults(join(out, 'results.json'), 'fine-tuned'),
      examples: 0,
      generatedAt: new Date(0),
    });
    const markdown = readFileSync(written.markdown, 'utf8');
    expect(markdown).toContain(`Fine-tuned: on BIRD (${resolve(BIRD)}), prompt format schema.`);
    expect(markdown).toMatch(/\| challenging \| 6 \| Execution accuracy \| 50\.00 \|/);
    expect(markdown).not.toMatch(/\| (easy|medium|hard|extra) \|/);
  });

  it('names the example and db_id of an unknown database, and a missing dev.json', () => {
    const copy = join(tmp, 'bird-bad');
    cpSync(BIRD, copy, { recursive: true });
    const devPath = join(copy, 'dev/dev.json');
    const rows = JSON.parse(readFileSync(devPath, 'utf8')) as { db_id: string }[];
    rows[2].db_id = 'nowhere';
    writeFileSync(devPath, JSON.stringify(rows));
    const r = sqlora('prepare', '--bird', copy, '--out', join(tmp, 'o1'));
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^error: example dev-2: unknown db_id "nowhere": no nowhere\/nowhere\.sqlite in /);
    rmSync(devPath);
    const m = sqlora('prepare', '--bird', copy, '--out', join(tmp, 'o2'));
    expect(m.status).toBe(1);
    expect(m.stderr).toContain(`dev/dev.json not found in ${copy}`);
  });
});
