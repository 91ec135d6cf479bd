/** The model card names the dataset the run used: BIRD or your own pairs instead of Spider. */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildPublishFolder } from '../src/publish/publishFolder.js';
import { makeRun, publishOptions, PUBLISH } from './helpers/publish-run.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-publish-datasets-'));

const LICENSE = `base_model: Qwen/Qwen1.5-1.8B-Chat
library_name: peft
license: other
license_name: base-model-license
license_link: "https://huggingface.co/Qwen/Qwen1.5-1.8B-Chat"
`;

const level = (count: number, correct: number) => ({
  count,
  seed_exact: { total: 0, pct: 0 },
  seed_token: { total: 0, pct: 0 },
  exact_set_match: null,
  execution: { total: correct, pct: (100 * correct) / count },
});

/** A run trained on `layout` data (dataset.json beside its train file) and its eval results file. */
function datasetRun(layout: 'bird' | 'pairs'): { run: string; results: string } {
  const run = makeRun(tmp);
  const data = join(run, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'dataset.json'), JSON.stringify({ format: 'schema', source: { layout, path: '/data/x' } }));
  copyFileSync(join(PUBLISH, 'data', 'eval.jsonl'), join(data, 'train.jsonl'));
  const summaryPath = join(run, 'training_summary.json');
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
  summary.data = { ...summary.data, train_file: join(data, 'train.jsonl'), eval_file: null };
  writeFileSync(summaryPath, JSON.stringify(summary));
  const difficulties = ['simple', 'simple', 'moderate', 'challenging'];
  const correct = [true, false, true, false];
  const results = {
    meta: { mode: 'eval', dataset: { layout, format: 'schema', path: '/data/x' } },
    summary: {
      overall: level(4, 2),
      by_hardness: {},
      ...(layout === 'bird'
        ? { by_difficulty: { simple: level(2, 1), moderate: level(1, 1), challenging: level(1, 0) } }
        : {}),
    },
    examples: correct.map((execution, i) => ({
      index: i,
      id: `q${i}`,
      db_id: 'shop',
      ...(layout === 'bird' ? { difficulty: difficulties[i] } : {}),
      seed_exact: false,
      seed_token: 0,
      exact_set_match: null,
      execution,
      gold: 'SELECT 1',
      pred: execution ? 'SELECT 1' : 'SELECT 2',
    })),
  };
  const path = join(run, 'results.json');
  writeFileSync(path, JSON.stringify(results));
  return { run, results: path };
}

async function card(layout: 'bird' | 'pairs'): Promise<string> {
  const { run, results } = datasetRun(layout);
  await buildPublishFolder(
    publishOptions(run, { eval: results, baseline: undefined, mmlu: undefined, data: undefined }),
  );
  return readFileSync(join(run, 'publish', 'README.md'), 'utf8');
}

const frontMatter = (tag: string[], name: string, type: string): string => `---
${LICENSE}language:
- en
pipeline_tag: text-generation
tags:
- text-to-sql
- sql
${tag.map((t) => `- ${t}\n`).join('')}- lora
- peft
- qlora
- sqlora
model-index:
- name: qwen-sql
  results:
  - task:
      type: text-generation
      name: Text-to-SQL
    dataset:
      name: ${name}
      type: ${type}
      split: validation
    metrics:
    - type: execution_accuracy
      value: 50
      name: Execution accuracy
      verified: false
---
`;

describe('model card of a BIRD run and of a run on your own pairs', () => {
  it('BIRD: no datasets entry (no confirmed Hub id), execution by difficulty, BIRD in the body', async () => {
    const c = await card('bird');
    expect(c.slice(0, c.indexOf('---\n', 4) + 4)).toBe(frontMatter(['bird'], 'BIRD dev (4 questions)', 'bird'));
    expect(c).toContain('on 48 question-SQL pairs from the [BIRD](https://bird-bench.github.io/) training set');
    expect(c).toContain('On 4 BIRD dev questions its execution accuracy is **50.00%**.');
    expect(c).toContain("BIRD dev (4 questions), by BIRD's difficulty levels.");
    expect(c).toContain('| overall | 4 | Execution accuracy | 50.00 |');
    expect(c).toContain('| simple | 2 | Execution accuracy | 50.00 |');
    expect(c).toContain('| moderate | 1 | Execution accuracy | 100.00 |');
    expect(c).toContain('| challenging | 1 | Execution accuracy | 0.00 |');
    expect(c).toContain('| Data | 48 BIRD train examples, 8 for the eval loss (2 cut at the max length) |');
    expect(c).toContain("as BIRD's own evaluation computes it.");
    expect(c).toContain('- Trained and evaluated on BIRD:');
    expect(c).toContain('--data data --db-dir bird/dev/dev_databases --out runs/eval');
    expect(c).not.toMatch(/Spider|Exact-set-match|exact_set_match/);
  });

  it('your own pairs: no datasets entry or tag, execution overall only, named as your own pairs', async () => {
    const c = await card('pairs');
    expect(c.slice(0, c.indexOf('---\n', 4) + 4)).toBe(
      frontMatter([], 'the evaluation split of your own question/SQL pairs (4 questions)', 'own-pairs'),
    );
    expect(c).toContain(
      'fine-tuned with QLoRA (LoRA on the NF4-quantized base) on 48 examples of your own question/SQL pairs by',
    );
    expect(c).toContain(
      'On 4 evaluation questions of your own question/SQL pairs its execution accuracy is **50.00%**.',
    );
    expect(c).toContain('The evaluation split of your own question/SQL pairs (4 questions).');
    expect(c).toContain('| overall | 4 | Execution accuracy | 50.00 |');
    expect(c.match(/\| Execution accuracy \|/g)).toHaveLength(1);
    expect(c).toContain('| Data | 48 train examples of your own question/SQL pairs, 8 for the eval loss');
    expect(c).toContain('--adapter qwen-sql --data data --out runs/eval');
    expect(c).not.toMatch(/Spider|BIRD|Exact-set-match|hardness/);
  });
});
