import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SpiderDatabases, readSpiderFolder } from '../src/data/spider.js';
import { findSplitShards, readSpiderParquet } from '../src/data/spiderParquet.js';
import { createTableSql, quoteIdent, readTables, sampleRowsSql } from '../src/data/sqliteSchema.js';
import { UserError } from '../src/util/errors.js';

const SPIDER = 'test/fixtures/spider';
const PARQUET = 'test/fixtures/parquet';
const raw = (file: string) =>
  JSON.parse(readFileSync(join(SPIDER, file), 'utf8')) as { db_id: string; question: string; query: string }[];
const fields = ({ db_id, question, query }: { db_id: string; question: string; query: string }) => ({
  db_id,
  question,
  query,
});

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-spider-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function spiderCopy(name: string): string {
  const dir = join(tmp, name);
  cpSync(SPIDER, dir, { recursive: true });
  return dir;
}

describe('Spider folder layout', () => {
  it('reads dev and train files in file order with stable ids', () => {
    const s = readSpiderFolder(SPIDER, 'spider');
    const dev = raw('dev.json');
    const train = raw('train_spider.json');
    expect(s.eval.map(fields)).toEqual(dev.map(fields));
    expect(s.train.map(fields)).toEqual(train.map(fields));
    expect(s.eval.map((e) => e.id)).toEqual(dev.map((_, i) => `dev-${i}`));
    expect(s.train[12].id).toBe('train-12');
  });

  it('--train-splits others / both', () => {
    const others = raw('train_others.json');
    expect(readSpiderFolder(SPIDER, 'others').train.map((e) => e.id)).toEqual(others.map((_, i) => `others-${i}`));
    const both = readSpiderFolder(SPIDER, 'both');
    expect(both.train.length).toBe(raw('train_spider.json').length + others.length);
    expect(both.train[both.train.length - 1]).toMatchObject({
      id: `others-${others.length - 1}`,
      ...fields(others[others.length - 1]),
    });
  });

  it('reports a missing folder, a missing file, malformed JSON and a bad example by file name', () => {
    expect(() => readSpiderFolder(join(tmp, 'nope'), 'spider')).toThrow(/Spider folder not found: .*nope/);
    const noDev = spiderCopy('no-dev');
    writeFileSync(join(noDev, 'dev.json'), '[{"db_id": "x",');
    expect(() => readSpiderFolder(noDev, 'spider')).toThrow(UserError);
    expect(() => readSpiderFolder(noDev, 'spider')).toThrow(/malformed JSON in .*no-dev\/dev\.json/);
    const noOthers = spiderCopy('no-others');
    writeFileSync(join(noOthers, 'train_others.json'), '[{"db_id": "farm", "question": "q"}]');
    expect(() => readSpiderFolder(noOthers, 'both')).toThrow(/train_others\.json: example 0 has no "query" string/);
  });

  it('finds databases and rejects unknown db_ids', () => {
    const dbs = SpiderDatabases.open(SPIDER);
    expect(dbs.sqlitePath('pets_1', 'example dev-0')).toBe(join(SPIDER, 'database', 'pets_1', 'pets_1.sqlite'));
    expect(() => dbs.sqlitePath('world_1', 'example dev-7')).toThrow(
      /example dev-7: unknown db_id "world_1" \(not in .*tables\.json\)/,
    );
    // The database/ folder alone (no tables.json): only the file is checked.
    const bare = SpiderDatabases.open(join(SPIDER, 'database'));
    expect(() => bare.sqlitePath('world_1', 'example dev-7')).toThrow(/no SQLite file for db_id "world_1"/);
    const listed = spiderCopy('listed-no-file');
    const tables = JSON.parse(readFileSync(join(listed, 'tables.json'), 'utf8')) as { db_id: string }[];
    writeFileSync(join(listed, 'tables.json'), JSON.stringify([...tables, { ...tables[0], db_id: 'ghost' }]));
    expect(() => SpiderDatabases.open(listed).sqlitePath('ghost', 'example train-3')).toThrow(
      /no SQLite file for db_id "ghost" \(expected .*ghost\.sqlite\)/,
    );
  });
});

describe('Hugging Face parquet layout (xlangai/spider)', () => {
  it('holds the same examples as the folder layout, shards concatenated in order', async () => {
    const p = await readSpiderParquet(PARQUET, 'spider');
    const f = readSpiderFolder(SPIDER, 'spider');
    expect(p.train).toEqual(f.train);
    expect(p.eval).toEqual(f.eval);
    expect(p.trainFiles.map((x) => x.split('/').pop())).toEqual([
      'train-00000-of-00002.parquet',
      'train-00001-of-00002.parquet',
    ]);
  });

  it('accepts the refs/convert/parquet layout (<split>/0000.parquet)', async () => {
    const dir = join(tmp, 'converted');
    mkdirSync(join(dir, 'spider', 'train'), { recursive: true });
    mkdirSync(join(dir, 'spider', 'validation'), { recursive: true });
    const src = join(PARQUET, 'spider');
    cpSync(join(src, 'train-00000-of-00002.parquet'), join(dir, 'spider', 'train', '0000.parquet'));
    cpSync(join(src, 'train-00001-of-00002.parquet'), join(dir, 'spider', 'train', '0001.parquet'));
    cpSync(join(src, 'validation-00000-of-00001.parquet'), join(dir, 'spider', 'validation', '0000.parquet'));
    expect(findSplitShards(dir, 'train').map((x) => x.split('/').slice(-2).join('/'))).toEqual([
      'train/0000.parquet',
      'train/0001.parquet',
    ]);
    const p = await readSpiderParquet(dir, 'spider');
    expect(p.train.length).toBe(raw('train_spider.json').length);
    expect(p.eval[5]).toEqual(readSpiderFolder(SPIDER, 'spider').eval[5]);
  });

  it('explains what is missing or unreadable', async () => {
    await expect(readSpiderParquet(PARQUET, 'both')).rejects.toThrow(
      /train_others\.json.*parquet layout does not have/,
    );
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    await expect(readSpiderParquet(empty, 'spider')).rejects.toThrow(/no train-\*\.parquet found in/);
    const broken = join(tmp, 'broken');
    mkdirSync(broken);
    writeFileSync(join(broken, 'train-00000-of-00001.parquet'), 'not parquet');
    await expect(readSpiderParquet(broken, 'spider')).rejects.toThrow(
      /cannot read parquet file .*train-00000-of-00001\.parquet/,
    );
  });
});

