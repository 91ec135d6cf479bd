import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { PromptBuilder, dropOrder, wordStems, type ChatRenderer } from '../src/data/prompts.js';
import { createTableSql, readTables, sampleRowsSql } from '../src/data/sqliteSchema.js';
import { Tokenizer } from '../src/data/tokenizer.js';

const SPIDER = 'test/fixtures/spider';
const sqlite = (id: string) => join(SPIDER, 'database', id, `${id}.sqlite`);

let template: ChatRenderer;
let tokenizer: Tokenizer;
beforeAll(() => {
  template = ChatTemplate.fromModelDir(defaultTokenizerDir());
  tokenizer = Tokenizer.fromModelDir(defaultTokenizerDir());
});

describe('seed format', () => {
  // The reference workflow's published rows: `text` is its training string, byte for byte.
  const rows = readFileSync('test/fixtures/seed/validation_head.jsonl', 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { db_id: string; question: string; query: string; instruction: string; text: string });

  it('renders all 20 reference rows byte for byte', () => {
    const seed = new PromptBuilder(template, tokenizer, { format: 'seed', sampleRows: 0, maxPromptTokens: 1024 });
    expect(rows.length).toBe(20);
    for (const r of rows) {
      const b = seed.build(r, sqlite(r.db_id));
      expect(b.text).toBe(r.text);
      expect(b.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant']);
      expect(b.messages[1].content).toBe(r.instruction);
      expect(b.messages[2].content).toBe(r.query);
      // The prompt ends where the answer starts.
      expect(b.prompt + r.query + '<|im_end|>').toBe(r.text);
      expect(b.promptTokens).toBe(tokenizer.encode(b.prompt).length);
      expect(b.textTokens).toBe(tokenizer.encode(r.text).length);
    }
  });
});

describe('schema format', () => {
  const question = {
    db_id: 'car_1',
    question: 'How many car makers are there in each continent?',
    query: 'SELECT count(*) FROM car_makers',
  };
  const db = new Database(sqlite('car_1'), { readonly: true });
  const tables = readTables(db);
  const creates = tables.map(createTableSql);
  const inserts = tables.map((t) => sampleRowsSql(db, t, 3));
  const build = (sampleRows: number, maxPromptTokens: number) =>
    new PromptBuilder(template, tokenizer, { format: 'schema', sampleRows, maxPromptTokens }).build(
      question,
      sqlite('car_1'),
    );

  it('gives every table, the question and the instruction; text = prompt + answer', () => {
    const b = build(0, 1024);
    for (const c of creates) expect(b.prompt).toContain(c);
    expect(b.prompt).not.toContain('INSERT');
    expect(b.messages[1].content).toContain('Question: How many car makers are there in each continent?');
    expect(b.messages[1].content).toMatch(/one SQLite query/);
    expect(b.prompt.endsWith('<|im_end|>\n<|im_start|>assistant\n')).toBe(true);
    // Qwen's template output unchanged: the end-of-turn newline stays.
    expect(b.text).toBe(b.prompt + question.query + '<|im_end|>\n');
    expect(b).toMatchObject({ trimmedRows: false, trimmedTables: false, overBudget: false });
  });

  it('adds sample rows when asked and they fit', () => {
    const b = build(3, 4096);
    for (const s of inserts) expect(b.prompt).toContain(s);
    expect(b.promptTokens).toBe(tokenizer.encode(b.prompt).length);
  });

  it('drops sample rows first, then the tables least related to the question, never cutting a statement', () => {
    const full = build(3, 4096).promptTokens;
    const noRows = build(0, 4096).promptTokens;
    // Between the two sizes: some rows go, every table stays.
    const mid = build(3, Math.floor((full + noRows) / 2));
    expect(mid.trimmedRows).toBe(true);
    expect(mid.trimmedTables).toBe(false);
    expect(mid.promptTokens).toBeLessThanOrEqual(Math.floor((full + noRows) / 2));
    for (const c of creates) expect(mid.prompt).toContain(c);
    // Below the schema without rows: no rows at all, whole tables dropped, car_makers kept.
    const tight = build(3, noRows - 40);
    expect(tight.prompt).not.toContain('INSERT');
    expect(tight.trimmedTables).toBe(true);
    expect(tight.overBudget).toBe(false);
    expect(tight.promptTokens).toBeLessThanOrEqual(noRows - 40);
    expect(tight.prompt).toContain(creates[tables.findIndex((t) => t.name === 'car_makers')]);
    const kept = creates.filter((c) => tight.prompt.includes(c));
    expect(kept.length).toBeLessThan(creates.length);
    // What is left of the schema is exactly the kept statements, whole.
    const user = tight.messages[1].content;
    expect(user.slice(user.indexOf('\n\n') + 2, user.indexOf('\n\nQuestion:'))).toBe(kept.join('\n'));
  });

  it('names a database it cannot read', () => {
    const bad = join(mkdtempSync(join(tmpdir(), 'sqlora-prompts-')), 'bad.sqlite');
    writeFileSync(bad, 'not a database, just text long enough to look like a header '.repeat(10));
    const builder = new PromptBuilder(template, tokenizer, { format: 'schema', sampleRows: 0, maxPromptTokens: 1024 });
    expect(() => builder.build(question, bad)).toThrow(
      /cannot read the schema of .*bad\.sqlite: file is not a database/,
    );
  });

  it('keeps one table and reports over budget when even that does not fit', () => {
    const b = build(3, 20);
    expect(b.overBudget).toBe(true);
    expect(creates.filter((c) => b.prompt.includes(c))).toEqual([
      creates[tables.findIndex((t) => t.name === 'car_makers')],
    ]);
  });
});

describe('relevance', () => {
  it('splits identifiers and drops plural s', () => {
    expect(wordStems('CarMakers car_names Countries class')).toEqual([
      'car',
      'maker',
      'car',
      'name',
      'country',
      'class',
    ]);
  });

  it('gives up the tables the question does not mention first', () => {
    const db = new Database(sqlite('concert_singer'), { readonly: true });
    const tables = readTables(db);
    const order = dropOrder(tables, 'What are the names of the singers who performed in a concert in 2014?').map(
      (i) => tables[i].name,
    );
    // stadium is not mentioned; singer_in_concert links the two mentioned tables.
    expect(order[0]).toBe('stadium');
    expect(order.slice(1).sort()).toEqual(['concert', 'singer', 'singer_in_concert']);
  });
});
