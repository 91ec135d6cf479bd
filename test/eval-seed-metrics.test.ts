import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { evaluatePredictions } from '../src/eval/evaluate.js';
import { loadEvalItems } from '../src/eval/predictions.js';
import { normalizeSeedSql, seedExactMatch, seedTokenMatch } from '../src/eval/seedMetrics.js';

interface SeedResults {
  exact_match_accuracy: number;
  avg_token_match: number;
  detailed_results: { expected_sql: string; generated_sql: string; exact_match: boolean; token_match: number }[];
}
const SEED = 'test/fixtures/seed';
const read = (file: string) => JSON.parse(readFileSync(`${SEED}/${file}`, 'utf8')) as SeedResults;

describe('reference workflow metrics', () => {
  it('normalizes as the reference: lower case, single spaces, no trailing semicolon', () => {
    expect(normalizeSeedSql('  SELECT  Name ,\n\tAge FROM singer ;  ')).toBe('select name , age from singer');
    expect(seedExactMatch('SELECT count(*) FROM singer', 'select COUNT(*)  from singer;')).toBe(true);
    expect(seedTokenMatch('SELECT a FROM t', 'SELECT b FROM t')).toBeCloseTo(3 / 4);
    expect(seedTokenMatch('SELECT a FROM t', '')).toBe(0);
  });

  for (const file of ['finetuned_results.json', 'baseline_results.json']) {
    it(`agrees with every per-example value in ${file}`, () => {
      for (const r of read(file).detailed_results) {
        expect(seedExactMatch(r.expected_sql, r.generated_sql), r.generated_sql).toBe(r.exact_match);
        // The reference rounded each token score to 4 decimals.
        expect(
          Math.abs(seedTokenMatch(r.expected_sql, r.generated_sql) - r.token_match),
          r.generated_sql,
        ).toBeLessThanOrEqual(5e-5);
      }
    });
  }

  it('reproduces the published summaries: 6.00 / 54.75 fine-tuned, 0.00 / 34.39 baseline', async () => {
    for (const [file, exact, token] of [
      ['finetuned_results.json', '6.00', '54.75'],
      ['baseline_results.json', '0.00', '34.39'],
    ] as const) {
      const { summary, examples } = await evaluatePredictions(loadEvalItems({ predPath: `${SEED}/${file}` }));
      expect(summary.overall.seed_exact.pct.toFixed(2)).toBe(exact);
      expect(summary.overall.seed_token.pct.toFixed(2)).toBe(token);
      expect(summary.overall.count).toBe(read(file).detailed_results.length);
      // Without databases nothing else is claimed.
      expect(summary.overall.execution).toBeNull();
      expect(summary.overall.exact_set_match).toBeNull();
      expect(examples[0]).toMatchObject({
        index: 0,
        db_id: 'concert_singer',
        hardness: null,
        execution: null,
        exact_set_match: null,
      });
    }
  });
});
