/**
 * The adapter's recorded prompt (sqlora.json): defaults equal prepare's, reading and its errors,
 * the dialect-aware options, eval's rebuild of prompts prepared otherwise (checked against
 * prepare's own output), and prompts built from a SqlDatabase equal to prepare's byte for byte.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command as prepareCommand } from '../src/cli/commands/prepare.js';
import { evalPromptPlan, rebuildPrompts } from '../src/data/adapterPrompts.js';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { prepareDataset } from '../src/data/prepareDataset.js';
import { PromptBuilder, SCHEMA_SYSTEM, SEED_SYSTEM, schemaSystem } from '../src/data/prompts.js';
import {
  DEFAULT_PROMPT_SETTINGS,
  promptOptions,
  promptSettingsFromDataset,
  readPromptSettings,
  writePromptSettings,
  type PromptSettings,
} from '../src/data/promptSettings.js';
import type { PromptRecord } from '../src/data/records.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { openDatabase } from '../src/serve/databases.js';
import { QuestionPrompter } from '../src/serve/questionPrompts.js';
import { readJsonl } from '../src/util/jsonl.js';

const SPIDER = 'test/fixtures/spider';
const MODEL = defaultTokenizerDir();
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-prompt-settings-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const prepared = async (name: string, format: 'seed' | 'schema', sampleRows: number) => {
  const out = join(tmp, name);
  await prepareDataset({
    spider: SPIDER,
    out,
    format,
    modelDir: MODEL,
    trainLimit: 2,
    evalLimit: 6,
    shuffle: false,
    seed: 42,
    trainSplits: 'spider',
    sampleRows,
    maxPromptTokens: 700,
    quiet: true,
  });
  return { dir: out, eval: readJsonl<PromptRecord>(join(out, 'eval.jsonl')) };
};

describe('prompt settings (sqlora.json)', () => {
  it("defaults to prepare's defaults", () => {
    const flag = (n: string) => prepareCommand.flags.find((f) => f.name === n)?.default;
    expect(DEFAULT_PROMPT_SETTINGS).toEqual({
      format: flag('format'),
      sample_rows: flag('sample-rows'),
      max_prompt_tokens: flag('max-prompt-tokens'),
      system_prompt: SCHEMA_SYSTEM,
      dialect: 'sqlite',
    });
  });

  it('reads what was written; an adapter without one gets the default and a warning; bad fields are named', () => {
    const dir = join(tmp, 'adapter');
    mkdirSync(dir);
    const old = readPromptSettings(dir);
    expect(old.settings).toEqual(DEFAULT_PROMPT_SETTINGS);
    expect(old.warning).toMatch(new RegExp(`^${dir} has no sqlora.json .*using the default prompt`));
    const s: PromptSettings = { ...DEFAULT_PROMPT_SETTINGS, sample_rows: 3, max_prompt_tokens: 512 };
    writePromptSettings(dir, s);
    expect(readPromptSettings(dir)).toEqual({ settings: s, warning: null });
    const file = join(dir, 'sqlora.json');
    writeFileSync(file, JSON.stringify({ sqlora: 'sqlora-prompt/1', prompt: { ...s, format: 'fancy' } }));
    expect(() => readPromptSettings(dir)).toThrow(`${file}: "prompt.format" must be seed or schema, got "fancy"`);
    writeFileSync(file, JSON.stringify({ sqlora: 'sqlora-prompt/1', prompt: { ...s, sample_rows: -1 } }));
    expect(() => readPromptSettings(dir)).toThrow(`${file}: "prompt.sample_rows" must be a whole number >= 0, got -1`);
    writeFileSync(file, JSON.stringify({ sqlora: 'other/2', prompt: s }));
    expect(() => readPromptSettings(dir)).toThrow(`${file}: "sqlora" must be "sqlora-prompt/1", got "other/2"`);
    writeFileSync(file, '{');
    expect(() => readPromptSettings(dir)).toThrow(/^malformed JSON in .*sqlora\.json/);
  });

  it("names the database's dialect in the format's own system prompt, keeps a custom one", () => {
    expect(promptOptions(DEFAULT_PROMPT_SETTINGS, 'postgresql')).toEqual({
      format: 'schema',
      sampleRows: 0,
      maxPromptTokens: 448,
      system:
        'You are an expert SQL assistant. Given the schema of a PostgreSQL database and a question, you write the PostgreSQL query that answers the question.',
    });
    expect(promptOptions(DEFAULT_PROMPT_SETTINGS, 'sqlite').system).toBe(SCHEMA_SYSTEM);
    const custom = { ...DEFAULT_PROMPT_SETTINGS, system_prompt: 'Write SQL.' };
    expect(promptOptions(custom, 'postgresql').system).toBe('Write SQL.');
    const seed = { ...DEFAULT_PROMPT_SETTINGS, format: 'seed' as const, sample_rows: 2, system_prompt: SEED_SYSTEM };
    expect(promptOptions(seed, 'postgresql')).toMatchObject({ sampleRows: 0, system: SEED_SYSTEM });
    expect(schemaSystem('sqlite')).toBe(SCHEMA_SYSTEM);
  });

  it('eval rebuilds prompts prepared otherwise exactly as prepare builds them for the adapter', async () => {
    const schema = await prepared('schema', 'schema', 2);
    const seed = await prepared('seed', 'seed', 0);
    const trained = promptSettingsFromDataset(schema.dir, join(schema.dir, 'train.jsonl'))!;
    expect(trained).toEqual({
      format: 'schema',
      sample_rows: 2,
      max_prompt_tokens: 700,
      system_prompt: SCHEMA_SYSTEM,
      dialect: 'sqlite',
    });
    const adapter = join(tmp, 'schema-adapter');
    mkdirSync(adapter);
    writePromptSettings(adapter, trained);
    expect(evalPromptPlan(adapter, trained)).toEqual({ rebuild: null, note: null });
    const plan = evalPromptPlan(adapter, promptSettingsFromDataset(seed.dir, join(seed.dir, 'train.jsonl')));
    expect(plan.rebuild).toEqual(trained);
    expect(plan.note).toMatch(/prepared with other prompt settings .* rebuilding its prompts/);
    expect(rebuildPrompts(seed.eval, plan.rebuild!, MODEL, SPIDER)).toEqual(schema.eval.map((r) => r.prompt));
    expect(() => rebuildPrompts(seed.eval, trained, MODEL, undefined)).toThrow(
      /needs the databases: pass --spider DIR/,
    );
    const bare = join(tmp, 'bare-adapter');
    mkdirSync(bare);
    expect(evalPromptPlan(bare, trained)).toEqual({
      rebuild: null,
      note: `${bare} records no prompt (sqlora.json): using the eval records' prompts as prepared`,
    });
  });

  it("builds the prompt for a question on a SqlDatabase byte for byte as prepare's", async () => {
    const schema = await prepared('schema-rows', 'schema', 3);
    const settings = promptSettingsFromDataset(schema.dir, join(schema.dir, 'train.jsonl'))!;
    const prompter = new QuestionPrompter(ChatTemplate.fromModelDir(MODEL), Tokenizer.fromModelDir(MODEL), settings);
    const dbs = new Map<string, Awaited<ReturnType<typeof openDatabase>>>();
    try {
      for (const r of schema.eval) {
        if (!dbs.has(r.db_id))
          dbs.set(r.db_id, await openDatabase(r.db_id, join(SPIDER, 'database', r.db_id, `${r.db_id}.sqlite`)));
        expect((await prompter.prompt(dbs.get(r.db_id)!, r.question)).prompt).toBe(r.prompt);
      }
    } finally {
      for (const db of dbs.values()) await db.close();
    }
    // The builder's own path on a SQLite file agrees too.
    const builder = new PromptBuilder(ChatTemplate.fromModelDir(MODEL), Tokenizer.fromModelDir(MODEL), {
      format: 'schema',
      sampleRows: 3,
      maxPromptTokens: 700,
    });
    const r = schema.eval[0];
    expect(builder.build(r, join(SPIDER, 'database', r.db_id, `${r.db_id}.sqlite`)).prompt).toBe(r.prompt);
  });
});
