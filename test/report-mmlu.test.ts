import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summarize, type MmluResults, type QuestionResult } from '../src/eval/mmluSummary.js';
import { mmluSection } from '../src/report/mmluSection.js';
import { sqlora } from './helpers/cli.js';

/** 40 anatomy (stem) questions: base right on 20, adapter on 10 of those; 20 marketing (other): both right on 5. */
function results(): MmluResults {
  const qs: QuestionResult[] = [];
  const score = (right: boolean, answer: number): { loglik: number[]; pred: number } => {
    const pred = right ? answer : (answer + 1) % 4;
    return { loglik: [0, 1, 2, 3].map((k) => (k === pred ? -0.5 : -2)), pred };
  };
  for (let i = 0; i < 40; i++)
    qs.push({ subject: 'anatomy', index: i, answer: i % 4, base: score(i < 20, i % 4), adapter: score(i < 10, i % 4) });
  for (let i = 0; i < 20; i++)
    qs.push({ subject: 'marketing', index: i, answer: 1, base: score(i < 5, 1), adapter: score(i < 5, 1) });
  return {
    meta: {
      model: 'm',
      adapter: 'a',
      data: 'the embedded selection',
      shots: 0,
      subjects: null,
      limit: null,
      quantize: 'none',
      device: 'cpu f32',
      single_token_questions: 60,
      general_questions: 0,
      resumed_questions: 0,
      scoring_seconds: 1,
    },
    questions: qs,
    summary: summarize(qs),
  };
}

describe('the MMLU report section', () => {
  it('tabulates categories and overall before/after, states the verdict and draws the bars', () => {
    const blocks = mmluSection({ path: 'r.json', results: results() });
    const table = blocks.find((b) => b.kind === 'table');
    expect(table?.kind === 'table' && table.rows.map((r) => r.map((c) => c.text))).toEqual([
      ['STEM', '40', '50.00', '25.00', '−25.00'],
      ['Other', '20', '25.00', '25.00', '+0.00'],
      ['Overall', '60', '41.67', '25.00', '−16.67'],
    ]);
    const note = blocks.find((b) => b.kind === 'note');
    // 10 questions only the base got right, none only the adapter: p = 2 / 2^10.
    expect(note?.kind === 'note' && note.inlines[0]).toMatch(
      /^Verdict: significant drop of 16\.7 points: 41\.7% -> 25\.0% on 60 questions \(difference -16\.7, 95% CI \[-\d+\.\d, -\d+\.\d\], McNemar p = 0\.002\)\.$/,
    );
    const chart = blocks.find((b) => b.kind === 'chart');
    expect(chart?.kind === 'chart' && chart.file).toBe('mmlu.svg');
    const svg = chart?.kind === 'chart' ? chart.svg : '';
    expect(svg.match(/<rect x=/g)).toHaveLength(6 + 2);
    expect(svg).toContain('<title>STEM, adapter: 25.00%</title>');
  });

  it('sqlora report --mmlu writes the section and its chart; a wrong file is one error line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-mmlu-'));
    const file = join(dir, 'mmlu.json');
    writeFileSync(file, JSON.stringify(results()));
    const r = await sqlora('report', ['--mmlu', file, '--out', join(dir, 'out')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const md = readFileSync(join(dir, 'out', 'report.md'), 'utf8');
    expect(md).toContain('## General knowledge (MMLU)');
    expect(md).toContain('Verdict: significant drop of 16.7 points');
    expect(md).toContain('mmlu.svg');
    expect(existsSync(join(dir, 'out', 'mmlu.svg'))).toBe(true);
    expect(readFileSync(join(dir, 'out', 'report.html'), 'utf8')).toContain('MMLU accuracy by category');

    writeFileSync(file, JSON.stringify({ summary: { overall: 1 } }));
    const bad = await sqlora('report', ['--mmlu', file, '--out', join(dir, 'out2')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(
      `error: ${file}: not a results file of sqlora mmlu (expected summary.overall and summary.categories)\n`,
    );
  }, 30_000);
});