describe('schema as SQLite statements', () => {
  const dbIds = readdirSync(join(SPIDER, 'database'));
  const open = (id: string) => new Database(join(SPIDER, 'database', id, `${id}.sqlite`), { readonly: true });

  it('rebuilds every fixture database: statements run in SQLite and give the same tables back', () => {
    for (const id of dbIds) {
      const db = open(id);
      const tables = readTables(db);
      const copy = new Database(':memory:');
      copy.pragma('foreign_keys = OFF');
      for (const t of tables) copy.exec(createTableSql(t));
      expect(readTables(copy), id).toEqual(tables);
      // Same column names as `SELECT *` on the original, table by table.
      for (const t of tables) {
        const cols = (name: Database.Database) =>
          name
            .prepare(`SELECT * FROM ${quoteIdent(t.name)} LIMIT 0`)
            .columns()
            .map((c) => c.name);
        expect(cols(copy)).toEqual(cols(db));
      }
      db.close();
    }
  });

  it('writes keys as the original DDL declares them', () => {
    // concert_singer's stored DDL: PRIMARY KEY ("concert_ID","Singer_ID"), then two FOREIGN KEYs in this order.
    const db = open('concert_singer');
    const sic = readTables(db).find((t) => t.name === 'singer_in_concert');
    expect(createTableSql(sic!)).toBe(
      'CREATE TABLE singer_in_concert (\n  concert_ID INT,\n  Singer_ID TEXT,\n  PRIMARY KEY (concert_ID, Singer_ID),\n' +
        '  FOREIGN KEY (concert_ID) REFERENCES concert(concert_ID),\n  FOREIGN KEY (Singer_ID) REFERENCES singer(Singer_ID)\n);',
    );
    // car_1: `"Model" TEXT UNIQUE` is kept (car_names.Model references it).
    const models = readTables(open('car_1')).find((t) => t.name === 'model_list');
    expect(createTableSql(models!)).toContain('  Model TEXT UNIQUE,\n');
  });

  it('quotes identifiers only where SQLite needs it', () => {
    expect(quoteIdent('Singer_ID')).toBe('Singer_ID');
    expect(quoteIdent('order')).toBe('"order"');
    expect(quoteIdent('18_49_Rating_Share')).toBe('"18_49_Rating_Share"');
    expect(quoteIdent('eg Agree "x"')).toBe('"eg Agree ""x"""');
    const db = new Database(':memory:');
    db.exec(`CREATE TABLE ${quoteIdent('group')} (${quoteIdent('eg Agree "x"')} INT, ${quoteIdent('1st')} TEXT)`);
    expect(
      db
        .prepare('PRAGMA table_info("group")')
        .all()
        .map((c) => (c as { name: string }).name),
    ).toEqual(['eg Agree "x"', '1st']);
  });

  it('sample rows: the first K rows as one INSERT that SQLite reads back', () => {
    const db = open('concert_singer');
    const singer = readTables(db).find((t) => t.name === 'singer')!;
    const sql = sampleRowsSql(db, singer, 2);
    expect(sql).toBe(
      "INSERT INTO singer VALUES\n(1, 'Joe Sharp', 'Netherlands', 'You', '1992', 52, 'F'),\n(2, 'Timbaland', 'United States', 'Dangerous', '2008', 32, 'T');",
    );
    const copy = new Database(':memory:');
    copy.exec(createTableSql(singer));
    copy.exec(sql);
    expect(copy.prepare('SELECT * FROM singer').raw().all()).toEqual(
      db.prepare('SELECT * FROM singer LIMIT 2').raw().all(),
    );
    expect(sampleRowsSql(db, singer, 0)).toBe('');
  });

  it('sample rows: long text cut, quotes doubled, whitespace collapsed, big integers exact', () => {
    const db = new Database(':memory:');
    db.exec(
      "CREATE TABLE t (a TEXT, b INTEGER, c REAL, d BLOB); INSERT INTO t VALUES ('It''s ' || printf('%.50c', 'x') || char(10) || 'end', 9007199254740993, 0.1 + 0.2, x'00ff')",
    );
    const t = readTables(db)[0];
    expect(sampleRowsSql(db, t, 5)).toBe(
      `INSERT INTO t VALUES\n('It''s ${'x'.repeat(35)}...', 9007199254740993, 0.3, X'00FF');`,
    );
  });
});
