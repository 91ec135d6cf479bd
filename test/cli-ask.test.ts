/**
 * `sqlora ask` end to end through the CLI, with a tiny model that answers every question with
 * `SELECT count(*) FROM pets` (test/helpers/answer-model.ts) on the real engine: the text table,
 * --json, --sql-only, interactive mode on stdin, a PostgreSQL database, and bad
 * input failing with one line before the model loads.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../src/cli/args.js';
import { command } from '../src/cli/commands/ask.js';
import { DEFAULT_PROMPT_SETTINGS, writePromptSettings } from '../src/data/promptSettings.js';
import { UserError } from '../src/util/errors.js';
import { writeAnswerAdapter, writeAnswerModel } from './helpers/answer-model.js';
import { sqlora } from './helpers/cli.js';
import { loadSqliteDatabase, startPostgres, type PgCluster } from './helpers/postgres.js';

const db = (name: string) => join('test/fixtures/spider/database', name, `${name}.sqlite`);
const PETS = db('pets_1');
const SQL = 'SELECT count(*) FROM pets';

let tmp: string;
let model: string;
let adapter: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-ask-'));
  model = join(tmp, 'model');
  adapter = join(tmp, 'adapter');
  writeAnswerModel(model, SQL);
  writeAnswerAdapter(adapter, model);
  // The schema of pets_1 in bytes-as-tokens needs a large budget: nothing is trimmed.
  writePromptSettings(adapter, { ...DEFAULT_PROMPT_SETTINGS, sample_rows: 1, max_prompt_tokens: 4000 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ask = (args: string[], input?: string) =>
  sqlora('ask', ['--adapter', adapter, '--quantize', 'none', '--device', 'cpu', ...args], { input });

describe('sqlora ask', () => {
  it('prints the SQL and the rows as a table; --max-rows shows the first N with the total', async () => {
    const r = await ask(['--db', PETS, 'How many pets are there?']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${SQL}\n\n count(*)\n----------\n        3\n\n(1 row)\n`);
    expect(r.stderr).not.toMatch(/warning/);
    const all = join(tmp, 'all-model');
    writeAnswerModel(all, 'SELECT * FROM pets');
    const allAdapter = join(tmp, 'all-adapter');
    writeAnswerAdapter(allAdapter, all);
    writePromptSettings(allAdapter, { ...DEFAULT_PROMPT_SETTINGS, max_prompt_tokens: 4000 });
    const some = await ask(['--db', PETS, '--adapter', allAdapter, '--max-rows', '2', 'Show the pets']);
    expect(some.code, some.stderr).toBe(0);
    expect(some.stdout).toBe(
      [
        'SELECT * FROM pets',
        '',
        ' PetID | PetType | pet_age | weight',
        '-------+---------+---------+--------',
        '  2001 | cat     |       3 |     12',
        '  2002 | dog     |       2 |   13.4',
        '',
        '(2 rows of 3; --max-rows shows more)',
        '',
      ].join('\n'),
    );
  });

  it('--json: the /v1/sql shape with the question', async () => {
    const r = await ask(['--db', PETS, '--json', 'How many pets are there?']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      question: 'How many pets are there?',
      sql: SQL,
      columns: ['count(*)'],
      rows: [[3]],
      row_count: 1,
      truncated: false,
      elapsed_ms: expect.any(Number),
    });
  });

  it('interactive: questions from stdin one a line, the model loaded once, until "quit"', async () => {
    const r = await ask(['--db', PETS, '--json'], 'How many pets?\n\n  And dogs?  \nquit\nnever asked\n');
    expect(r.code, r.stderr).toBe(0);
    const answers = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { question: string; rows: unknown });
    expect(answers.map((a) => [a.question, a.rows])).toEqual([
      ['How many pets?', [[3]]],
      ['And dogs?', [[3]]],
    ]);
    expect(r.stderr.match(/^model: .* loaded in/gm)).toHaveLength(1);
  });

  it('a failing query: one error line; a session goes on, a single question exits non-zero', async () => {
    const session = await ask(['--db', db('concert_singer')], 'one\ntwo\n');
    expect(session.code, session.stderr).toBe(0);
    expect(session.stdout).toBe(`${SQL}\n${SQL}\n`);
    expect(session.stderr.match(/^error: no such table: pets$/gm)).toHaveLength(2);
    const r = await ask(['--db', db('concert_singer'), '--json', 'How many pets?']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ question: 'How many pets?', sql: SQL, error: 'no such table: pets' });
    expect(r.stderr.trim().split('\n').pop()).toBe('error: no such table: pets');
  });

  it('bad input: one clear line and a non-zero exit before the model loads', async () => {
    const missing = join(tmp, 'missing.sqlite');
    const bare = join(tmp, 'bare-adapter');
    mkdirSync(bare);
    writeAnswerAdapter(bare, model, null);
    // Through the CLI: the exit code and the one line.
    const cli: [string[], string][] = [
      [['--db', missing, 'q'], `error: cannot open SQLite database ${missing}: no such file`],
      [
        ['--db', PETS, '--adapter', bare, 'q'],
        `error: --model is required: ${bare}/adapter_config.json names no base model`,
      ],
    ];
    for (const [args, line] of cli) {
      const r = await ask(args);
      expect([r.code, r.stdout, r.stderr], args.join(' ')).toEqual([1, '', line + '\n']);
    }
    // The same checks in process (no model is loaded: nothing would fail this fast otherwise).
    const inProcess: [string[], string][] = [
      [
        ['--db', 'postgres://', 'q'],
        'bad PostgreSQL URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=a,b]',
      ],
      [
        ['--db', 'postgres://u:pw@127.0.0.1:1/x', 'q'],
        'cannot open PostgreSQL database 127.0.0.1:1/x: connect ECONNREFUSED 127.0.0.1:1',
      ],
      [
        ['--db', PETS, '--adapter', join(tmp, 'nowhere'), 'q'],
        `no adapter_config.json in ${join(tmp, 'nowhere')}: not a PEFT adapter folder`,
      ],
      [
        ['--db', PETS, 'How', 'many'],
        'sqlora ask: unexpected argument "many": "question" is one argument, put it in quotes (see sqlora ask --help)',
      ],
      [['q'], 'sqlora ask: --db is required (see sqlora ask --help)'],
      [['--db', PETS, '--max-rows', '0', 'q'], 'sqlora ask: --max-rows must be a positive integer, got 0'],
    ];
    for (const [args, message] of inProcess) {
      const run = async () => command.run(parseCommandArgs(command, ['--adapter', adapter, ...args]));
      await expect(run(), args.join(' ')).rejects.toThrow(new UserError(message));
    }
  });

  it('an adapter without sqlora.json gets the default prompt and a warning', async () => {
    const old = join(tmp, 'old-adapter');
    writeAnswerAdapter(old, model);
    const r = await ask(['--db', PETS, '--adapter', old, '--sql-only', '--json', 'How many?']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^warning: ${old} has no sqlora.json .*using the default prompt`, 'm'));
    expect(JSON.parse(r.stdout)).toEqual({ question: 'How many?', sql: SQL });
  });

  describe('on PostgreSQL', () => {
    let cluster: PgCluster | null = null;
    beforeAll(async () => {
      const started = await startPostgres();
      if ('skip' in started) return;
      cluster = started;
      await loadSqliteDatabase(cluster, 'pets_1', PETS);
    }, 60_000);
    afterAll(() => cluster?.stop());

    it('reads the catalog, runs the SQL read-only and prints the rows', async (ctx) => {
      if (!cluster) return ctx.skip();
      const r = await ask(['--db', cluster.urlFor('pets_1'), 'How many pets are there?']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${SQL}\n\n count\n-------\n     3\n\n(1 row)\n`);
      const missing = command.run(
        parseCommandArgs(command, ['--adapter', adapter, '--db', cluster.urlFor('nope'), 'q']),
      );
      await expect(missing).rejects.toThrow(
        `cannot open PostgreSQL database 127.0.0.1:${cluster.port}/nope: database "nope" does not exist`,
      );
    });
  });
});
