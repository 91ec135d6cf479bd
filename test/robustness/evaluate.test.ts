/**
 * `sqlora evaluate` against a careful tester: unwritable outputs found before the work, broken
 * databases reported as errors of the run, out-of-range time limits, pathological predictions,
 * and signals to the evaluating process (its sandbox workers must die with it).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../../src/cli/args.js';
import { command as evaluate } from '../../src/cli/commands/evaluate.js';
import { spiderTokenize } from '../../src/eval/sqlTokenize.js';
import { sqlora } from '../helpers/cli.js';
import { alive, expectRefused, sandboxWorkers, snapshot, waitFor } from './helpers.js';

let tmp: string;
let spider: string;
let gold: string;
const GOLD = ['SELECT count(*) FROM singer', 'SELECT name FROM singer ORDER BY age'];

const write = (name: string, text: string): string => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};
const predictions = (name: string, sqls: string[]): string =>
  write(name, sqls.map((sql, i) => JSON.stringify({ id: `q${i}`, sql }) + '\n').join(''));
/** A Spider folder holding concert_singer, whose database file is `db` (or the real one). */
function spiderWith(name: string, db?: Buffer): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'database', 'concert_singer'), { recursive: true });
  const file = join(dir, 'database', 'concert_singer', 'concert_singer.sqlite');
  if (db) writeFileSync(file, db);
  else copyFileSync('test/fixtures/spider/database/concert_singer/concert_singer.sqlite', file);
  copyFileSync('test/fixtures/spider/tables.json', join(dir, 'tables.json'));
  return dir;
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-robust-evaluate-'));
  spider = spiderWith('spider');
  gold = write(
    'eval.jsonl',
    GOLD.map((query, i) => JSON.stringify({ id: `q${i}`, db_id: 'concert_singer', question: 'q', query }) + '\n').join(
      '',
    ),
  );
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('evaluate: outputs are checked before the work starts', () => {
  it('refuses --out in a missing folder and --out that is a folder, writing nothing', async () => {
    const pred = predictions('p-out.jsonl', GOLD);
    const before = snapshot(tmp);
    expectRefused(
      await sqlora('evaluate', [
        '--pred',
        pred,
        '--gold',
        gold,
        '--spider',
        spider,
        '--out',
        join(tmp, 'no', 'r.json'),
      ]),
      /--out \S+no\/r\.json: the folder \S+no does not exist; create it first/,
    );
    expectRefused(
      await sqlora('evaluate', ['--pred', pred, '--gold', gold, '--spider', spider, '--out', spider]),
      /--out \S+spider is a folder; give a file name/,
    );
    expect(snapshot(tmp)).toEqual(before);
  });

  it('--out made unwritable during the run: the summary is still printed, then one error line', async () => {
    const dir = join(tmp, 'vanishing');
    mkdirSync(dir);
    const slow = 'SELECT count(*) FROM singer a, singer b, singer c, singer d, singer e, singer f, singer g, singer h';
    const pred = predictions('p-vanish.jsonl', [slow, GOLD[1]]);
    const args = ['--pred', pred, '--gold', gold, '--spider', spider, '--out', join(dir, 'r.json'), '--timeout', '1'];
    const r = await sqlora('evaluate', args, {
      // Once the checks passed and queries run (a sandbox worker exists), the folder goes away.
      onSpawn: (child) =>
        void waitFor(() => sandboxWorkers(child.pid!).length > 0, 20_000, 'a sandbox worker').then(() =>
          rmSync(dir, { recursive: true }),
        ),
    });
    expectRefused(
      r,
      /cannot write \S+vanishing\/r\.json: .*no such file or directory.*\(the summary above is all that was kept\)$/,
    );
    expect(r.stdout).toMatch(/execution %.* 50\.00\n/);
  }, 20_000);

  it('validates --timeout: 0.01 s to one day', async () => {
    const pred = predictions('p-timeout.jsonl', GOLD);
    const range = (t: string) => new RegExp(`--timeout must be from 0\\.01 to 86400 seconds \\(1 day\\), got ${t}$`);
    expectRefused(
      await sqlora('evaluate', ['--pred', pred, '--gold', gold, '--spider', spider, '--timeout', '0.0001']),
      range('0.0001'),
    );
    for (const t of ['3000000', '0'])
      await expect(
        evaluate.run(parseCommandArgs(evaluate, ['--pred', pred, '--gold', gold, '--spider', spider, '--timeout', t])),
      ).rejects.toThrow(range(t));
  });
});

