/**
 * `sqlora report` as a function: a training run and/or baseline and fine-tuned results ->
 * report.md (+ its SVG charts) and a self-contained report.html with the same content:
 * before/after metrics overall and per hardness, loss and learning-rate curves, the training
 * configuration and timing, and examples that changed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import {
  alignResults,
  changedExamples,
  metricRows,
  type Alignment,
  type ExamplePair,
  type MetricName,
} from './compare.js';
import { cell, type Block, type Cell, type Inline, type Tone } from './document.js';
import { renderHtml } from './html.js';
import type { ResultsFile, TrainingRun } from './inputs.js';
import { renderMarkdown } from './markdown.js';
import { lineChart } from './svgChart.js';
import { mmluSection, type MmluReportInput } from './mmluSection.js';
import { datasetName, datasetOf, describeDataset, resultsDataset } from './dataset.js';

export interface ReportInputs {
  run: TrainingRun | null;
  baseline: ResultsFile | null;
  finetuned: ResultsFile | null;
  /** sqlora mmlu's results (optional section). */
  mmlu?: MmluReportInput | null;
  /** A paragraph shown first (the demo says what its model is). */
  note?: string;
  /** Examples shown per kind of change. */
  examples: number;
  /** Written into the report; fixed in tests. */
  generatedAt: Date;
}

export interface WrittenReport {
  markdown: string;
  html: string;
  /** SVG files written next to report.md. */
  charts: string[];
}

const TITLE = 'sqlora report';
const COLORS = { train: '#1f77b4', eval: '#d62728', lr: '#2ca02c' };

const pct = (v: number | null): string => (v === null ? '—' : v.toFixed(2));
const int = (v: number): string => v.toLocaleString('en-US');

