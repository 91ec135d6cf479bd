import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mdText } from '../src/report/markdown.js';
import { sqlora, type CliRun } from './helpers/cli.js';

const REAL_MODEL = 'Qwen/Qwen1.5-1.8B-Chat';
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const readLines = (path: string) =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

// The whole pipeline with reduced settings: 8 training questions in batches of 4 for one epoch
// (2 steps, eval loss after each), 4 dev questions, 8 new tokens each.
let out: string;
let run: CliRun;

beforeAll(async () => {
  out = join(mkdtempSync(join(tmpdir(), 'sqlora-demo-')), 'demo');
  run = await sqlora('demo', [
    '--out',
    out,
    '--train-limit',
    '8',
    '--eval-limit',
    '4',
    '--epochs',
    '1',
    '--batch-size',
    '4',
    '--max-new-tokens',
    '8',
    '--eval-steps',
    '1',
    '--mmlu-limit',
    '2',
  ]);
}, 120_000);

describe('sqlora demo', () => {
  it('runs every stage and says which model it used and what a real run is', () => {
    expect(run.stderr).not.toContain('internal error');
    expect(run.code).toBe(0);
    for (const [i, stage] of ['model', 'prepare', 'baseline', 'train', 'eval', 'mmlu', 'report'].entries())
      expect(run.stdout).toContain(`[${i + 1}/7] ${stage}:`);
    expect(run.stdout).toMatch(
      /model: a randomly initialized toy Qwen2 model \(2 layers, hidden size 128, [\d,]+ parameters, 3,259-token vocabulary/,
    );
    expect(run.stdout).toContain(`NOT ${REAL_MODEL}`);
    expect(run.stdout).toContain(`sqlora train --model ${REAL_MODEL} --data data --out runs/train`);
    expect(run.stdout).toContain(
      `sqlora report --run runs/train --baseline runs/baseline/results.json --finetuned runs/eval/results.json --mmlu runs/mmlu/results.json --out runs/report`,
    );
  });

  it('prepares the requested questions in the seed prompt format', () => {
    const train = readLines(join(out, 'prepare', 'train.jsonl'));
    const dev = readLines(join(out, 'prepare', 'eval.jsonl'));
    expect(train).toHaveLength(8);
    expect(dev.map((r) => r.id)).toEqual(['dev-0', 'dev-1', 'dev-2', 'dev-3']);
    expect(dev[0].prompt).toContain('Database: concert_singer\nQuestion: How many singers do we have?');
  });

  it('trains the expected number of steps and writes the adapter', () => {
    const log = readLines(join(out, 'train', 'metrics.jsonl'));
    expect(log.filter((r) => r.type === 'train').map((r) => r.step)).toEqual([1, 2]);
    expect(log.filter((r) => r.type === 'eval').map((r) => r.step)).toEqual([1, 2]);
    const summary = readJson(join(out, 'train', 'training_summary.json'));
    expect(summary.steps.total).toBe(2);
    expect(summary.model).toBe(join(out, 'model'));
    const adapter = readJson(join(out, 'train', 'adapter', 'adapter_config.json'));
    expect([...adapter.target_modules].sort()).toEqual([
      'down_proj',
      'gate_proj',
      'k_proj',
      'o_proj',
      'q_proj',
      'up_proj',
      'v_proj',
    ]);
  });

  it('measures the same questions before and after, and the report and summary agree with the results', () => {
    const before = readJson(join(out, 'baseline', 'results.json'));
    const after = readJson(join(out, 'eval', 'results.json'));
    expect(before.examples.map((e: { id: string }) => e.id)).toEqual(['dev-0', 'dev-1', 'dev-2', 'dev-3']);
    expect(after.examples.map((e: { id: string }) => e.id)).toEqual(before.examples.map((e: { id: string }) => e.id));
    expect(after.meta.adapter).toBe(join(out, 'train', 'adapter'));
    // Execution needs the bundled databases: it is computed, not left out.
    expect(after.summary.overall.execution).not.toBeNull();

    const token = [before, after].map((r) => r.summary.overall.seed_token.pct.toFixed(2));
    const md = readFileSync(join(out, 'report', 'report.md'), 'utf8');
    expect(md).toContain('| overall | 4 | Execution accuracy |');
    expect(md).toContain(`|  |  | Token match (seed) | ${token[0]} | ${token[1]} |`);
    expect(run.stdout).toMatch(new RegExp(`seed token %\\s+${token[0]}\\s+${token[1]}`));
    const html = readFileSync(join(out, 'report', 'report.html'), 'utf8');
    expect(html).toContain('a randomly initialized toy Qwen2 model');
    expect(html).toContain(REAL_MODEL);
    expect(html.match(/<svg /g)).toHaveLength(3);
  });

  it('scores MMLU before and after training on the embedded selection and reports it', () => {
    const mmlu = readJson(join(out, 'mmlu', 'results.json'));
    expect(mmlu.meta.data).toContain('the embedded selection');
    expect(mmlu.questions.map((q: { subject: string }) => q.subject)).toEqual(
      ['abstract_algebra', 'high_school_geography', 'marketing', 'world_religions'].flatMap((s) => [s, s]),
    );
    expect(mmlu.questions.every((q: { adapter?: unknown }) => q.adapter !== undefined)).toBe(true);
    expect(run.stdout).toContain(`MMLU, 8 questions: ${mmlu.summary.verdict.line}`);
    const md = readFileSync(join(out, 'report', 'report.md'), 'utf8');
    expect(md).toContain('## General knowledge (MMLU)');
    expect(md).toContain(mdText(`Verdict: ${mmlu.summary.verdict.line}.`));
  });

  it('refuses an output folder holding files it did not write', async () => {
    const other = mkdtempSync(join(tmpdir(), 'sqlora-demo-'));
    mkdirSync(join(other, 'train'));
    writeFileSync(join(other, 'notes.txt'), 'mine');
    const r = await sqlora('demo', ['--out', other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('holds files the demo did not write (notes.txt)');
  });
});
