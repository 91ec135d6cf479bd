/**
 * BIRD's evidence at inference: the prompt ask and POST /v1/sql build for a question with its
 * evidence is the one prepare --bird wrote for it, byte for byte; without evidence it is the
 * prompt prepare --no-evidence wrote. The adapter's sqlora.json records which it was trained on.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '../src/data/chatTemplate.js';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { prepareDataset } from '../src/data/prepareDataset.js';
import { promptSettingsFromDataset, type PromptSettings } from '../src/data/promptSettings.js';
import type { PromptRecord } from '../src/data/records.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { askQuestion } from '../src/serve/ask.js';
import type { SqlDatabase } from '../src/serve/database.js';
import { openDatabase } from '../src/serve/databases.js';
import { QuestionPrompter } from '../src/serve/questionPrompts.js';
import { adapterPrompting } from '../src/serve/sqlPrompting.js';
import { readJsonl } from '../src/util/jsonl.js';
import { serveTinyModel } from './helpers/serve-fixture.js';

const BIRD = 'test/fixtures/bird';
const MODEL = defaultTokenizerDir();
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-evidence-'));
const dbs = new Map<string, SqlDatabase>();
let withEvidence: { records: PromptRecord[]; settings: PromptSettings };
let without: { records: PromptRecord[]; settings: PromptSettings };

async function prepared(name: string, evidence: boolean): Promise<typeof withEvidence> {
  const out = join(tmp, name);
  await prepareDataset({
    bird: BIRD,
    evidence,
    out,
    format: 'schema',
    modelDir: MODEL,
    trainLimit: 3500,
    evalLimit: 200,
    shuffle: false,
    seed: 42,
    trainSplits: 'spider',
    sampleRows: 2,
    maxPromptTokens: 448,
    quiet: true,
  });
  return {
    records: readJsonl<PromptRecord>(join(out, 'eval.jsonl')),
    settings: promptSettingsFromDataset(out, join(out, 'train.jsonl'))!,
  };
}

beforeAll(async () => {
  withEvidence = await prepared('evidence', true);
  without = await prepared('no-evidence', false);
  for (const r of withEvidence.records)
    if (!dbs.has(r.db_id))
      dbs.set(r.db_id, await openDatabase(r.db_id, join(BIRD, 'dev/dev_databases', r.db_id, `${r.db_id}.sqlite`)));
});
afterAll(async () => {
  for (const db of dbs.values()) await db.close();
  rmSync(tmp, { recursive: true, force: true });
});

const question = (m: ChatMessage[]): ChatMessage[] => m.filter((x) => x.role !== 'assistant');

describe('evidence at inference', () => {
  it("sqlora.json records whether the training prompts carried evidence (dataset.json's options.evidence)", () => {
    expect(withEvidence.settings.evidence).toBe(true);
    expect(without.settings.evidence).toBe(false);
  });

  it("ask: with the evidence, prepare --bird's prompt; without, prepare --no-evidence's", async () => {
    const prompter = (s: PromptSettings) =>
      new QuestionPrompter(ChatTemplate.fromModelDir(MODEL), Tokenizer.fromModelDir(MODEL), s);
    const ev = prompter(withEvidence.settings);
    const bare = prompter(without.settings);
    // The generator only captures the prompt askQuestion hands to the model.
    const seen: string[] = [];
    const generator = {
      generateSql: async (prompt: string) => {
        seen.push(prompt);
        return { sql: 'SELECT 1', raw: 'SELECT 1', promptTokens: 0, newTokens: 0 };
      },
    };
    const withHint = withEvidence.records.filter((r) => (r.evidence ?? '') !== '');
    expect(withHint.length).toBeGreaterThan(0);
    expect(withEvidence.records.length).toBeGreaterThan(withHint.length);
    for (const [i, r] of withEvidence.records.entries()) {
      const db = dbs.get(r.db_id)!;
      const a = await askQuestion(db, ev, generator, r.question, { sqlOnly: true, evidence: r.evidence });
      expect(a.question).toBe(r.question);
      expect(seen.at(-1)).toBe(r.prompt);
      await askQuestion(db, bare, generator, r.question, { sqlOnly: true });
      expect(seen.at(-1)).toBe(without.records[i].prompt);
    }
    expect(withHint[0].prompt).toContain(`\nEvidence: ${withHint[0].evidence!.trim()}\n`);
  });

  it('POST /v1/sql: an "evidence" field gives the prepared prompt; none, the prompt without it; a non-string, 400', async () => {
    const prompting = adapterPrompting(
      withEvidence.settings,
      ChatTemplate.fromModelDir(MODEL),
      Tokenizer.fromModelDir(MODEL),
    );
    const sent: ChatMessage[][] = [];
    const s = await serveTinyModel({
      contextTokens: 2048,
      databases: dbs,
      sql: {
        messages: async (db, q, evidence) => {
          const m = await prompting.messages(db, q, evidence);
          sent.push(m);
          return m;
        },
        extractSql: prompting.extractSql,
      },
      limits: { sqlMaxTokens: 4 },
    });
    const post = (body: unknown) =>
      fetch(`${s.url}/v1/sql`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    try {
      const r = withEvidence.records.find((x) => (x.evidence ?? '') !== '')!;
      const i = withEvidence.records.indexOf(r);
      expect((await post({ db: r.db_id, question: r.question, evidence: r.evidence })).status).toBe(200);
      expect(sent.at(-1)).toEqual(question(r.messages));
      expect((await post({ db: r.db_id, question: r.question })).status).toBe(200);
      expect(sent.at(-1)).toEqual(question(without.records[i].messages));
      const bad = await post({ db: r.db_id, question: r.question, evidence: 5 });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(await bad.json())).toContain('\\"evidence\\" must be a string');
    } finally {
      await s.server.shutdown();
    }
  });

  it('sqlora ask --evidence without a question argument: one clear line, before the model loads', () => {
    const r = spawnSync(
      process.execPath,
      ['bin/sqlora.js', 'ask', '--adapter', tmp, '--db', 'x.sqlite', '--evidence', 'a hint'],
      { encoding: 'utf8', input: '' },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim()).toBe(
      'error: sqlora ask: --evidence goes with one question given as the argument (not with questions from stdin)',
    );
  });
});
