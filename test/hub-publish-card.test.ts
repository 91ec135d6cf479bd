/** The publish folder and its model card: files, Hub metadata, body sections, bad input; the MMLU reader. */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMmluResults } from '../src/publish/mmluResults.js';
import { cardMetadata, renderModelCard } from '../src/publish/modelCard.js';
import { buildPublishFolder } from '../src/publish/publishFolder.js';
import { makeRun, publishOptions, PUBLISH, REPORT } from './helpers/publish-run.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-publish-card-'));

const FRONT_MATTER = `---
base_model: Qwen/Qwen1.5-1.8B-Chat
library_name: peft
license: other
license_name: base-model-license
license_link: "https://huggingface.co/Qwen/Qwen1.5-1.8B-Chat"
datasets:
- xlangai/spider
language:
- en
pipeline_tag: text-generation
tags:
- text-to-sql
- sql
- spider
- lora
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
      name: Spider dev (8 questions)
      type: xlangai/spider
      split: validation
    metrics:
    - type: execution_accuracy
      value: 50
      name: Execution accuracy
      verified: false
    - type: exact_set_match
      value: 37.5
      name: Exact-set-match
      verified: false
---
`;

describe('publish folder and model card', () => {
  it('writes the files a Hub user expects, with the card metadata the Hub reads', async () => {
    const run = makeRun(tmp);
    const folder = await buildPublishFolder(publishOptions(run));
    const out = join(run, 'publish');
    expect(folder.files.map((f) => f.path)).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'training_summary.json',
      'metrics.jsonl',
      'loss.svg',
      'README.md',
    ]);
    expect(readdirSync(out).sort()).toEqual(folder.files.map((f) => f.path).sort());
    expect(folder.warnings).toEqual([]);
    // The adapter is PEFT's, naming the base by its Hub id (the fixture named a local folder).
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    const original = JSON.parse(readFileSync(join(run, 'adapter', 'adapter_config.json'), 'utf8'));
    expect(config).toEqual({ ...original, base_model_name_or_path: 'Qwen/Qwen1.5-1.8B-Chat' });
    expect(Object.keys(config)).toEqual(Object.keys(original));
    expect(readFileSync(join(out, 'adapter_model.safetensors'))).toEqual(
      readFileSync(join(run, 'adapter', 'adapter_model.safetensors')),
    );
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).toBe(readFileSync(join(run, 'metrics.jsonl'), 'utf8'));

    const card = readFileSync(join(out, 'README.md'), 'utf8');
    expect(card.slice(0, FRONT_MATTER.length)).toBe(FRONT_MATTER);
    // Before/after by hardness, from the two results files.
    expect(card).toContain('| overall | 8 | Execution accuracy | 25.00 | 50.00 | +25.00 |');
    expect(card).toContain('| hard | 2 | Execution accuracy | 0.00 | 50.00 | +50.00 |');
    expect(card).toContain('|  |  | Exact-set-match | 0.00 | 50.00 | +50.00 |');
    // MMLU: overall and per category, and the verdict in words.
    expect(card).toContain('MMLU accuracy on 1,140 questions');
    expect(card).toContain('| overall | 39.65 | 38.68 | −0.96 |');
    expect(card).toContain('| STEM | 26.32 | 25.26 | −1.05 |');
    expect(card).toContain('**Verdict:** no significant change (-0.96 points, 95% CI -3.10 to +1.20)');
    // The loss curve as a file the Hub renders, referenced from the card.
    expect(card).toContain('![Train and eval loss by step](loss.svg)');
    expect(readFileSync(join(out, 'loss.svg'), 'utf8')).toMatch(
      /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^]*<\/svg>\n$/,
    );
    // The prompt example is the prepared record, rendered; usage repeats its messages.
    const record = JSON.parse(readFileSync(join(PUBLISH, 'data', 'eval.jsonl'), 'utf8'));
    expect(card).toContain('```\n' + record.prompt.replace(/\n$/, '') + '\n```');
    expect(card).toContain('```sql\nSELECT count(*) FROM singer\n```');
    expect(card).toContain(`    {"role": "user", "content": ${JSON.stringify(record.messages[1].content)}},`);
    expect(card).toContain('AutoPeftModelForCausalLM.from_pretrained("acme/qwen-sql", device_map="auto")');
    expect(card).toContain("the database's tables as SQLite `CREATE TABLE` statements");
    expect(card).toContain('## Limitations');

    // Same inputs, same bytes: a rerun has nothing to upload.
    const again = await buildPublishFolder(publishOptions(run, { out: join(run, 'publish2') }));
    for (const f of again.files) expect(readFileSync(f.file)).toEqual(readFileSync(join(out, f.path)));
  });

  it('front matter parses as YAML to the metadata (PyYAML, where installed)', async (ctx) => {
    const py = spawnSync('python3', ['-c', 'import yaml'], { encoding: 'utf8' });
    if (py.status !== 0) {
      console.log('skipped: python3 with PyYAML is not installed');
      ctx.skip();
    }
    const run = makeRun(tmp);
    const folder = await buildPublishFolder(publishOptions(run, { license: 'apache-2.0' }));
    const card = readFileSync(folder.files.find((f) => f.path === 'README.md')!.file, 'utf8');
    const front = card.split('---\n')[1];
    const parsed = spawnSync(
      'python3',
      ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))'],
      { input: front, encoding: 'utf8' },
    );
    expect(parsed.stderr).toBe('');
    const meta = JSON.parse(parsed.stdout);
    expect(meta.license).toBe('apache-2.0');
    expect(meta['model-index'][0].results[0].metrics).toEqual([
      { type: 'execution_accuracy', value: 50, name: 'Execution accuracy', verified: false },
      { type: 'exact_set_match', value: 37.5, name: 'Exact-set-match', verified: false },
    ]);
    expect(JSON.parse(JSON.stringify(meta))).toEqual(
      JSON.parse(
        JSON.stringify(
          cardMetadata({
            repo: 'acme/qwen-sql',
            baseModel: 'Qwen/Qwen1.5-1.8B-Chat',
            license: 'apache-2.0',
            lora: { r: 4, alpha: 12, dropout: 0, targetModules: ['q_proj'], useRslora: false },
            run: { dir: run, train: [], eval: [], summary: { settings: { quantize: 'nf4' } } },
            lossChart: null,
            example: null,
            finetuned: {
              path: '',
              meta: {},
              examples: [],
              questions: new Map(),
              summary: JSON.parse(readFileSync(join(REPORT, 'finetuned_results.json'), 'utf8')).summary,
            },
            baseline: null,
            mmlu: null,
            files: [],
          }),
        ),
      ),
    );
  });

  it('without --eval the card has no model-index, and says what it lacks', async () => {
    const run = makeRun(tmp);
    const folder = await buildPublishFolder(
      publishOptions(run, { eval: undefined, baseline: undefined, mmlu: undefined, data: undefined }),
    );
    const card = readFileSync(join(run, 'publish', 'README.md'), 'utf8');
    expect(card).not.toContain('model-index');
    expect(card).not.toContain('## Results');
    expect(card).not.toContain('## Prompt format');
    expect(folder.warnings).toEqual([
      'no --eval: the card has no Spider scores and no model-index',
      "the run's prompt records were not found, so the card shows no prompt example: pass --data DIR (the sqlora prepare folder)",
    ]);
  });

  it('refuses a run without an adapter, a repo id that is not owner/name, an unwritable --out and a local base', async () => {
    const run = makeRun(tmp);
    await expect(buildPublishFolder(publishOptions(run, { repo: 'qwen-sql' }))).rejects.toThrow(
      '--repo "qwen-sql" is not a Hub repo id: expected OWNER/NAME',
    );
    await expect(buildPublishFolder(publishOptions(run, { repo: 'acme/qwen/sql' }))).rejects.toThrow(
      'is not a Hub repo id',
    );
    const file = join(tmp, 'a-file');
    writeFileSync(file, '');
    await expect(buildPublishFolder(publishOptions(run, { out: join(file, 'publish') }))).rejects.toThrow(
      `cannot write --out ${join(file, 'publish')}: ENOTDIR (choose a writable folder)`,
    );
    const summary = JSON.parse(readFileSync(join(run, 'training_summary.json'), 'utf8'));
    writeFileSync(join(run, 'training_summary.json'), JSON.stringify({ ...summary, model: '/models/qwen' }));
    await expect(buildPublishFolder(publishOptions(run))).rejects.toThrow(
      `the base model of ${run} is /models/qwen, not a Hub repo id: pass --base-model OWNER/NAME`,
    );
    expect((await buildPublishFolder(publishOptions(run, { baseModel: 'Qwen/Qwen1.5-1.8B-Chat' }))).baseModel).toBe(
      'Qwen/Qwen1.5-1.8B-Chat',
    );
    const bare = join(tmp, 'no-adapter');
    cpSync(join(REPORT, 'run'), bare, { recursive: true });
    await expect(buildPublishFolder(publishOptions(bare))).rejects.toThrow(
      `${bare} has no adapter (adapter/adapter_config.json and adapter/adapter_model.safetensors)`,
    );
    expect(existsSync(join(bare, 'publish'))).toBe(false);
  });
});

