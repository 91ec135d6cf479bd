import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { prepareDataset } from '../src/data/prepareDataset.js';
import type { PromptRecord } from '../src/data/records.js';
import { readJsonl } from '../src/util/jsonl.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-card-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('prepare writes a dataset card README.md', () => {
  it('source, counts by hardness, format with the first record, token percentiles, license', async () => {
    const out = join(tmp, 'schema');
    const card = await prepareDataset({
      spider: 'test/fixtures/spider',
      out,
      format: 'schema',
      modelDir: defaultTokenizerDir(),
      trainLimit: 12,
      evalLimit: 9,
      shuffle: false,
      seed: 42,
      trainSplits: 'spider',
      sampleRows: 2,
      maxPromptTokens: 448,
      quiet: true,
    });
    const readme = readFileSync(join(out, 'README.md'), 'utf8');
    const lines = readme.split('\n');
    expect(lines.slice(0, 2)).toEqual(['---', 'license: cc-by-sa-4.0']);
    expect(readme).toContain('# Spider Text-to-SQL prompts (schema format)');
    expect(readme).toContain(`- train: \`${join(process.cwd(), 'test/fixtures/spider/train_spider.json')}\``);
    // The counts table agrees with dataset.json, row for row.
    const row = (name: 'train' | 'eval') => {
      const s = card[name];
      const h = s.hardness!;
      return `| ${name} | ${s.count} | ${s.available} | ${h.easy} | ${h.medium} | ${h.hard} | ${h.extra} | ${h.unparsed} | ${s.trimmed.sample_rows + s.trimmed.tables} | ${s.over_budget} |`;
    };
    expect(lines).toContain(row('train'));
    expect(lines).toContain(row('eval'));
    expect(card.train).toMatchObject({ count: 12, available: 56 });
    expect(card.eval).toMatchObject({ count: 9, available: 179 });
    const t = card.eval.tokens.prompt;
    expect(lines).toContain(`| eval | prompt | ${t.p50} | ${t.p90} | ${t.p99} | ${t.max} |`);
    expect(readme).toContain('token budget\n448, 2 sample rows per table.');
    // The example is the first train record exactly as train.jsonl holds it.
    const json = readme.slice(readme.indexOf('```json\n') + 8, readme.indexOf('\n```\n'));
    expect(JSON.parse(json)).toEqual(readJsonl<PromptRecord>(join(out, 'train.jsonl'))[0]);
    expect(readme).toContain('[CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/)');
  });
});
