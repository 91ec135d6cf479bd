import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readResults, readTrainingRun, type ResultsFile } from '../src/report/inputs.js';
import { mdCode } from '../src/report/markdown.js';
import { writeReport, type ReportInputs } from '../src/report/report.js';
import { niceTicks } from '../src/report/svgChart.js';

const FIX = 'test/fixtures/report';

function inputs(overrides: Partial<ReportInputs> = {}): ReportInputs {
  return {
    run: readTrainingRun(join(FIX, 'run')),
    baseline: readResults(join(FIX, 'baseline_results.json'), 'baseline'),
    finetuned: readResults(join(FIX, 'finetuned_results.json'), 'fine-tuned'),
    examples: 5,
    generatedAt: new Date('2025-01-02T03:04:05Z'),
    ...overrides,
  };
}

function render(overrides: Partial<ReportInputs> = {}): { md: string; html: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sqlora-report-'));
  const w = writeReport(dir, inputs(overrides));
  return { md: readFileSync(w.markdown, 'utf8'), html: readFileSync(w.html, 'utf8'), dir };
}

/** Markdown table rows as cell arrays (header and separator rows left out). */
function mdRows(md: string): string[][] {
  return md
    .split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| ---'))
    .map((l) =>
      l
        .slice(2, -2)
        .split(' | ')
        .map((c) => c.trim()),
    );
}

/** The metrics table as "level/metric" -> [baseline, fine-tuned, change] (levels carried down). */
function metricTable(md: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let level = '';
  for (const r of mdRows(md)) {
    if (r.length !== 6 || r[2] === 'Metric') continue;
    level = r[0] || level;
    out.set(`${level}/${r[2]}`, r.slice(3));
  }
  return out;
}

describe('report: before/after metrics', () => {
  it('shows every metric overall and per hardness with the change in points', () => {
    const t = metricTable(render().md);
    // Expected values computed by hand from the fixture's examples (see its SOURCES.md).
    expect(t.get('overall/Execution accuracy')).toEqual(['25.00', '50.00', '+25.00']);
    expect(t.get('overall/Exact-set-match')).toEqual(['12.50', '37.50', '+25.00']);
    expect(t.get('overall/Exact string match (seed)')).toEqual(['12.50', '37.50', '+25.00']);
    expect(t.get('overall/Token match (seed)')).toEqual(['46.35', '64.22', '+17.87']);
    expect(t.get('easy/Execution accuracy')).toEqual(['33.33', '66.67', '+33.33']);
    expect(t.get('easy/Token match (seed)')).toEqual(['70.83', '91.67', '+20.83']);
    expect(t.get('medium/Execution accuracy')).toEqual(['50.00', '50.00', '+0.00']);
    expect(t.get('medium/Exact-set-match')).toEqual(['0.00', '50.00', '+50.00']);
    expect(t.get('medium/Token match (seed)')).toEqual(['55.29', '50.00', '−5.29']);
    expect(t.get('hard/Execution accuracy')).toEqual(['0.00', '50.00', '+50.00']);
    expect(t.get('extra/Token match (seed)')).toEqual(['21.05', '42.11', '+21.05']);
    expect(t.size).toBe(5 * 4);
  });

  it('gives each level its question count and colours the changes in HTML', () => {
    const { md, html } = render();
    const firsts = mdRows(md)
      .filter((r) => r.length === 6 && r[0] !== '' && r[0] !== 'Level')
      .map((r) => [r[0], r[1]]);
    expect(firsts).toEqual([
      ['overall', '8'],
      ['easy', '3'],
      ['medium', '2'],
      ['hard', '2'],
      ['extra', '1'],
    ]);
    expect(html).toContain(
      '<td>overall</td><td class="num">8</td><td>Execution accuracy</td><td class="num">25.00</td><td class="num">50.00</td><td class="num up">+25.00</td>',
    );
    expect(html).toContain('<td class="num down">−5.29</td>');
    expect(html).toContain('<td class="num same">+0.00</td>');
  });

  it('compares files with different questions on the questions both have', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-report-'));
    const base = JSON.parse(readFileSync(join(FIX, 'baseline_results.json'), 'utf8'));
    // Two more questions, both right: over 10 questions execution would be 40.00%.
    for (const i of [8, 9]) base.examples.push({ ...base.examples[0], index: i, id: `dev-${i}` });
    base.summary.overall.execution = { total: 4, pct: 40 };
    base.summary.overall.count = 10;
    writeFileSync(join(dir, 'base10.json'), JSON.stringify(base));
    const { md } = render({ baseline: readResults(join(dir, 'base10.json'), 'baseline') });
    expect(md).toContain('(10 before, 8 after)');
    expect(md).toContain('recomputed over the 8 questions both have');
    expect(metricTable(md).get('overall/Execution accuracy')).toEqual(['25.00', '50.00', '+25.00']);
    expect(metricTable(md).get('medium/Token match (seed)')).toEqual(['55.29', '50.00', '−5.29']);
  });

  it('shows a single results file without a change column', () => {
    const { md } = render({ baseline: null, run: null });
    const row = mdRows(md).find((r) => r[2] === 'Execution accuracy');
    expect(row).toEqual(['overall', '8', 'Execution accuracy', '50.00']);
    expect(md).not.toContain('## Training');
  });
});