describe('MMLU results', () => {
  const write = (name: string, body: unknown): string => {
    const p = join(tmp, name);
    writeFileSync(p, JSON.stringify(body));
    return p;
  };

  it('reads the shape of issue 18 and tolerates missing or other fields', async () => {
    // Accuracies are fractions in this shape: the card shows percent.
    const fx = JSON.parse(readFileSync(join(PUBLISH, 'mmlu_results.json'), 'utf8')).summary;
    const pct = (s: { accuracy: number; count: number }): { pct: number; count: number } => ({
      pct: 100 * s.accuracy,
      count: s.count,
    });
    expect(readMmluResults(join(PUBLISH, 'mmlu_results.json'))).toEqual({
      path: join(PUBLISH, 'mmlu_results.json'),
      overall: { name: 'overall', base: pct(fx.overall.base), adapter: pct(fx.overall.adapter) },
      categories: ['STEM', 'humanities'].map((name) => ({
        name,
        base: pct(fx.categories[name].base),
        adapter: pct(fx.categories[name].adapter),
      })),
      verdict: 'no significant change (-0.96 points, 95% CI -3.10 to +1.20)',
      questions: 1140,
    });
    const single = write('mmlu-single.json', { summary: { overall: { acc: 0.25 }, per_category: { other: 31.5 } } });
    expect(readMmluResults(single)).toEqual({
      path: single,
      overall: { name: 'overall', base: { pct: 25 } },
      categories: [{ name: 'other', base: { pct: 31.5 } }],
    });
    const verdictOnly = write('mmlu-verdict.json', { summary: { verdict: 'significant drop of 9.0 points' } });
    expect(readMmluResults(verdictOnly)).toMatchObject({ categories: [], verdict: 'significant drop of 9.0 points' });
    const empty = write('mmlu-empty.json', { summary: {} });
    expect(() => readMmluResults(empty)).toThrow(`${empty}: summary has neither an overall accuracy nor a verdict`);
    const none = write('mmlu-none.json', { questions: [] });
    expect(() => readMmluResults(none)).toThrow(`${none}: no "summary" object`);
  });
});

describe('model card training table', () => {
  it('says what --quantize none means instead of "Base weights | none"', () => {
    const card = renderModelCard({
      repo: 'acme/qwen-sql',
      baseModel: 'Qwen/Qwen1.5-1.8B-Chat',
      license: 'other',
      lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj'], useRslora: false },
      run: { dir: 'run', train: [], eval: [], summary: { settings: { quantize: 'none' } } },
      lossChart: null,
      example: null,
      finetuned: null,
      baseline: null,
      mmlu: null,
      files: [],
    });
    expect(card).toContain('| Base weights | unquantized (LoRA on the stored weights) |');
    expect(card).not.toContain('| Base weights | none |');
  });
});
