import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readResults, readTrainingRun } from '../src/report/inputs.js';
import { writeReport } from '../src/report/report.js';

const FIX = 'test/fixtures/report';

describe('report: dataset and prompt format', () => {
  it('names the dataset and prompt format of training and of each eval; the summary table has a real header', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-report-data-'));
    const seed = join(dir, 'data-seed'),
      schema = join(dir, 'data-schema');
    for (const [d, format] of [
      [seed, 'seed'],
      [schema, 'schema'],
    ] as const) {
      mkdirSync(d);
      writeFileSync(
        join(d, 'dataset.json'),
        JSON.stringify({ format, source: { layout: 'spider-folder', path: '/data/spider' } }),
      );
      cpSync(join(FIX, 'eval.jsonl'), join(d, 'eval.jsonl'));
    }
    cpSync(join(FIX, 'run'), join(dir, 'run'), { recursive: true });
    const summaryPath = join(dir, 'run', 'training_summary.json');
    const summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
    summary.data.train_file = join(seed, 'train.jsonl');
    writeFileSync(summaryPath, JSON.stringify(summary));
    const withEvalFile = (name: string, evalFile: string): string => {
      const r = JSON.parse(readFileSync(join(FIX, name), 'utf8'));
      r.meta = { ...r.meta, eval_file: evalFile };
      const p = join(dir, name);
      writeFileSync(p, JSON.stringify(r));
      return p;
    };
    const w = writeReport(join(dir, 'out'), {
      run: readTrainingRun(join(dir, 'run')),
      baseline: readResults(withEvalFile('baseline_results.json', join(schema, 'eval.jsonl')), 'baseline'),
      finetuned: readResults(withEvalFile('finetuned_results.json', join(seed, 'eval.jsonl')), 'fine-tuned'),
      examples: 2,
      generatedAt: new Date('2025-01-02T03:04:05Z'),
    });
    const html = readFileSync(w.html, 'utf8');
    expect(html).not.toContain('<th></th>');
    const training = html.slice(html.indexOf('<h2>Training</h2>'));
    const table = training.slice(training.indexOf('<table>'), training.indexOf('</table>'));
    expect(table).toContain('<thead><tr><th>Item</th><th>Value</th></tr></thead>');
    expect(table).toContain(`<tr><td>Dataset</td><td>${seed}/train.jsonl: Spider (/data/spider)</td></tr>`);
    expect(table).toContain('<tr><td>Prompt format</td><td>seed</td></tr>');
    expect(html).toContain('on Spider (/data/spider), prompt format schema.');
    expect(html).toContain('on Spider (/data/spider), prompt format seed.');
    expect(html).toContain(
      '<div class="note">The two runs used different prompt formats (schema before, seed after): the change mixes the effect of training with that of the prompt.</div>',
    );
    const md = readFileSync(w.markdown, 'utf8');
    expect(md).toContain('| Prompt format | seed |');
  });
});