describe('report: examples that changed', () => {
  it('lists wrong -> right and right -> wrong by execution, with questions and both predictions', () => {
    const { md, html } = render();
    expect(md).toContain(
      'by execution, over the 8 questions both files have: 3 went from wrong to right, 1 from right to wrong.',
    );
    const fixed = md.slice(md.indexOf('### Wrong → right (3)'), md.indexOf('### Right → wrong (1)'));
    expect([...fixed.matchAll(/\*\*(dev-\d+):/g)].map((m) => m[1])).toEqual(['dev-1', 'dev-4', 'dev-5']);
    expect(fixed).toContain(
      '**dev-1: Names of singers older than 30?** — concert_singer, easy, token match 38% → 100%',
    );
    expect(fixed).toContain('- baseline: `SELECT name FROM singers`');
    expect(fixed).toContain('- fine-tuned: `select name from singer where age > 30;`');
    const broken = md.slice(md.indexOf('### Right → wrong (1)'));
    expect(broken).toContain('**dev-3: Concerts per name?**');
    // A prediction holding a backtick and a pipe stays one code span.
    expect(broken).toContain('- fine-tuned: `` The answer is | `42` ``');
    expect(html).toContain('<dt>fine-tuned</dt><dd><code>The answer is | `42`</code></dd>');
  });

  it('keeps the lines of a multi-line prediction in a fenced block under its list item', () => {
    const i = inputs();
    const baseline = {
      ...i.baseline!,
      examples: i.baseline!.examples.map((e) => (e.id === 'dev-1' ? { ...e, pred: 'SELECT name\nFROM singers' } : e)),
    };
    const { md, html } = render({ baseline });
    expect(md).toContain('- baseline:\n  ```\n  SELECT name\n  FROM singers\n  ```\n- fine-tuned:');
    expect(html).toContain('<dt>baseline</dt><dd><code>SELECT name\nFROM singers</code></dd>');
  });

  it('caps each list at --examples', () => {
    expect(render({ examples: 2 }).md).toContain('### Wrong → right (2 of 3)');
  });

  it('falls back to the largest token-match changes when nothing flipped', () => {
    const strip = (r: ResultsFile): ResultsFile => ({
      ...r,
      examples: r.examples.map((e) => ({ ...e, execution: false, exact_set_match: false, seed_exact: false })),
    });
    const i = inputs();
    const { md } = render({ baseline: strip(i.baseline!), finetuned: strip(i.finetuned!) });
    expect(md).toContain('0 went from wrong to right, 0 from right to wrong');
    const up = md.slice(md.indexOf('### Token match up'), md.indexOf('### Token match down'));
    // Token-match gains: dev-4 +0.769, dev-6 +0.7, dev-1 +0.625, dev-7 +0.211 (dev-0, 2, 5 unchanged; dev-3 lost 0.875).
    expect(up).toContain('### Token match up (4)');
    expect([...up.matchAll(/\*\*(dev-\d+):/g)].map((m) => m[1])).toEqual(['dev-4', 'dev-6', 'dev-1', 'dev-7']);
    const down = md.slice(md.indexOf('### Token match down'));
    expect([...down.matchAll(/\*\*(dev-\d+):/g)].map((m) => m[1])).toEqual(['dev-3']);
  });
});

