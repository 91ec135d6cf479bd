import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executionMatch } from '../src/eval/execution.js';
import { SqlSandbox } from '../src/eval/sandbox.js';

const FIXTURE = 'test/fixtures/spider';
const dbFile = (db: string) => join(FIXTURE, 'database', db, `${db}.sqlite`);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let sandbox: SqlSandbox;
let tmp: string;
beforeAll(() => {
  sandbox = new SqlSandbox(2);
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-sandbox-'));
});
afterAll(() => {
  sandbox.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('SQL sandbox', () => {
  it('never writes: writes, ATTACH, PRAGMA writes and stacked statements fail and the file stays byte-identical', async () => {
    const db = join(tmp, 'concert_singer.sqlite');
    copyFileSync(dbFile('concert_singer'), db);
    const before = sha256(db);
    const attempts: [string, RegExp][] = [
      ['DROP TABLE singer;', /would modify the database/],
      ["ATTACH '/tmp/sqlora-attack.db' AS x", /returns no rows/],
      ['PRAGMA user_version = 7', /would modify the database/],
      ['PRAGMA journal_mode = WAL', /would modify the database/],
      ['PRAGMA query_only = 0', /returns no rows/],
      ["INSERT INTO singer (Name) VALUES ('x') RETURNING *", /would modify the database/],
      ["UPDATE singer SET Name = 'x'", /would modify the database/],
      ['SELECT count(*) FROM singer; DROP TABLE singer', /more than one statement/],
      ['CREATE TEMP TABLE t (x)', /would modify the database/],
      ["VACUUM INTO '/tmp/sqlora-copy.db'", /would modify the database/],
    ];
    for (const [sql, reason] of attempts) {
      const out = await sandbox.execute(db, sql, 5000);
      expect(out.ok, sql).toBe(false);
      if (!out.ok) expect(out.error, sql).toMatch(reason);
    }
    const dropped = await executionMatch(sandbox, [db], 'SELECT count(*) FROM singer', 'DROP TABLE singer', {
      timeoutMs: 5000,
    });
    expect(dropped).toEqual({ match: false, error: expect.stringMatching(/would modify the database/) });
    expect(await sandbox.execute(db, 'SELECT count(*) FROM singer', 5000)).toEqual({ ok: true, rows: [['I6']] });
    expect(sha256(db)).toBe(before);
  });

  it('stops a runaway query at the time limit, and the next query runs', async () => {
    const db = dbFile('car_1');
    const runaway = 'SELECT count(*) FROM cars_data a, cars_data b, cars_data c, cars_data d, cars_data e';
    const t0 = Date.now();
    const r = await executionMatch(sandbox, [db], 'SELECT count(*) FROM cars_data', runaway, { timeoutMs: 300 });
    const elapsed = Date.now() - t0;
    expect(r).toEqual({ match: false, error: 'timed out after 0.30 s' });
    expect(elapsed).toBeLessThan(5000);
    const next = await executionMatch(
      sandbox,
      [db],
      'SELECT count(*) FROM cars_data',
      'SELECT count(*) FROM cars_data',
      { timeoutMs: 5000 },
    );
    expect(next).toEqual({ match: true });
  });

  it('reads a prediction only one row past the gold row count', async () => {
    const db = dbFile('car_1');
    const big = 'SELECT * FROM cars_data a, cars_data b';
    const out = await sandbox.execute(db, big, 5000, 3);
    expect(out.ok && out.rows.length).toBe(4);
    expect(await executionMatch(sandbox, [db], 'SELECT * FROM cars_data', big, { timeoutMs: 5000 })).toEqual({
      match: false,
    });
  });

  it('reports errors of a prediction as a failed example with the reason', async () => {
    const db = dbFile('concert_singer');
    expect(
      await executionMatch(sandbox, [db], 'SELECT name FROM singer', 'SELECT name FROM singers', { timeoutMs: 5000 }),
    ).toEqual({ match: false, error: 'no such table: singers' });
    expect(
      await executionMatch(sandbox, [db], 'SELECT name FROM singer', 'SELEC name FROM singer', { timeoutMs: 5000 }),
    ).toEqual({ match: false, error: expect.stringMatching(/syntax error/) });
    expect(await executionMatch(sandbox, [db], 'SELECT name FROM singer', '  ', { timeoutMs: 5000 })).toEqual({
      match: false,
      error: 'empty prediction',
    });
  });
});

describe('execution accuracy on real databases', () => {
  const cs = [dbFile('concert_singer')];
  const match = (gold: string, pred: string, keepDistinct = false) =>
    executionMatch(sandbox, cs, gold, pred, { timeoutMs: 5000, keepDistinct }).then((r) => r.match);

  it('follows the official semantics', async () => {
    expect(await match('SELECT name, age FROM singer', 'SELECT age, name FROM singer')).toBe(true);
    expect(await match('SELECT name FROM singer ORDER BY age DESC', 'SELECT name FROM singer ORDER BY age')).toBe(
      false,
    );
    expect(await match('SELECT name FROM singer', 'SELECT name FROM singer ORDER BY age')).toBe(true);
    // DISTINCT is dropped from both queries unless kept.
    expect(await match('SELECT DISTINCT country FROM singer', 'SELECT country FROM singer')).toBe(true);
    expect(await match('SELECT DISTINCT country FROM singer', 'SELECT country FROM singer', true)).toBe(false);
    // avg is the real 37.0, the integer division gives 37: equal, as in Python.
    expect(await match('SELECT avg(age) FROM singer', 'SELECT sum(age) / count(*) FROM singer')).toBe(true);
    expect(await match('SELECT avg(age) FROM singer', 'SELECT max(age) FROM singer')).toBe(false);
    expect(
      await match('SELECT count(*) FROM singer WHERE age >= 40', 'SELECT count(*) FROM singer WHERE age > = 40'),
    ).toBe(true);
  });

  it('reads "text" as a string where no such column exists, as Python\'s sqlite3 does (Spider gold relies on it)', async () => {
    const france = await sandbox.execute(
      cs[0],
      'SELECT count(*) FROM singer WHERE country = "France" AND "Name" != "x""y"',
      5000,
    );
    expect(france).toEqual({ ok: true, rows: [['I4']] });
    expect(
      await match(
        "SELECT name FROM singer WHERE country = 'France'",
        'SELECT "name" FROM singer WHERE country = "France"',
      ),
    ).toBe(true);
    expect(await match('SELECT name FROM singer', 'SELECT "nickname" FROM singer')).toBe(false);
  });

  it('scores every gold query of the fixture dev set as correct when it is its own prediction', async () => {
    const dev = JSON.parse(readFileSync(join(FIXTURE, 'dev.json'), 'utf8')) as { db_id: string; query: string }[];
    const results = await Promise.all(
      dev.map((ex) => executionMatch(sandbox, [dbFile(ex.db_id)], ex.query, ex.query, { timeoutMs: 10_000 })),
    );
    expect(results.filter((r) => !r.match)).toEqual([]);
    expect(results.length).toBe(179);
  });
});
