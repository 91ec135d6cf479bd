import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueryError, SqlDatabase } from '../src/serve/database.js';
import { defaultDatabaseName, openDatabase } from '../src/serve/databases.js';
import { queryFailure, spiderDbFile } from './helpers/sql-database.js';

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let tmp: string;
let path: string;
let db: SqlDatabase;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-sqlite-db-'));
  path = join(tmp, 'concert_singer.sqlite');
  copyFileSync(spiderDbFile('concert_singer'), path);
  db = await openDatabase('concert_singer', path);
});
afterAll(async () => {
  await db.close();
  rmSync(tmp, { recursive: true, force: true });
});

const failure = (sql: string, limits = {}): Promise<QueryError> => queryFailure(db, sql, limits);

describe('SQLite database', () => {
  it('reads the schema and sample rows', async () => {
    expect(db.name).toBe('concert_singer');
    expect(db.dialect).toBe('sqlite');
    const tables = await db.tables();
    expect(tables.map((t) => t.name)).toEqual(['stadium', 'singer', 'concert', 'singer_in_concert']);
    expect(tables[1].columns.map((c) => [c.name, c.type, c.pk])).toEqual([
      ['Singer_ID', 'INT', 1],
      ['Name', 'TEXT', 0],
      ['Country', 'TEXT', 0],
      ['Song_Name', 'TEXT', 0],
      ['Song_release_year', 'TEXT', 0],
      ['Age', 'INT', 0],
      ['Is_male', 'bool', 0],
    ]);
    expect(tables[2].foreignKeys).toEqual([{ columns: ['Stadium_ID'], table: 'stadium', refColumns: ['Stadium_ID'] }]);
    expect(await db.sampleRows('singer', 1)).toEqual([[1n, 'Joe Sharp', 'Netherlands', 'You', '1992', 52n, 'F']]);
  });

  it('returns columns and JSON-safe cells, caps rows and counts them all', async () => {
    const r = await db.query('SELECT Singer_ID, Name, Age FROM singer ORDER BY Singer_ID;', { maxRows: 2 });
    expect(r).toMatchObject({
      columns: ['Singer_ID', 'Name', 'Age'],
      rows: [
        [1, 'Joe Sharp', 52],
        [2, 'Timbaland', 32],
      ],
      rowCount: 6,
      truncated: true,
    });
    expect(r.elapsedMs).toBeGreaterThanOrEqual(0);
    const odd = await db.query("SELECT 9007199254740993, x'00ff', 1e999, NULL, 0.5 AS half -- the end");
    expect(odd).toMatchObject({
      columns: ['9007199254740993', "x'00ff'", '1e999', 'NULL', 'half'],
      rows: [['9007199254740993', '00ff', 'Infinity', null, 0.5]],
      rowCount: 1,
      truncated: false,
    });
    // Duplicate result names and the statement's own ORDER BY survive the byte guard's wrapping.
    const dup = await db.query(
      'WITH s AS (SELECT Singer_ID AS id FROM singer) SELECT a.id, b.id FROM s a JOIN s b ON a.id = b.id ORDER BY a.id DESC LIMIT 2',
    );
    expect(dup.columns).toEqual(['id', 'id']);
    expect(dup.rows).toEqual([
      [6, 6],
      [5, 5],
    ]);
  });

  it('refuses writes, ATTACH, PRAGMA writes, extensions and stacked statements; the file stays byte-identical', async () => {
    const before = sha256(path);
    const attempts: [string, string, RegExp][] = [
      ['DROP TABLE singer', 'rejected', /would modify the database/],
      ["UPDATE singer SET Name = 'x'", 'rejected', /would modify the database/],
      ["INSERT INTO singer (Name) VALUES ('x') RETURNING *", 'rejected', /would modify the database/],
      [`ATTACH '${join(tmp, 'x.db')}' AS x`, 'rejected', /returns no rows/],
      ['PRAGMA user_version = 7', 'rejected', /would modify the database/],
      ['PRAGMA query_only = 0', 'rejected', /returns no rows/],
      ["SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')", 'sql', /not authorized/],
      ['SELECT 1; DROP TABLE singer', 'rejected', /more than one statement/],
      [`VACUUM INTO '${join(tmp, 'copy.db')}'`, 'rejected', /would modify the database/],
      ['SELECT * FROM nowhere', 'sql', /no such table: nowhere/],
    ];
    for (const [sql, kind, message] of attempts) {
      const err = await failure(sql);
      expect(err.failure, sql).toBe(kind);
      expect(err.message, sql).toMatch(message);
    }
    expect((await db.query('SELECT count(*) FROM singer')).rows).toEqual([[6]]);
    expect(sha256(path)).toBe(before);
    expect(existsSync(join(tmp, 'x.db')) || existsSync(join(tmp, 'copy.db'))).toBe(false);
    // A reading PRAGMA (which the byte guard cannot wrap) still answers.
    const info = await db.query('PRAGMA table_info(concert)');
    expect(info.rows.map((r) => r[1])).toEqual(['concert_ID', 'concert_Name', 'Theme', 'Stadium_ID', 'Year']);
  });

  it('fails a huge value or result as "result too large" without materializing it', async () => {
    const huge = await failure('SELECT zeroblob(1e9)');
    expect([huge.failure, huge.message]).toEqual(['too_large', 'result too large (over 8388608 bytes)']);
    // Half a gigabyte passes SQLite's own length limit: the guard stops it before it is copied.
    const rss = process.memoryUsage().rss;
    const half = await failure('SELECT 1, zeroblob(5e8)', { maxBytes: 1000 });
    expect(half.message).toBe('result too large (over 1000 bytes)');
    expect(process.memoryUsage().rss - rss).toBeLessThan(100e6);
    // Many small rows add up: 1000 rows of 100 bytes pass a 100 kB cap, 1001 do not.
    const rows = (n: number) =>
      `WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ${n}) SELECT printf('%100d', i) FROM r`;
    expect((await db.query(rows(1000), { maxBytes: 100_000, maxRows: 5000 })).rowCount).toBe(1000);
    expect((await failure(rows(1001), { maxBytes: 100_000, maxRows: 5000 })).failure).toBe('too_large');
    // Rows past the row cap are counted, not kept, so they do not count against the bytes.
    const counted = await db.query(rows(5000), { maxBytes: 100_000, maxRows: 10 });
    expect([counted.rows.length, counted.rowCount, counted.truncated]).toEqual([10, 5000, true]);
  });

  it('stops a runaway query at the time limit and goes on', async () => {
    const t0 = Date.now();
    const err = await failure(
      'SELECT count(*) FROM singer a, singer b, singer c, singer d, singer e, singer f, singer g, singer h, singer i, singer j',
      {
        timeoutMs: 300,
      },
    );
    expect([err.failure, err.message]).toEqual(['timeout', 'timed out after 0.30 s']);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await db.query('SELECT count(*) FROM concert')).rows).toEqual([[6]]);
  });

  it('fails to open what is not a SQLite database, with one line naming the file', async () => {
    const junk = join(tmp, 'junk.sqlite');
    writeFileSync(junk, 'not a database at all, just text that is long enough to have a header page or not');
    await expect(openDatabase('junk', junk)).rejects.toThrow(
      `cannot open SQLite database ${junk}: file is not a database`,
    );
    await expect(openDatabase('missing', join(tmp, 'missing.sqlite'))).rejects.toThrow(
      `cannot open SQLite database ${join(tmp, 'missing.sqlite')}: no such file`,
    );
    await expect(openDatabase('dir', tmp)).rejects.toThrow(
      `cannot open SQLite database ${tmp}: a folder, not a SQLite file`,
    );
    expect(defaultDatabaseName('/x/y/concert_singer.sqlite')).toBe('concert_singer');
    expect(defaultDatabaseName('postgres://u@localhost:5432/spider?schema=a')).toBe('spider');
  });
});