describe('report: training', () => {
  it('summarizes the run, its settings and timing', () => {
    const { md } = render();
    const kv = new Map(
      mdRows(md)
        .filter((r) => r.length === 2)
        .map(([k, v]) => [k, v]),
    );
    expect(kv.get('Examples')).toBe('48 train, 8 eval (2 cut at max length)');
    expect(kv.get('Trainable parameters')).toBe('6,291,456');
    expect(kv.get('Steps')).toBe('6 (3 per epoch, 1 warmup), 2.00 epochs');
    expect(kv.get('Train loss')).toBe('2.0000 at step 1 → 1.1000 at step 6 (mean 1.4833)');
    expect(kv.get('Eval loss')).toBe('1.6000 at step 3 → 1.2500 at step 6 (best 1.2500 at step 6)');
    expect(kv.get('`--lora-r`')).toBe('16');
    expect(kv.get('`--target-modules`')).toBe('q_proj,k_proj,v_proj,o_proj');
    expect(kv.get('`--eval-steps`')).toBe('3');
    const timing = mdRows(md).filter((r) => r.length === 3);
    expect(timing).toContainEqual(['Training', '1 min 36 s', '6 steps, 251 tokens/s']);
    expect(timing).toContainEqual(['Baseline generation', '12.5 s', '8 questions, 32 new tokens/s']);
    expect(timing).toContainEqual(['Fine-tuned generation', '10.0 s', '8 questions, 30 new tokens/s']);
  });

  it('draws the loss curves: 6 train points, eval points at steps 3 and 6, on round-number axes', () => {
    const { md, dir } = render();
    expect(md).toContain('![Train and eval loss by step](loss.svg)');
    const svg = readFileSync(join(dir, 'loss.svg'), 'utf8');
    const paths = [...svg.matchAll(/<path d="([^"]+)"/g)].map((m) => m[1]);
    expect(paths).toHaveLength(2);
    // Steps 1..6 and losses 1.0..2.0 fill the plot: x from 60 to 624, y from 256 (loss 1) up to 34 (loss 2).
    const train = paths[0].split(/ (?=[ML])/);
    expect(train).toHaveLength(6);
    expect(train[0]).toBe('M60 34');
    expect(train[5]).toBe('L624 233.8');
    expect(paths[1]).toBe('M285.6 122.8 L624 200.5');
    expect(svg.match(/<circle /g)).toHaveLength(2);
    expect(existsSync(join(dir, 'lr.svg'))).toBe(true);
  });

  it('writes one self-contained HTML page with the charts inline', () => {
    const { html } = render();
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).not.toMatch(/<script|<link|<img|\ssrc=|\shref=|url\(/i);
    expect(html).toContain('<h2>Training</h2>');
  });

  it('reports an unfinished run from its metrics log alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-report-'));
    mkdirSync(join(dir, 'run'));
    writeFileSync(
      join(dir, 'run', 'metrics.jsonl'),
      readFileSync(join(FIX, 'run', 'metrics.jsonl'), 'utf8')
        .split('\n')
        .slice(0, 4)
        .join('\n') + '\n',
    );
    const { md } = render({ run: readTrainingRun(join(dir, 'run')), baseline: null, finetuned: null });
    const kv = new Map(
      mdRows(md)
        .filter((r) => r.length === 2)
        .map(([k, v]) => [k, v]),
    );
    expect(kv.get('Status')).toMatch(/^not finished/);
    expect(kv.get('Steps logged')).toBe('3 (epoch 1.00)');
    expect(kv.get('Eval loss')).toBe('1.6000 at step 3 → 1.6000 at step 3 (best 1.6000 at step 3)');
  });
});

describe('report: inputs and helpers', () => {
  it('refuses a reference-workflow results file with the command that scores it', () => {
    expect(() => readResults('test/fixtures/seed/finetuned_results.json', 'fine-tuned')).toThrow(
      /sqlora evaluate --pred test\/fixtures\/seed\/finetuned_results.json --out results.json/,
    );
  });

  it('refuses a run folder without a metrics log', () => {
    expect(() => readTrainingRun(FIX)).toThrow(/has no metrics.jsonl/);
  });

  it('puts the note first', () => {
    const { md } = render({ note: 'Demo run: a toy model.' });
    expect(md.split('\n\n')[1]).toBe('> Demo run: a toy model.');
  });

  it('fences code holding backticks with a longer run', () => {
    expect(mdCode('a `b` c')).toBe('`` a `b` c ``');
    expect(mdCode('x ``y``')).toBe('``` x ``y`` ```');
    expect(mdCode('plain')).toBe('`plain`');
  });

  it('picks ticks at 1, 2 or 5 times a power of ten', () => {
    expect(niceTicks(1.1, 2.0)).toEqual([1, 1.2, 1.4, 1.6, 1.8, 2]);
    expect(niceTicks(1, 38, 6)).toEqual([0, 10, 20, 30, 40]);
    expect(niceTicks(0, 0.01)).toEqual([0, 0.002, 0.004, 0.006, 0.008, 0.01]);
  });
});
