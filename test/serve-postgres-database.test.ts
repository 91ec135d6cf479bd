import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { QueryError, SqlDatabase } from '../src/serve/database.js';
import { openDatabase } from '../src/serve/databases.js';
import { parsePostgresUrl } from '../src/serve/postgresDatabase.js';
import { QuestionPrompter } from '../src/serve/questionPrompts.js';
import { DEFAULT_PROMPT_SETTINGS } from '../src/data/promptSettings.js';
import { loadSqliteDatabase, startPostgres, type PgCluster } from './helpers/postgres.js';
import { queryFailure, spiderDbFile } from './helpers/sql-database.js';

let cluster: PgCluster | null = null;
let db: SqlDatabase;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-pg-test-'));
  const started = await startPostgres();
  if ('skip' in started) return;
  cluster = started;
  await loadSqliteDatabase(cluster, 'pets_1', spiderDbFile('pets_1'));
  await loadSqliteDatabase(cluster, 'spider', spiderDbFile('pets_1'), 'pets_1');
  await loadSqliteDatabase(cluster, 'spider', spiderDbFile('farm'), 'farm');
  db = await openDatabase('pets_1', cluster.urlFor('pets_1'));
}, 60_000);
afterAll(async () => {
  await db?.close();
  await cluster?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function need(ctx: TestContext): PgCluster {
  if (!cluster) ctx.skip();
  return cluster as PgCluster;
}

const failure = (sql: string, limits = {}): Promise<QueryError> => queryFailure(db, sql, limits);

/** Row counts of every table, straight from the SQLite original. */
function sqliteCounts(): Record<string, number> {
  const src = new Database(spiderDbFile('pets_1'), { readonly: true });
  const out: Record<string, number> = {};
  for (const t of ['Student', 'Has_Pet', 'Pets'])
    out[t.toLowerCase()] = src.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number;
  src.close();
  return out;
}

async function pgCounts(): Promise<Record<string, number>> {
  const r = await db.query(
    'SELECT (SELECT count(*) FROM student), (SELECT count(*) FROM has_pet), (SELECT count(*) FROM pets)',
  );
  const [student, has_pet, pets] = r.rows[0] as number[];
  return { student, has_pet, pets };
}

describe('PostgreSQL database', () => {
  it('reads the schema from the catalog: tables, columns, types, primary and foreign keys', async (ctx) => {
    need(ctx);
    expect(db.dialect).toBe('postgresql');
    const tables = await db.tables();
    expect(tables.map((t) => t.name)).toEqual(['student', 'has_pet', 'pets']);
    expect(tables[0].columns.slice(0, 3)).toEqual([
      { name: 'stuid', type: 'integer', pk: 1 },
      { name: 'lname', type: 'character varying(12)', pk: 0 },
      { name: 'fname', type: 'character varying(12)', pk: 0 },
    ]);
    expect(tables[2].columns.map((c) => c.type)).toEqual([
      'integer',
      'character varying(20)',
      'integer',
      'double precision',
    ]);
    expect(tables[1].foreignKeys).toEqual([
      { columns: ['petid'], table: 'pets', refColumns: ['petid'] },
      { columns: ['stuid'], table: 'student', refColumns: ['stuid'] },
    ]);
    expect(await db.sampleRows('pets', 2)).toEqual([
      [2001, 'cat', 3, 12],
      [2002, 'dog', 2, 13.4],
    ]);
  });

  it('names schemas from ?schema= (qualified) or the search_path in options (bare)', async (ctx) => {
    const c = need(ctx);
    const both = await openDatabase('spider', `${c.urlFor('spider')}?schema=farm,pets_1`);
    try {
      const tables = await both.tables();
      expect(tables.map((t) => `${t.schema}.${t.name}`)).toEqual([
        'farm.city',
        'farm.farm',
        'farm.farm_competition',
        'farm.competition_record',
        'pets_1.student',
        'pets_1.has_pet',
        'pets_1.pets',
      ]);
      expect(tables[2].foreignKeys).toEqual([
        { columns: ['host_city_id'], table: 'city', schema: 'farm', refColumns: ['city_id'] },
      ]);
      expect((await both.query('SELECT count(*) FROM pets_1.pets')).rows).toEqual([[3]]);
    } finally {
      await both.close();
    }
    const one = await openDatabase('spider', `${c.urlFor('spider')}?options=-c%20search_path%3Dpets_1`);
    try {
      expect((await one.tables()).map((t) => [t.schema, t.name])).toEqual([
        [undefined, 'student'],
        [undefined, 'has_pet'],
        [undefined, 'pets'],
      ]);
      expect((await one.query('SELECT count(*) AS n FROM has_pet')).rows).toEqual([[sqliteCounts().has_pet]]);
    } finally {
      await one.close();
    }
    expect(parsePostgresUrl('postgresql://u:secret@db.example:6543/x?schema=a,"B"&sslmode=require')).toEqual({
      connectionString: 'postgresql://u:secret@db.example:6543/x?sslmode=require',
      schemas: ['a', 'B'],
      where: 'db.example:6543/x',
    });
  });

  it('returns cells, fetches only up to the row cap and counts the rest on the server', async (ctx) => {
    need(ctx);
    const r = await db.query('SELECT StuID, LName, Age FROM Student ORDER BY StuID;', { maxRows: 2 });
    expect(r).toMatchObject({
      columns: ['stuid', 'lname', 'age'],
      rows: [
        [1001, 'Smith', 18],
        [1002, 'Kim', 19],
      ],
      rowCount: 34,
      truncated: true,
    });
    const cross = await db.query('SELECT a.stuid, b.stuid FROM student a, student b', { maxRows: 10 });
    expect([cross.columns, cross.rows.length, cross.rowCount]).toEqual([['stuid', 'stuid'], 10, 34 * 34]);
    const odd = await db.query(
      "SELECT 9007199254740993::int8 AS big, '\\x00ff'::bytea AS b, true AS t, 1.50::numeric AS n, NULL AS z, DATE '2020-01-02' AS d",
    );
    expect(odd.rows).toEqual([['9007199254740993', '00ff', 'true', '1.50', null, '2020-01-02']]);
  });

  it('refuses DROP, UPDATE, COPY ... TO PROGRAM and escapes from the wrapper; the data stays intact', async (ctx) => {
    need(ctx);
    const marker = join(tmp, 'pwned');
    const attempts: [string, string, RegExp][] = [
      ['DROP TABLE student', 'rejected', /only queries/],
      ["UPDATE student SET lname = 'x'", 'rejected', /only queries/],
      [`COPY (SELECT 1) TO PROGRAM 'touch ${marker}'`, 'rejected', /only queries/],
      ['SELECT 1; DROP TABLE student', 'sql', /syntax error|multiple commands/],
      ['SELECT 1) AS q; DROP TABLE student; --', 'sql', /syntax error|multiple commands/],
      ['WITH d AS (DELETE FROM student RETURNING *) SELECT * FROM d', 'sql', /data-modifying statement/],
      ["SELECT set_config('transaction_read_only', 'off', true)", 'sql', /read-write/],
      ['SELECT * FROM nowhere', 'sql', /relation "nowhere" does not exist/],
    ];
    for (const [sql, kind, message] of attempts) {
      const err = await failure(sql);
      expect([err.failure, err.message], sql).toEqual([kind, expect.stringMatching(message)]);
    }
    expect(existsSync(marker)).toBe(false);
    expect(await pgCounts()).toEqual(sqliteCounts());
  });

  it('stops pg_sleep(60) and a huge cross join at statement_timeout, caps bytes on the server', async (ctx) => {
    need(ctx);
    const t0 = Date.now();
    const sleep = await failure('SELECT pg_sleep(60)', { timeoutMs: 500 });
    expect([sleep.failure, sleep.message]).toEqual(['timeout', 'timed out after 0.50 s']);
    const huge = await failure('SELECT * FROM student a, student b, student c, student d, student e', {
      timeoutMs: 1000,
      maxRows: 10,
    });
    expect(huge.failure).toBe('timeout');
    expect(Date.now() - t0).toBeLessThan(6000);
    const rss = process.memoryUsage().rss;
    const big = await failure("SELECT repeat('x', 20000000)");
    expect([big.failure, big.message]).toEqual(['too_large', 'result too large (over 8388608 bytes)']);
    expect(process.memoryUsage().rss - rss).toBeLessThan(100e6);
    const wide = await failure('SELECT a.*, b.* FROM student a, student b', { maxBytes: 10_000, maxRows: 1000 });
    expect(wide.failure).toBe('too_large');
    // The connection is usable after every failure, and nothing changed.
    expect(await pgCounts()).toEqual(sqliteCounts());
  });

  it('builds the prompt from the catalog, naming PostgreSQL, with sample rows', async (ctx) => {
    need(ctx);
    const renderer = { render: (m: { role: string; content: string }[]) => m.map((x) => x.content).join('\n---\n') };
    const prompter = new QuestionPrompter(
      renderer,
      { encode: (t: string) => [...t].map((c) => c.charCodeAt(0)) },
      {
        ...DEFAULT_PROMPT_SETTINGS,
        sample_rows: 1,
        max_prompt_tokens: 5000,
      },
    );
    const built = await prompter.prompt(db, 'How many pets are older than 2?');
    expect(built.prompt).toBe(
      [
        'You are an expert SQL assistant. Given the schema of a PostgreSQL database and a question, you write the PostgreSQL query that answers the question.',
        '---',
        'Database: pets_1',
        '',
        'CREATE TABLE student (',
        '  stuid integer PRIMARY KEY,',
        '  lname character varying(12),',
        '  fname character varying(12),',
        '  age integer,',
        '  sex character varying(1),',
        '  major integer,',
        '  advisor integer,',
        '  city_code character varying(3)',
        ');',
        'INSERT INTO student VALUES',
        "(1001, 'Smith', 'Linda', 18, 'F', 600, 1121, 'BAL');",
        'CREATE TABLE has_pet (',
        '  stuid integer,',
        '  petid integer,',
        '  FOREIGN KEY (petid) REFERENCES pets(petid),',
        '  FOREIGN KEY (stuid) REFERENCES student(stuid)',
        ');',
        'INSERT INTO has_pet VALUES',
        '(1001, 2001);',
        'CREATE TABLE pets (',
        '  petid integer PRIMARY KEY,',
        '  pettype character varying(20),',
        '  pet_age integer,',
        '  weight double precision',
        ');',
        'INSERT INTO pets VALUES',
        "(2001, 'cat', 3, 12);",
        '',
        'Question: How many pets are older than 2?',
        '',
        'Answer with one PostgreSQL query and nothing else.',
      ].join('\n'),
    );
  });

  it('fails to open an unreachable server, a missing database or a bad URL with one line', async (ctx) => {
    const c = need(ctx);
    await expect(openDatabase('x', 'postgres://')).rejects.toThrow(
      'bad PostgreSQL URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=a,b]',
    );
    await expect(openDatabase('x', c.urlFor('nope'))).rejects.toThrow(
      `cannot open PostgreSQL database 127.0.0.1:${c.port}/nope: database "nope" does not exist`,
    );
    await expect(openDatabase('x', 'postgres://u:hunter2@127.0.0.1:1/x')).rejects.toThrow(
      /^cannot open PostgreSQL database 127\.0\.0\.1:1\/x: connect ECONNREFUSED 127\.0\.0\.1:1$/,
    );
  });
});
