/**
 * `prepare --pairs --db postgres://...` on a Spider database loaded into a throwaway PostgreSQL
 * cluster: prompts from the catalog naming PostgreSQL, gold SQL checked on the server, and
 * `evaluate` scoring execution accuracy there, with no password in any written file.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { promptSettingsFromDataset } from '../src/data/promptSettings.js';
import { schemaSystem } from '../src/data/prompts.js';
import type { DatasetCard, PromptRecord } from '../src/data/records.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { openDatabase } from '../src/serve/databases.js';
import { QuestionPrompter } from '../src/serve/questionPrompts.js';
import { readJsonl } from '../src/util/jsonl.js';
import { sqlora } from './helpers/cli.js';
import { loadSqliteDatabase, startPostgres, type PgCluster } from './helpers/postgres.js';
import { spiderDbFile } from './helpers/sql-database.js';

const PASSWORD = 'pw-s3cret-never-written';
let cluster: PgCluster | null = null;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-pgpairs-'));
  const started = await startPostgres();
  if ('skip' in started) return;
  cluster = started;
  await loadSqliteDatabase(cluster, 'pets_1', spiderDbFile('pets_1'));
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function need(ctx: TestContext): PgCluster {
  if (!cluster) ctx.skip();
  return cluster as PgCluster;
}

const jsonl = (name: string, rows: object[]) => {
  const p = join(tmp, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return p;
};

/** Every file under dir, recursively. */
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );

describe('prepare --pairs --db postgres://', () => {
  it('prepares from the catalog, keeps failing gold SQL out, and evaluate scores on PostgreSQL', async (ctx) => {
    const pg = need(ctx);
    // The cluster trusts loopback: the password is accepted and must never be written down.
    const url = pg.urlFor('pets_1').replace('postgres@', `postgres:${PASSWORD}@`);
    const pairs = jsonl('pairs.jsonl', [
      { question: 'How many students are there?', sql: 'SELECT count(*) FROM Student' },
      { question: 'Which pets are cats?', sql: "SELECT PetID FROM Pets WHERE kind = 'cat'" },
      { question: 'What is the oldest pet?', sql: 'SELECT max(pet_age) FROM Pets' },
    ]);
    const evalPairs = jsonl('eval.jsonl', [
      { question: 'How many pets are there?', sql: 'SELECT count(*) FROM Pets' },
      { question: 'List the student ids in order.', sql: 'SELECT StuID FROM Student ORDER BY StuID' },
      { question: 'What is the average age of students?', sql: 'SELECT avg(Age) FROM Student' },
    ]);
    const out = join(tmp, 'data');
    const prep = await sqlora('prepare', [
      '--pairs',
      pairs,
      '--eval-pairs',
      evalPairs,
      '--db',
      url,
      '--out',
      out,
      '--sample-rows',
      '1',
    ]);
    expect(prep.code, prep.stderr).toBe(0);
    // PostgreSQL's own error for the gold query that names a column the table lacks (pets_1 calls it pettype).
    expect(prep.stderr).toContain(`  gold SQL fails  ${pairs}:2  column "kind" does not exist\n`);
    const card = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')) as DatasetCard;
    expect(card.checks!.gold_failed).toEqual([
      { id: 'pair-1', where: `${pairs}:2`, reason: 'column "kind" does not exist' },
    ]);
    const target = pg.urlFor('pets_1');
    expect(card.source.databases).toBe(target);
    const train = readJsonl<PromptRecord>(join(out, 'train.jsonl'));
    const ev = readJsonl<PromptRecord>(join(out, 'eval.jsonl'));
    expect(train.map((r) => r.id)).toEqual(['pair-0', 'pair-2']);
    expect(ev.map((r) => r.id)).toEqual(['eval-0', 'eval-1', 'eval-2']);
    expect([...train, ...ev].every((r) => r.db_path === target && r.db_id === 'pets_1')).toBe(true);
    // The prompt names PostgreSQL and shows the catalog's schema (names folded to lower case) and a sample row.
    const [system, user] = ev[0].messages;
    expect(system.content).toBe(schemaSystem('postgresql'));
    expect(user.content).toMatch(
      /^Database: pets_1\n\nCREATE TABLE student \(\n {2}stuid integer PRIMARY KEY,\n {2}lname character varying\(12\),/,
    );
    expect(user.content).toContain("INSERT INTO student VALUES\n(1001, 'Smith', 'Linda', 18, 'F', 600, 1121, 'BAL');");
    expect(user.content).toMatch(
      /Question: How many pets are there\?\n\nAnswer with one PostgreSQL query and nothing else\.$/,
    );
    // ask builds the same prompt from the settings train records (sqlora.json) for this database.
    expect(card.options.dialect).toBe('postgresql');
    const settings = promptSettingsFromDataset(out, join(out, 'train.jsonl'))!;
    const dir = defaultTokenizerDir();
    const prompter = new QuestionPrompter(ChatTemplate.fromModelDir(dir), Tokenizer.fromModelDir(dir), settings);
    const db = await openDatabase('pets_1', target);
    try {
      expect((await prompter.prompt(db, ev[0].question)).prompt).toBe(ev[0].prompt);
    } finally {
      await db.close();
    }

    // Right (another query with the same result), wrong, failing.
    const pred = jsonl('pred.jsonl', [
      { id: 'eval-0', sql: 'SELECT count(PetID) FROM Pets' },
      { id: 'eval-1', sql: 'SELECT StuID FROM Student ORDER BY StuID DESC' },
      { id: 'eval-2', sql: 'SELECT avg(nope) FROM Student' },
    ]);
    const results = join(tmp, 'results.json');
    const scored = await sqlora(
      'evaluate',
      ['--pred', pred, '--gold', join(out, 'eval.jsonl'), '--out', results, '--json'],
      // The records' URL has no password: it would come from PGPASSWORD (the cluster trusts loopback).
      { env: { PGPASSWORD: PASSWORD } },
    );
    expect(scored.code, scored.stderr).toBe(0);
    const report = JSON.parse(readFileSync(results, 'utf8')) as {
      examples: { execution: boolean | null; error?: string }[];
      summary: { overall: { count: number; execution: { total: number; pct: number } } };
    };
    expect(report.examples.map((e) => e.execution)).toEqual([true, false, false]);
    expect(report.examples[2].error).toBe('execution: column "nope" does not exist');
    expect(report.summary.overall.count).toBe(3);
    expect(report.summary.overall.execution).toEqual({ total: 1, pct: 100 / 3 });
    for (const f of [...filesUnder(out), results]) expect(readFileSync(f, 'utf8'), f).not.toContain(PASSWORD);
  }, 60_000);

  it('a server that cannot be reached: one line naming it, never the password', async () => {
    const pairs = jsonl('one.jsonl', [{ question: 'How many?', sql: 'SELECT 1' }]);
    const r = await sqlora('prepare', [
      '--pairs',
      pairs,
      '--db',
      `postgres://u:${PASSWORD}@127.0.0.1:1/nowhere`,
      '--out',
      join(tmp, 'unreachable'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot open PostgreSQL database 127\.0\.0\.1:1\/nowhere: .*\n$/);
    expect(r.stderr).not.toContain(PASSWORD);
  });
});
