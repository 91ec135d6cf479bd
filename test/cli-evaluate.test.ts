import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqlora as cli, type CliRun as Run } from './helpers/cli.js';

const sqlora = (...args: string[]): Promise<Run> => cli('evaluate', args);

/** A failed run: non-zero exit, one `error:` line, no stack trace. */
function expectUserError(r: Run, message: RegExp): void {
  expect(r.code, r.stderr).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(message);
}

const SEED = 'test/fixtures/seed';
interface Dev {
  db_id: string;
  query: string;
  question: string;
}
const dev = JSON.parse(readFileSync('test/fixtures/spider/dev.json', 'utf8')) as Dev[];
let tmp: string;
let spider: string;
const file = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-cli-evaluate-'));
  // A Spider folder with every database of the first 200 dev questions.
  spider = join(tmp, 'spider');
  const sources: [string, string][] = [
    ['concert_singer', 'test/fixtures/spider'],
    ['pets_1', 'test/fixtures/spider'],
    ['car_1', 'test/fixtures/spider'],
    ['flight_2', 'test/fixtures/eval'],
  ];
  for (const [db, from] of sources) {
    mkdirSync(join(spider, 'database', db), { recursive: true });
    copyFileSync(join(from, 'database', db, `${db}.sqlite`), join(spider, 'database', db, `${db}.sqlite`));
  }
  const tables = [
    ...JSON.parse(readFileSync('test/fixtures/spider/tables.json', 'utf8')),
    ...JSON.parse(readFileSync('test/fixtures/eval/tables.json', 'utf8')),
  ];
  writeFileSync(join(spider, 'tables.json'), JSON.stringify(tables));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('sqlora evaluate', () => {
  it('documents its flags', async () => {
    const r = await sqlora('--help');
    expect(r.code).toBe(0);
    for (const flag of [
      '--pred FILE',
      '--gold FILE',
      '--spider DIR',
      '--db-dir DIR',
      '--tables FILE',
      '--timeout SECONDS',
      '--out FILE',
      '--json',
      '--limit N',
      '--pred-format',
    ])
      expect(r.stdout).toContain(flag);
  });

  it('reproduces the reference summaries from its results JSON alone', async () => {
    const [ft, base] = await Promise.all([
      sqlora('--pred', `${SEED}/finetuned_results.json`),
      sqlora('--pred', `${SEED}/baseline_results.json`, '--json'),
    ]);
    expect(ft.code, ft.stderr).toBe(0);
    expect(ft.stdout).toMatch(/seed exact %.* 6\.00\n/);
    expect(ft.stdout).toMatch(/seed token %.* 54\.75\n/);
    expect(base.code, base.stderr).toBe(0);
    const { summary } = JSON.parse(base.stdout);
    expect([
      summary.overall.count,
      summary.overall.seed_exact.pct.toFixed(2),
      summary.overall.seed_token.pct.toFixed(2),
    ]).toEqual([500, '0.00', '34.39']);
  });

  it('scores the reference fine-tuned predictions at its published 6.5% exact-set-match and 6.5% execution', async () => {
    const out = join(tmp, 'results.json');
    const r = await sqlora('--pred', `${SEED}/finetuned_results.json`, '--spider', spider, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/execution %.* 6\.50\n/);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.summary.overall.exact_set_match.pct.toFixed(2)).toBe('6.50');
    expect(report.summary.overall.execution.pct.toFixed(2)).toBe('6.50');
    expect(report.summary.overall.seed_exact.pct.toFixed(2)).toBe('6.00');
    const levels = Object.values(report.summary.by_hardness) as { count: number }[];
    expect(levels.reduce((s, l) => s + l.count, 0)).toBe(200);
    expect(report.examples).toHaveLength(200);
    expect(report.examples.map((e: { index: number }) => e.index)).toEqual([...Array(200).keys()]);
    expect(Object.keys(report.examples[0]).slice(0, 8)).toEqual([
      'index',
      'id',
      'db_id',
      'hardness',
      'seed_exact',
      'seed_token',
      'exact_set_match',
      'execution',
    ]);
    expect(report.examples[0]).toMatchObject({
      db_id: 'concert_singer',
      hardness: 'easy',
      seed_exact: true,
      exact_set_match: true,
      execution: true,
    });
    // Example 5 asks about a table the model invented: a failed example with its reason.
    const failed = report.examples.find((e: { error?: string }) => e.error?.includes('no such table'));
    expect(failed).toMatchObject({ execution: false });
  });

  it('gives 100% when gold is its own prediction, by id (eval.jsonl) and in the official line formats', async () => {
    const evalJsonl = file(
      'eval.jsonl',
      dev
        .map((e, i) => JSON.stringify({ id: `dev-${i}`, db_id: e.db_id, question: e.question, query: e.query }) + '\n')
        .join(''),
    );
    const shuffled = dev.map((e, i) => ({ id: `dev-${i}`, sql: e.query })).reverse();
    const predJsonl = file('pred.jsonl', shuffled.map((p) => JSON.stringify(p) + '\n').join(''));
    const goldSql = file('gold.sql', dev.map((e) => `${e.query}\t${e.db_id}\n`).join(''));
    const predSql = file('pred.sql', dev.map((e) => `${e.query}\n`).join(''));
    const out = join(tmp, 'gold-as-pred.json');
    const [byId, lines] = await Promise.all([
      sqlora('--pred', predJsonl, '--gold', evalJsonl, '--spider', spider, '--out', out, '--json'),
      sqlora('--pred', predSql, '--gold', goldSql, '--spider', spider, '--json', '--limit', '50'),
    ]);
    for (const [r, n] of [
      [byId, 179],
      [lines, 50],
    ] as const) {
      expect(r.code, r.stderr).toBe(0);
      const { summary } = JSON.parse(r.stdout);
      expect(summary.overall).toMatchObject({
        count: n,
        seed_exact: { pct: 100 },
        exact_set_match: { pct: 100 },
        execution: { pct: 100 },
      });
    }
    const ids = JSON.parse(readFileSync(out, 'utf8')).examples.map((e: { id: string }) => e.id);
    expect(ids).toEqual(dev.map((_, i) => `dev-${i}`));
  });

  it('stops a runaway query at --timeout and goes on with the next example', async () => {
    const picks = dev.filter((e) => e.db_id === 'car_1').slice(0, 3);
    const gold = file('car.sql', picks.map((e) => `${e.query}\t${e.db_id}\n`).join(''));
    const runaway = 'SELECT count(*) FROM cars_data a, cars_data b, cars_data c, cars_data d, cars_data e';
    const pred = file('car-pred.sql', [picks[0].query, runaway, picks[2].query].join('\n') + '\n');
    const out = join(tmp, 'runaway.json');
    const t0 = Date.now();
    const r = await sqlora(
      '--pred',
      pred,
      '--gold',
      gold,
      '--db-dir',
      join(spider, 'database'),
      '--timeout',
      '0.5',
      '--workers',
      '1',
      '--out',
      out,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(20_000);
    const { examples } = JSON.parse(readFileSync(out, 'utf8'));
    expect(examples.map((e: { execution: boolean }) => e.execution)).toEqual([true, false, true]);
    expect(examples[1].error).toBe('execution: timed out after 0.50 s');
  });

  it('turns bad input into one clear error line', async () => {
    const goldSql = file(
      'gold5.sql',
      dev
        .slice(0, 5)
        .map((e) => `${e.query}\t${e.db_id}\n`)
        .join(''),
    );
    const evalJsonl = file(
      'eval5.jsonl',
      dev
        .slice(0, 2)
        .map((e, i) => JSON.stringify({ id: `dev-${i}`, db_id: e.db_id, question: e.question, query: e.query }) + '\n')
        .join(''),
    );
    const malformed = file('malformed.jsonl', '{"id": "dev-0", "sql": "SELECT 1"}\n\n{"id": "dev-1", "sql": SELECT}\n');
    const unknownDb = file('unknown-db.sql', 'SELECT 1\tno_such_db\n');
    const runs = await Promise.all([
      sqlora('--pred', join(tmp, 'missing.sql'), '--gold', goldSql),
      sqlora('--pred', `${SEED}/finetuned_results.json`, '--spider', join(tmp, 'no-spider')),
      sqlora('--pred', malformed, '--gold', evalJsonl),
      sqlora('--pred', unknownDb, '--gold', unknownDb, '--spider', spider),
      sqlora('--pred', file('three.sql', 'SELECT 1\nSELECT 2\nSELECT 3\n'), '--gold', goldSql),
      sqlora('--pred', file('empty.jsonl', ''), '--gold', evalJsonl),
    ]);
    expectUserError(runs[0], /predictions file not found: .*missing\.sql/);
    expectUserError(runs[1], /Spider folder not found: .*no-spider/);
    expectUserError(runs[2], /malformed JSON in .*malformed\.jsonl:3/);
    expectUserError(runs[3], /unknown db_id "no_such_db"/);
    expectUserError(runs[4], /has 3 predictions but .*gold5\.sql has 5 gold examples/);
    expectUserError(runs[5], /empty\.jsonl has no predictions/);
  });
});
