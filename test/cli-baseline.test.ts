/**
 * `sqlora baseline` and `sqlora eval` on a tiny chat model and real Spider questions: the
 * reference workflow's SQL post-processing, predictions appended as they come and resumed,
 * the evaluator's metrics in results.json, and the comparison with a baseline.
 */
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../src/cli/args.js';
import { command as baseline } from '../src/cli/commands/baseline.js';
import type { Prediction } from '../src/cli/commands/predict.js';
import { extractSql } from '../src/eval/extractSql.js';
import { initLora } from '../src/lora/lora.js';
import { writePeftAdapter } from '../src/lora/peft.js';
import { loadModelConfig } from '../src/model/config.js';
import { f32Tensor } from '../src/tensor/tensor.js';
import { sqlora } from './helpers/cli.js';
import { rng } from './helpers/random-qwen2.js';
import {
  writeRecords,
  writeTinyChatModel,
  type SpiderQuestion,
  type TinyChatModel,
} from './helpers/tiny-chat-model.js';

describe("extractSql (the reference workflow's post-processing)", () => {
  it('cuts at <|im_end|>, at the first blank line and after the first ";"', () => {
    expect(extractSql('SELECT count(*) FROM singer<|im_end|>\nmore')).toBe('SELECT count(*) FROM singer');
    expect(extractSql('SELECT a FROM t; SELECT b FROM u;')).toBe('SELECT a FROM t;');
    expect(extractSql('To count the singers, use:\n\n```sql\nSELECT count(*) FROM singer;\n```')).toBe(
      'To count the singers, use:',
    );
    expect(extractSql('SELECT name\nFROM singer\n\nExplanation: ...')).toBe('SELECT name FROM singer');
  });

  it('drops non-ASCII characters and collapses whitespace', () => {
    expect(extractSql('SELECT  name ,\tage\nFROM singer WHERE name = "Jöhn" ；')).toBe(
      'SELECT name , age FROM singer WHERE name = "Jhn"',
    );
    expect(extractSql('\n\nSELECT 1')).toBe('SELECT 1');
    expect(extractSql('<|endoftext|>')).toBe('');
  });
});

let tmp: string;
let tiny: TinyChatModel;
let data: string;
const dev = JSON.parse(readFileSync('test/fixtures/spider/dev.json', 'utf8')) as SpiderQuestion[];
const COUNT = 5;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-cli-baseline-'));
  tiny = writeTinyChatModel(join(tmp, 'model'));
  data = join(tmp, 'data');
  mkdirSync(data);
  writeRecords(join(data, 'eval.jsonl'), tiny.dir, 'dev', dev.slice(0, COUNT));
});