export function formatDelta(d: number | null): Cell {
  if (d === null) return cell('—');
  const tone: Tone = d > 0.005 ? 'up' : d < -0.005 ? 'down' : 'same';
  return cell(`${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}`, { tone });
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 90) return `${m} min ${Math.round(s - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function sources(inp: ReportInputs): Inline[] {
  const parts: Inline[] = [`Generated ${inp.generatedAt.toISOString().replace(/\.\d+Z$/, 'Z')} from`];
  const items: Inline[][] = [];
  if (inp.run) items.push([' training run ', { code: inp.run.dir }]);
  if (inp.baseline) items.push([' baseline results ', { code: inp.baseline.path }]);
  if (inp.finetuned) items.push([' fine-tuned results ', { code: inp.finetuned.path }]);
  if (inp.mmlu) items.push([' MMLU results ', { code: inp.mmlu.path }]);
  items.forEach((it, i) => parts.push(...(i > 0 ? [i === items.length - 1 ? ' and' : ','] : []), ...it));
  parts.push('.');
  return parts;
}

function whatWasEvaluated(r: ResultsFile): string {
  const m = r.meta;
  const bits = [
    typeof m.model === 'string' ? `model ${m.model}` : null,
    typeof m.adapter === 'string' ? `adapter ${m.adapter}` : null,
    resultsDataset(m) ? `on ${describeDataset(resultsDataset(m)!)}` : null,
  ];
  return bits.filter(Boolean).join(' + ');
}

function resultsSection(inp: ReportInputs, al: Alignment): Block[] {
  const { baseline: b, finetuned: f } = inp;
  if (!b && !f) return [];
  const blocks: Block[] = [{ kind: 'heading', level: 2, text: 'Results' }];
  const both = b !== null && f !== null;
  const db = b && resultsDataset(b.meta),
    df = f && resultsDataset(f.meta);
  const described = [
    b ? `Baseline: ${whatWasEvaluated(b) || b.path}.` : '',
    f ? `Fine-tuned: ${whatWasEvaluated(f) || f.path}.` : '',
  ]
    .filter(Boolean)
    .join(' ');
  blocks.push({
    kind: 'paragraph',
    inlines: [`Percentages of the questions${both ? '; the change is in percentage points' : ''}. ${described}`],
  });
  if (db?.format && df?.format && db.format !== df.format) {
    blocks.push({
      kind: 'note',
      inlines: [
        `The two runs used different prompt formats (${db.format} before, ${df.format} after): the change mixes the effect of training with that of the prompt.`,
      ],
    });
  }
  if (al.restricted) {
    blocks.push({
      kind: 'note',
      inlines: [
        `The two files score different questions (${al.restricted.before} before, ${al.restricted.after} after): every number here is recomputed over the ${al.restricted.shared} questions both have.`,
      ],
    });
  }
  const header = [
    'Level',
    'Questions',
    'Metric',
    ...(b ? ['Baseline %'] : []),
    ...(f ? ['Fine-tuned %'] : []),
    ...(both ? ['Change'] : []),
  ];
  const rows: Cell[][] = [];
  let lastLevel = '';
  for (const r of metricRows(al)) {
    const counts = [r.count.before, r.count.after].filter((c): c is number => c !== null);
    const count =
      counts.length === 2 && counts[0] !== counts[1] ? `${counts[0]} / ${counts[1]}` : String(counts[0] ?? '—');
    const first = r.level !== lastLevel;
    lastLevel = r.level;
    rows.push([
      cell(first ? r.level : ''),
      cell(first ? count : ''),
      cell(r.label),
      ...(b ? [cell(pct(r.before))] : []),
      ...(f ? [cell(pct(r.after))] : []),
      ...(both ? [formatDelta(r.delta)] : []),
    ]);
  }
  blocks.push({ kind: 'table', header, rows, numeric: header.map((h) => !['Level', 'Metric'].includes(h)) });
  if ([b, f].some((r) => r?.summary.by_difficulty !== undefined))
    blocks.push({
      kind: 'paragraph',
      inlines: [
        "BIRD questions are scored by BIRD's own rule: the same set of result rows as the gold query (row order and repeated rows do not count, column order does), per BIRD difficulty.",
      ],
    });
  blocks.push({
    kind: 'paragraph',
    inlines: [
      "Execution: same result rows as the gold query on the SQLite database. Exact-set-match: Spider's official component comparison. " +
        "Exact string match and token match: the reference workflow's string metrics (lower-cased; token match is the share of gold tokens present in the prediction).",
    ],
  });
  return blocks;
}

function trainingSection(run: TrainingRun): { blocks: Block[]; charts: string[] } {
  const blocks: Block[] = [{ kind: 'heading', level: 2, text: 'Training' }];
  const charts: string[] = [];
  const loss = lineChart({
    title: 'Loss',
    xLabel: 'step',
    yLabel: 'loss',
    series: [
      { name: 'train loss', color: COLORS.train, points: run.train.map((r) => [r.step, r.loss] as const) },
      {
        name: 'eval loss',
        color: COLORS.eval,
        markers: true,
        points: run.eval.map((r) => [r.step, r.eval_loss] as const),
      },
    ],
  });
  if (loss) {
    blocks.push({ kind: 'chart', file: 'loss.svg', alt: 'Train and eval loss by step', svg: loss });
    charts.push('loss.svg');
  }
  const lr = lineChart({
    title: 'Learning rate',
    xLabel: 'step',
    yLabel: 'learning rate',
    height: 220,
    series: [
      {
        name: 'lr',
        color: COLORS.lr,
        points: run.train.filter((r) => typeof r.lr === 'number').map((r) => [r.step, r.lr] as const),
      },
    ],
  });
  if (lr) {
    blocks.push({ kind: 'chart', file: 'lr.svg', alt: 'Learning rate by step', svg: lr });
    charts.push('lr.svg');
  }
  if (!loss) blocks.push({ kind: 'paragraph', inlines: ['The metrics log has no steps yet.'] });

  const s = run.summary;
  const rows: [string, string][] = [];
  if (!s) rows.push(['Status', 'not finished (no training_summary.json): the curves show the steps logged so far']);
  if (s?.model) rows.push(['Base model', s.model]);
  const trainFile = s?.data?.train_file;
  if (typeof trainFile === 'string') {
    const d = datasetOf(trainFile);
    rows.push(['Dataset', d ? `${trainFile}: ${datasetName(d)}` : `${trainFile} (no dataset.json beside it)`]);
    rows.push(['Prompt format', d?.format ?? 'unknown (no dataset.json beside the train file)']);
  }
  if (s?.adapter) rows.push(['Adapter', s.adapter]);
  if (s?.data?.train_examples !== undefined) {
    rows.push([
      'Examples',
      `${int(s.data.train_examples)} train${s.data.eval_examples ? `, ${int(s.data.eval_examples)} eval` : ''}${s.data.truncated ? ` (${s.data.truncated} cut at max length)` : ''}`,
    ]);
  }
  if (s?.trainable_params !== undefined) rows.push(['Trainable parameters', int(s.trainable_params)]);
  const last = run.train[run.train.length - 1];
  if (s?.steps?.total !== undefined) {
    rows.push([
      'Steps',
      `${int(s.steps.total)} (${s.steps.per_epoch} per epoch, ${s.steps.warmup ?? 0} warmup), ${(s.epochs ?? 0).toFixed(2)} epochs`,
    ]);
  } else if (last) {
    rows.push(['Steps logged', `${int(last.step)} (epoch ${last.epoch.toFixed(2)})`]);
  }
  if (last) {
    const first = run.train[0];
    rows.push([
      'Train loss',
      `${first.loss.toFixed(4)} at step ${first.step} → ${last.loss.toFixed(4)} at step ${last.step}${s?.train_loss !== undefined ? ` (mean ${s.train_loss.toFixed(4)})` : ''}`,
    ]);
  }
  if (run.eval.length > 0) {
    const [e0, e1] = [run.eval[0], run.eval[run.eval.length - 1]];
    const best = run.eval.reduce((a, e) => (e.eval_loss < a.eval_loss ? e : a));
    rows.push([
      'Eval loss',
      `${e0.eval_loss.toFixed(4)} at step ${e0.step} → ${e1.eval_loss.toFixed(4)} at step ${e1.step} (best ${best.eval_loss.toFixed(4)} at step ${best.step})`,
    ]);
  }
  if (rows.length > 0)
    blocks.push({
      kind: 'table',
      header: ['Item', 'Value'],
      rows: rows.map(([k, v]) => [cell(k), cell(v)]),
      numeric: [false, false],
    });
  const settings = Object.entries(s?.settings ?? {});
  if (settings.length > 0) {
    blocks.push({ kind: 'heading', level: 3, text: 'Settings' });
    blocks.push({
      kind: 'table',
      header: ['Flag', 'Value'],
      rows: settings.map(([k, v]) => [
        cell(`--${k.replaceAll('_', '-')}`, { code: true }),
        cell(typeof v === 'string' ? v : JSON.stringify(v)),
      ]),
      numeric: [false, false],
    });
  }
  return { blocks, charts };
}

function timingSection(inp: ReportInputs): Block[] {
  const rows: Cell[][] = [];
  const s = inp.run?.summary;
  if (s?.train_seconds !== undefined) {
    rows.push([
      cell('Training'),
      cell(formatSeconds(s.train_seconds)),
      cell(`${s.steps?.total ?? '?'} steps, ${int(Math.round(s.tokens_per_s ?? 0))} tokens/s`),
    ]);
  }
  for (const [name, r] of [
    ['Baseline generation', inp.baseline],
    ['Fine-tuned generation', inp.finetuned],
  ] as const) {
    const secs = r?.meta.generation_seconds;
    if (typeof secs !== 'number' || !r) continue;
    const n = typeof r.meta.generated === 'number' ? r.meta.generated : r.summary.overall.count;
    const tokens =
      typeof r.meta.new_tokens === 'number' && secs > 0
        ? `, ${int(Math.round(r.meta.new_tokens / secs))} new tokens/s`
        : '';
    rows.push([cell(name), cell(formatSeconds(secs)), cell(`${n} questions${tokens}`)]);
  }
  if (rows.length === 0) return [];
  return [
    { kind: 'heading', level: 2, text: 'Timing' },
    { kind: 'table', header: ['Stage', 'Time', 'Detail'], rows, numeric: [false, true, false] },
  ];
}

const METRIC_WORDS: Record<MetricName, string> = {
  execution: 'execution',
  exact_set_match: 'exact-set-match',
  seed_exact: 'exact string match',
  seed_token: 'token match',
};

function exampleBlock(p: ExamplePair): Block {
  const name = p.id !== undefined ? String(p.id) : p.key;
  const fields: [string, string][] = [
    ['gold', p.gold],
    ['baseline', p.before.pred],
    ['fine-tuned', p.after.pred],
  ];
  const sub = [
    p.db_id,
    p.hardness,
    `token match ${(100 * p.before.seed_token).toFixed(0)}% → ${(100 * p.after.seed_token).toFixed(0)}%`,
  ]
    .filter(Boolean)
    .join(', ');
  return { kind: 'example', title: p.question ? `${name}: ${p.question}` : name, subtitle: sub, fields };
}

function examplesSection(inp: ReportInputs): Block[] {
  if (!inp.baseline || !inp.finetuned) return [];
  const c = changedExamples(inp.baseline, inp.finetuned, inp.examples);
  if (!c) return [];
  const word = METRIC_WORDS[c.metric];
  const blocks: Block[] = [{ kind: 'heading', level: 2, text: 'Examples' }];
  blocks.push({
    kind: 'paragraph',
    inlines: [
      `Right or wrong by ${word}, over the ${c.shared} questions both files have: ${c.fixedCount} went from wrong to right, ${c.brokenCount} from right to wrong.`,
    ],
  });
  const group = (title: string, list: ExamplePair[], total: number): void => {
    if (list.length === 0) return;
    blocks.push({
      kind: 'heading',
      level: 3,
      text: `${title} (${list.length < total ? `${list.length} of ${total}` : total})`,
    });
    blocks.push(...list.map(exampleBlock));
  };
  group('Wrong → right', c.fixed, c.fixedCount);
  group('Right → wrong', c.broken, c.brokenCount);
  if (c.fixedCount === 0 && c.brokenCount === 0) {
    blocks.push({
      kind: 'paragraph',
      inlines: ['No answer changed between right and wrong; these changed most in token match instead.'],
    });
    group('Token match up', c.gained, c.gained.length);
    group('Token match down', c.lost, c.lost.length);
  }
  return blocks;
}

export function buildReport(inp: ReportInputs): { blocks: Block[]; charts: Map<string, string> } {
  if (!inp.run && !inp.baseline && !inp.finetuned && !inp.mmlu)
    throw new UserError('nothing to report: give --run DIR and/or --baseline FILE / --finetuned FILE / --mmlu FILE');
  const blocks: Block[] = [{ kind: 'heading', level: 1, text: TITLE }];
  if (inp.note) blocks.push({ kind: 'note', inlines: [inp.note] });
  blocks.push({ kind: 'paragraph', inlines: sources(inp) });
  blocks.push(...resultsSection(inp, alignResults(inp.baseline, inp.finetuned)));
  const charts = new Map<string, string>();
  if (inp.run) {
    const t = trainingSection(inp.run);
    blocks.push(...t.blocks);
    for (const b of t.blocks) if (b.kind === 'chart') charts.set(b.file, b.svg);
  }
  if (inp.mmlu) {
    const m = mmluSection(inp.mmlu);
    blocks.push(...m);
    for (const b of m) if (b.kind === 'chart') charts.set(b.file, b.svg);
  }
  blocks.push(...timingSection(inp), ...examplesSection(inp));
  return { blocks, charts };
}

/** Writes OUT/report.md, its SVG charts and OUT/report.html. */
export function writeReport(out: string, inp: ReportInputs): WrittenReport {
  const { blocks, charts } = buildReport(inp);
  mkdirSync(out, { recursive: true });
  const markdown = join(out, 'report.md');
  const html = join(out, 'report.html');
  for (const [file, svg] of charts) writeFileSync(join(out, file), svg + '\n');
  writeFileSync(markdown, renderMarkdown(blocks));
  writeFileSync(html, renderHtml(TITLE, blocks));
  return { markdown, html, charts: [...charts.keys()].map((f) => join(out, f)) };
}