describe('evaluate: broken data is an error of the run, not wrong predictions', () => {
  it('a zero-byte database: gold queries fail, the run exits 1 after writing its results; --allow-gold-errors scores them', async () => {
    const empty = spiderWith('spider-empty', Buffer.alloc(0));
    const pred = predictions('p-empty.jsonl', GOLD);
    const out = join(tmp, 'empty.json');
    const r = await sqlora('evaluate', [
      '--pred',
      pred,
      '--gold',
      gold,
      '--db-dir',
      join(empty, 'database'),
      '--out',
      out,
    ]);
    expectRefused(
      r,
      /^error: 2 of 2 gold queries failed on their databases \(first: example 0 id q0, db concert_singer: gold query failed: no such table: singer\); the databases or the gold file are broken \(results are in \S+empty\.json\)\. Fix them, or pass --allow-gold-errors/,
    );
    expect(r.stdout).toMatch(/execution %.* 0\.00\n/);
    expect(JSON.parse(readFileSync(out, 'utf8')).examples[0].gold_error).toBe(
      'gold query failed: no such table: singer',
    );
    const allowed = await sqlora('evaluate', [
      ...['--pred', pred, '--gold', gold, '--db-dir', join(empty, 'database'), '--allow-gold-errors'],
    ]);
    expect(allowed.code, allowed.stderr).toBe(0);
  });

  it('a damaged database file: one line naming it, the reason said once', async () => {
    const damaged = spiderWith('spider-damaged', Buffer.from('this is not a SQLite file, only text '.repeat(200)));
    const r = await sqlora('evaluate', [
      '--pred',
      predictions('p-dmg.jsonl', GOLD),
      '--gold',
      gold,
      '--spider',
      damaged,
    ]);
    expectRefused(r, /^error: cannot read the schema of \S+concert_singer\.sqlite: file is not a database$/);
    expect(r.stderr.match(/cannot read the schema/g)).toHaveLength(1);
  });
});

describe('evaluate: pathological predictions', () => {
  it('a 1 MB prediction is a failed example with its reason; long runs of spaces are scored quickly', async () => {
    const huge = 'SELECT count(*) FROM singer WHERE name = ' + 'x'.repeat(1_000_000);
    const spaced = 'SELECT count(*) FROM singer.' + ' '.repeat(15_000) + ';';
    const pred = predictions('p-huge.jsonl', [huge, spaced]);
    const out = join(tmp, 'huge.json');
    const t0 = Date.now();
    const r = await sqlora('evaluate', ['--pred', pred, '--gold', gold, '--spider', spider, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const [first, second] = JSON.parse(readFileSync(out, 'utf8')).examples;
    expect(first).toMatchObject({
      exact_set_match: false,
      execution: false,
      error:
        'the prediction is 1000041 characters long, over the limit of 20000: scored as wrong without parsing or running it',
    });
    expect(second).toMatchObject({ exact_set_match: false, execution: false });
    expect(second.error).toBe(
      'exact-set-match: prediction does not parse: unknown table or alias: singer.; execution: near ";": syntax error',
    );
  }, 20_000);
});

describe("exact-set-match's tokenizer is linear", () => {
  // Before: a period, 300k spaces and one more character took 44.9 s (a regex retried from every space).
  it.each([
    ['a period, 300k spaces, a character', 'SELECT T1.name FROM singer AS T1.' + ' '.repeat(300_000) + 'x'],
    ['1 MB of spaces', 'SELECT name FROM singer' + ' '.repeat(1_000_000)],
    ['20k quoted values', 'SELECT name FROM singer WHERE ' + "name = 'a' OR ".repeat(20_000) + "name = 'b'"],
    ['20k != operators', 'SELECT name FROM singer WHERE ' + 'age ! = 1 AND '.repeat(20_000) + 'age ! = 2'],
  ])('%s', (_name, sql) => {
    const t0 = performance.now();
    const toks = spiderTokenize(sql);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(toks.slice(0, 3)).toEqual(['select', sql.includes('T1') ? 't1.name' : 'name', 'from']);
  });
});

describe('evaluate: signals', () => {
  // Never ends: the worker is inside one native call until it is killed.
  const RUNAWAY = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';
  const start = async (signal: NodeJS.Signals) => {
    const pred = predictions(`p-${signal}.jsonl`, [RUNAWAY, RUNAWAY]);
    let workers: number[] = [];
    const r = await sqlora(
      'evaluate',
      ['--pred', pred, '--gold', gold, '--spider', spider, '--timeout', '600', '--workers', '1'],
      {
        onSpawn(child) {
          void (async () => {
            // The worker is running the runaway query once it is the evaluator's busy child.
            await waitFor(() => (workers = sandboxWorkers(child.pid!)).length > 0, 20_000, 'a sandbox worker');
            await new Promise((res) => setTimeout(res, 1500));
            child.kill(signal);
          })();
        },
      },
    );
    return { r, workers };
  };

  it('Ctrl-C: says nothing was written and how to go on, exit 130, and its workers are gone', async () => {
    const { r, workers } = await start('SIGINT');
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/stopped \(Ctrl-C\): nothing was written; run the same command again\n$/);
    await waitFor(() => workers.every((p) => !alive(p)), 3000, 'the workers to end');
  }, 30_000);

  it('SIGTERM and SIGKILL to the evaluator alone: its workers die with it', async () => {
    const term = await start('SIGTERM');
    expect(term.r.code).toBe(143);
    await waitFor(() => term.workers.every((p) => !alive(p)), 3000, 'the workers to end after SIGTERM');
    const kill = await start('SIGKILL');
    expect(kill.r.signal).toBe('SIGKILL');
    expect(kill.workers.length).toBeGreaterThan(0);
    // Nothing of the parent ran: the workers notice on their own that it is gone.
    await waitFor(() => kill.workers.every((p) => !alive(p)), 3000, 'the workers to end after SIGKILL');
    expect(existsSync(join(tmp, 'never'))).toBe(false);
  }, 60_000);
});