const readPredictions = (out: string): Prediction[] =>
  readFileSync(join(out, 'predictions.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Prediction);

describe('sqlora baseline / eval', () => {
  it('bad scoring flags: one clear line and a non-zero exit', async () => {
    const r = await sqlora('baseline', [
      '--model',
      tiny.dir,
      '--data',
      data,
      '--out',
      join(tmp, 'bad'),
      '--quantize',
      'none',
      '--timeout',
      '-1',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: sqlora baseline: --timeout must be from 0.01 to 86400 seconds (1 day), got -1\n');
  });

  it('baseline: predictions appended as they come (an interrupted file is resumed), metrics in results.json', async () => {
    const out = join(tmp, 'baseline');
    mkdirSync(out);
    // A previous run predicted dev-0 (correctly) and was cut off while writing the next line.
    writeFileSync(
      join(out, 'predictions.jsonl'),
      JSON.stringify({ id: 'dev-0', sql: dev[0].query, raw: dev[0].query }) + '\n',
    );
    appendFileSync(join(out, 'predictions.jsonl'), '{"id": "dev-1", "sq');
    const r = await sqlora('baseline', [
      '--model',
      tiny.dir,
      '--data',
      data,
      '--out',
      out,
      '--quantize',
      'none',
      '--spider',
      'test/fixtures/spider',
      '--max-new-tokens',
      '16',
      '--workers',
      '1',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const preds = readPredictions(out);
    expect(preds.map((p) => p.id).sort()).toEqual(
      dev
        .slice(0, COUNT)
        .map((_, i) => `dev-${i}`)
        .sort(),
    );
    expect(preds[0]).toEqual({ id: 'dev-0', sql: dev[0].query, raw: dev[0].query });
    for (const p of preds.slice(1)) expect(p.sql).toBe(extractSql(p.raw));

    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results.meta).toMatchObject({ mode: 'baseline', count: COUNT, generated: COUNT - 1, max_new_tokens: 16 });
    expect(results.examples.map((e: { id: string }) => e.id)).toEqual(dev.slice(0, COUNT).map((_, i) => `dev-${i}`));
    expect(results.examples[0]).toMatchObject({ seed_exact: true, exact_set_match: true, execution: true });
    expect(results.summary.overall.count).toBe(COUNT);
    expect(results.summary.overall.execution.total).toBeGreaterThanOrEqual(1);
    expect(r.stdout).toMatch(/execution %/);

    // Another setup must not append to these predictions.
    await expect(
      baseline.run(
        parseCommandArgs(baseline, [
          '--model',
          tiny.dir,
          '--data',
          data,
          '--out',
          out,
          '--quantize',
          'none',
          '--max-new-tokens',
          '32',
        ]),
      ),
    ).rejects.toThrow(/holds predictions made with other settings \(max_new_tokens differ/);

    // A smaller --limit on a copy of the finished run scores the first records from the file, generating nothing.
    const limited = join(tmp, 'baseline-limited');
    cpSync(out, limited, { recursive: true });
    const l = await sqlora('baseline', [
      '--model',
      tiny.dir,
      '--data',
      data,
      '--out',
      limited,
      '--quantize',
      'none',
      '--spider',
      'test/fixtures/spider',
      '--max-new-tokens',
      '16',
      '--workers',
      '1',
      '--limit',
      '2',
    ]);
    expect(l.code, l.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(limited, 'results.json'), 'utf8')).meta).toMatchObject({
      count: 2,
      generated: 0,
    });
    expect(readPredictions(limited).length).toBe(COUNT);
  });

  it("eval: base + adapter, compared with the baseline's results", async () => {
    const cfg = loadModelConfig(tiny.dir);
    const host = initLora(
      cfg,
      { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false },
      3,
    );
    const rand = rng(5);
    for (const [name, t] of Object.entries(host.tensors)) {
      if (name.includes('lora_B'))
        host.tensors[name] = f32Tensor(
          t.shape,
          Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => rand() - 0.5),
        );
    }
    const adapterDir = join(tmp, 'adapter');
    writePeftAdapter(adapterDir, host, { baseModelNameOrPath: tiny.dir });
    const out = join(tmp, 'eval');
    const r = await sqlora('eval', [
      '--adapter',
      adapterDir,
      '--data',
      data,
      '--out',
      out,
      '--quantize',
      'none',
      '--spider',
      'test/fixtures/spider',
      '--max-new-tokens',
      '16',
      '--workers',
      '1',
      '--compare',
      join(tmp, 'baseline', 'results.json'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results.meta).toMatchObject({ mode: 'eval', adapter: adapterDir, model: null, generated: COUNT });
    // An adapter without sqlora.json is scored on the records' own prompts.
    expect(results.meta.prompts).toBe('records');
    expect(r.stderr).toContain(
      `note: ${adapterDir} records no prompt (sqlora.json): using the eval records' prompts as prepared`,
    );
    expect(results.comparison.seed_exact.baseline).toBe(20); // 1 of 5: the prefilled dev-0
    expect(results.comparison.seed_exact.change).toBeCloseTo(results.comparison.seed_exact.eval - 20, 10);
    expect(r.stdout).toMatch(
      /compared with .*results\.json \(overall\):\n\s+baseline\s+eval\s+change\nseed exact %\s+20\.00/,
    );
    // The adapter changes what the model writes.
    const base = new Map(readPredictions(join(tmp, 'baseline')).map((p) => [p.id, p.raw]));
    expect(readPredictions(out).some((p) => p.id !== 'dev-0' && p.raw !== base.get(p.id))).toBe(true);
  });

  it('eval --compare warns when the baseline ran on another prompt format, eval set or count', async () => {
    // The baseline's data folder now says schema format; this eval runs seed-format prompts of 3 of its 5 questions.
    writeFileSync(
      join(data, 'dataset.json'),
      JSON.stringify({ format: 'schema', source: { layout: 'spider-folder', path: 'spider' } }),
    );
    const seedData = join(tmp, 'data-seed');
    mkdirSync(seedData);
    writeRecords(join(seedData, 'eval.jsonl'), tiny.dir, 'dev', dev.slice(0, 3));
    writeFileSync(
      join(seedData, 'dataset.json'),
      JSON.stringify({ format: 'seed', source: { layout: 'spider-folder', path: 'spider' } }),
    );
    const baselineResults = join(tmp, 'baseline', 'results.json');
    const r = await sqlora('eval', [
      '--adapter',
      join(tmp, 'adapter'),
      '--data',
      seedData,
      '--out',
      join(tmp, 'eval-seed'),
      '--quantize',
      'none',
      '--max-new-tokens',
      '4',
      '--compare',
      baselineResults,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('warning:'))).toEqual([
      `warning: ${baselineResults} was not run like this eval: prompt format: schema in the baseline, seed here`,
      `warning: ${baselineResults} was not run like this eval: count: ${COUNT} questions in the baseline, 3 here (3 in common)`,
    ]);
    expect(r.stdout).toContain(
      `(unlike runs: prompt format: schema in the baseline, seed here; count: ${COUNT} questions in the baseline, 3 here (3 in common))`,
    );
    const results = JSON.parse(readFileSync(join(tmp, 'eval-seed', 'results.json'), 'utf8'));
    expect(results.meta.dataset.format).toBe('seed');
  });
});
