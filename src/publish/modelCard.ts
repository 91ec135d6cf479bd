/**
 * The README.md model card of a published adapter: YAML front matter as the Hub's model card
 * metadata spec reads it (base_model + library_name: peft make the Hub list it as an adapter of
 * the base; model-index puts the Spider scores on the model page) and a body for people: what
 * the model does, its prompt format, training data and settings, results before/after by
 * hardness, the MMLU check, the loss curve, usage and limitations. Deterministic (no dates), so
 * a rerun on the same inputs yields the same bytes and uploads nothing.
 */
import type { LoraConfig } from '../lora/lora.js';
import type { PromptRecord } from '../data/records.js';
import { alignResults, metricRows, type MetricName } from '../report/compare.js';
import type { ResultsFile, TrainingRun } from '../report/inputs.js';
import { formatSeconds } from '../report/report.js';
import type { MmluResults, MmluScore } from './mmluResults.js';
import type { PublishedExports } from './publishExports.js';
import { fence, modelName, usageSection } from './cardUsage.js';
import { toYaml, type YamlValue } from './yaml.js';
import { SPIDER, type CardDataset } from './cardDataset.js';

export interface PromptExample {
  /** `sqlora prepare --format`, when known. */
  format: string | null;
  record: Pick<PromptRecord, 'db_id' | 'question' | 'query' | 'messages' | 'prompt'>;
}

export interface ModelCardInputs {
  repo: string;
  /** The base model's Hub id. */
  baseModel: string;
  /** A Hub license id (apache-2.0, mit, other...); null: the base model's license applies. */
  license: string | null;
  lora: LoraConfig;
  run: TrainingRun;
  /** The loss chart's path in the repo, when there is one. */
  lossChart: string | null;
  example: PromptExample | null;
  finetuned: ResultsFile | null;
  baseline: ResultsFile | null;
  mmlu: MmluResults | null;
  /** The merged model and GGUF of --with, when included. */
  exports?: Omit<PublishedExports, 'files'>;
  /** Every file of the repo folder, README.md included. */
  files: string[];
  /** What the run trained on and what the results scored (cardDatasets); default: Spider. */
  datasets?: { train: CardDataset; eval: CardDataset };
}

const CARD_METRICS: readonly { name: MetricName; type: string; label: string }[] = [
  { name: 'execution', type: 'execution_accuracy', label: 'Execution accuracy' },
  { name: 'exact_set_match', type: 'exact_set_match', label: 'Exact-set-match' },
];

const trainSet = (inp: ModelCardInputs): CardDataset => inp.datasets?.train ?? SPIDER;
const evalSet = (inp: ModelCardInputs): CardDataset => inp.datasets?.eval ?? SPIDER;

const round2 = (v: number): number => Math.round(v * 100) / 100;
const pct = (v: number | null | undefined): string => (v === null || v === undefined ? '—' : v.toFixed(2));
const int = (v: number): string => v.toLocaleString('en-US');
const signed = (d: number): string => `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}`;

/** The front matter, as an object in the order it is written. */
export function cardMetadata(inp: ModelCardInputs): { [key: string]: YamlValue | undefined } {
  const license: { [key: string]: YamlValue } =
    inp.license !== null && inp.license !== 'other'
      ? { license: inp.license }
      : {
          license: 'other',
          license_name: 'base-model-license',
          license_link: `https://huggingface.co/${inp.baseModel}`,
        };
  const f = inp.finetuned;
  const train = trainSet(inp);
  const scored = evalSet(inp);
  const metrics = f
    ? CARD_METRICS.filter((m) => scored.metrics.includes(m.name) && f.summary.overall[m.name] !== null).map((m) => ({
        type: m.type,
        value: round2(f.summary.overall[m.name]!.pct),
        name: m.label,
        verified: false,
      }))
    : [];
  return {
    base_model: inp.baseModel,
    library_name: 'peft',
    ...license,
    datasets: train.hubId !== null ? [train.hubId] : undefined,
    language: ['en'],
    pipeline_tag: 'text-generation',
    tags: [
      'text-to-sql',
      'sql',
      ...(train.tag !== null ? [train.tag] : []),
      'lora',
      'peft',
      ...(quantized(inp.run) ? ['qlora'] : []),
      ...(inp.exports?.gguf ? ['gguf'] : []),
      'sqlora',
    ],
    'model-index':
      metrics.length > 0
        ? [
            {
              name: modelName(inp.repo),
              results: [
                {
                  task: { type: 'text-generation', name: 'Text-to-SQL' },
                  dataset: {
                    name: `${scored.evalName} (${f!.summary.overall.count} questions)`,
                    type: scored.indexType,
                    split: 'validation',
                  },
                  metrics,
                },
              ],
            },
          ]
        : undefined,
  };
}

function quantized(run: TrainingRun): boolean {
  return run.summary?.settings?.quantize === 'nf4';
}

export function renderModelCard(inp: ModelCardInputs): string {
  const parts = [
    `---\n${toYaml(cardMetadata(inp))}---\n`,
    intro(inp),
    resultsSection(inp),
    mmluSection(inp.mmlu),
    promptSection(inp.example),
    trainingSection(inp),
    usageSection(inp),
    limitations(inp),
    `## Files\n\n${inp.files.map((f) => `- \`${f}\``).join('\n')}\n`,
  ];
  return parts.filter((p) => p !== '').join('\n');
}

function intro(inp: ModelCardInputs): string {
  const s = inp.run.summary;
  const examples = s?.data?.train_examples;
  const method = quantized(inp.run) ? 'QLoRA (LoRA on the NF4-quantized base)' : 'LoRA';
  const lines = [
    `# ${modelName(inp.repo)}`,
    '',
    `A LoRA adapter for [${inp.baseModel}](https://huggingface.co/${inp.baseModel}) that writes the SQLite query answering a ` +
      `question about a database (Text-to-SQL). It was fine-tuned with ${method}` +
      trainSet(inp).trainedOn(examples !== undefined ? int(examples) : undefined) +
      ' by [sqlora](https://www.npmjs.com/package/sqlora), a TypeScript QLoRA toolkit; the files are the ones PEFT writes, so it loads in Python PEFT as is.',
  ];
  const { merged, gguf } = inp.exports ?? {};
  const extras = [
    merged
      ? `\`${merged.folder}/\`, the adapter merged into the base (${merged.dtype}), for transformers and vLLM without PEFT`
      : '',
    gguf
      ? `\`${gguf.file}\` (${gguf.quant.toUpperCase()}), the merged model for llama.cpp and Ollama, with its \`${gguf.modelfile}\``
      : '',
  ].filter(Boolean);
  if (extras.length > 0) lines.push('', `Also in this repo: ${extras.join('; ')}.`);
  const f = inp.finetuned?.summary.overall;
  if (f?.execution) {
    const b = inp.baseline?.summary.overall.execution;
    lines.push(
      '',
      `On ${evalSet(inp).evalQuestions(int(f.count))} its execution accuracy is **${pct(f.execution.pct)}%**` +
        (b ? ` (the base model: ${pct(b.pct)}%)` : '') +
        '.',
    );
  }
  return lines.join('\n') + '\n';
}

function resultsSection(inp: ModelCardInputs): string {
  const { baseline: b, finetuned: f } = inp;
  if (!f) return '';
  const scored = evalSet(inp);
  const al = alignResults(b, f);
  const hasDb = f.summary.overall.execution !== null || f.summary.overall.exact_set_match !== null;
  const wanted: readonly MetricName[] = hasDb ? scored.metrics : ['seed_exact', 'seed_token'];
  const rows = metricRows(al).filter((r) => wanted.includes(r.metric) && (scored.levels || r.level === 'overall'));
  const header = ['Level', 'Questions', 'Metric', ...(b ? ['Base %'] : []), 'Fine-tuned %', ...(b ? ['Change'] : [])];
  const lines = [
    '## Results',
    '',
    scored.resultsLead(al.after?.overall.count ?? f.summary.overall.count) +
      (b ? `; the base model is ${inp.baseModel} without the adapter, the change is in percentage points` : '') +
      '.' +
      (al.restricted
        ? ` The two results files scored different questions: both are recomputed over the ${al.restricted.shared} they share.`
        : ''),
    '',
    `| ${header.join(' | ')} |`,
    `| ${header.map((h) => (['Level', 'Metric'].includes(h) ? '---' : '---:')).join(' | ')} |`,
  ];
  let last = '';
  for (const r of rows) {
    const first = r.level !== last;
    last = r.level;
    const count = r.count.after ?? r.count.before;
    lines.push(
      `| ${first ? r.level : ''} | ${first && count !== null ? count : ''} | ${r.label} | ${b ? `${pct(r.before)} | ` : ''}${pct(r.after)}${b ? ` | ${r.delta === null ? '—' : signed(r.delta)}` : ''} |`,
    );
  }
  lines.push(
    '',
    hasDb
      ? scored.metricNote
      : "Exact string match and token match: the reference workflow's lower-cased string metrics (no databases were given to the evaluation).",
  );
  return lines.join('\n') + '\n';
}

function mmluSection(m: MmluResults | null): string {
  if (!m) return '';
  const hasBase = m.overall.base !== undefined || m.categories.some((c) => c.base);
  const hasAdapter = m.overall.adapter !== undefined || m.categories.some((c) => c.adapter);
  const cell = (s: MmluScore | undefined): string => (s ? pct(s.pct) : '—');
  const change = (r: { base?: MmluScore; adapter?: MmluScore }): string =>
    r.base && r.adapter ? signed(r.adapter.pct - r.base.pct) : '—';
  const header = ['Category', ...(hasBase ? ['Base %'] : []), ...(hasAdapter ? ['With adapter %'] : [])];
  if (hasBase && hasAdapter) header.push('Change');
  const lines = [
    '## General knowledge (MMLU)',
    '',
    `Whether SQL fine-tuning made the model forget: MMLU accuracy${m.questions !== undefined ? ` on ${int(m.questions)} questions` : ''}, scored as lm-evaluation-harness does, by \`sqlora mmlu\`.`,
  ];
  const rows = [m.overall, ...m.categories].filter((r) => r.base || r.adapter);
  if (rows.length > 0) {
    lines.push('', `| ${header.join(' | ')} |`, `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`);
    for (const r of rows) {
      const cells = [r.name, ...(hasBase ? [cell(r.base)] : []), ...(hasAdapter ? [cell(r.adapter)] : [])];
      if (hasBase && hasAdapter) cells.push(change(r));
      lines.push(`| ${cells.join(' | ')} |`);
    }
  }
  if (m.verdict) lines.push('', `**Verdict:** ${m.verdict}`);
  return lines.join('\n') + '\n';
}

const FORMATS: Record<string, string> = {
  seed: "the database's name and the question, without its schema (the reference workflow's prompt)",
  schema:
    "the database's tables as SQLite `CREATE TABLE` statements (with sample rows where they fit a token budget) and the question",
};

function promptSection(ex: PromptExample | null): string {
  if (!ex) return '';
  const r = ex.record;
  const answer = r.messages.find((m) => m.role === 'assistant')?.content ?? r.query;
  const what = ex.format !== null && FORMATS[ex.format] ? `: ${FORMATS[ex.format]}` : '';
  return (
    [
      '## Prompt format',
      '',
      `A system message, then a user message with ${what ? what.slice(2) : 'the database and the question'}; the model answers with the SQL query alone. ` +
        "Rendered with the base model's chat template, an example from the evaluation set" +
        ` (database \`${r.db_id}\`) reads:`,
      '',
      fence(r.prompt),
      '',
      'and the expected answer is:',
      '',
      fence(answer, 'sql'),
      '',
      'Use the same system message and layout for new questions: the adapter was trained on exactly this format.',
    ].join('\n') + '\n'
  );
}

const SETTING_ROWS: readonly [string, string][] = [
  ['quantize', 'Base weights'],
  ['epochs', 'Epochs'],
  ['batch-size', 'Batch size'],
  ['grad-accum', 'Gradient accumulation'],
  ['lr', 'Peak learning rate'],
  ['warmup-ratio', 'Warmup ratio'],
  ['weight-decay', 'Weight decay'],
  ['max-grad-norm', 'Gradient clipping (norm)'],
  ['max-length', 'Max tokens per example'],
  ['seed', 'Seed'],
];

function trainingSection(inp: ModelCardInputs): string {
  const { run, lora } = inp;
  const s = run.summary;
  const set = s?.settings ?? {};
  const rows: [string, string][] = [
    ['Base model', inp.baseModel],
    [
      'Adapter',
      `LoRA on ${lora.targetModules.join(', ')}, r=${lora.r}, alpha=${lora.alpha}, dropout ${lora.dropout}${lora.useRslora ? ', rsLoRA scaling' : ''}` +
        (s?.trainable_params !== undefined ? ` (${int(s.trainable_params)} trainable parameters)` : ''),
    ],
  ];
  if (s?.data?.train_examples !== undefined)
    rows.push([
      'Data',
      `${trainSet(inp).trainExamples(int(s.data.train_examples))}${s.data.eval_examples ? `, ${int(s.data.eval_examples)} for the eval loss` : ''}` +
        (s.data.truncated ? ` (${s.data.truncated} cut at the max length)` : ''),
    ]);
  for (const [flag, label] of SETTING_ROWS) {
    const v = set[flag];
    if (v === undefined || v === null || (flag === 'quantize' && typeof v !== 'string')) continue;
    rows.push([
      label,
      flag === 'quantize'
        ? v === 'nf4'
          ? 'NF4 4-bit (QLoRA), double quantization'
          : v === 'none'
            ? 'unquantized (LoRA on the stored weights)'
            : String(v)
        : String(v),
    ]);
  }
  if (set['loss-on-prompt'] !== undefined)
    rows.push([
      'Loss on',
      set['loss-on-prompt']
        ? 'the whole sequence, prompt included'
        : 'the answer and its end-of-turn token only (prompt masked)',
    ]);
  rows.push(['Optimizer', 'AdamW, cosine schedule with linear warmup']);
  if (s?.steps?.total !== undefined) rows.push(['Steps', `${int(s.steps.total)} optimizer steps`]);
  const last = run.train[run.train.length - 1];
  if (last)
    rows.push([
      'Train loss',
      `${run.train[0].loss.toFixed(4)} at step ${run.train[0].step} → ${last.loss.toFixed(4)} at step ${last.step}`,
    ]);
  if (run.eval.length > 0) {
    const best = run.eval.reduce((a, e) => (e.eval_loss < a.eval_loss ? e : a));
    rows.push([
      'Eval loss',
      `${run.eval[run.eval.length - 1].eval_loss.toFixed(4)} at the end (best ${best.eval_loss.toFixed(4)} at step ${best.step})`,
    ]);
  }
  if (s?.train_seconds !== undefined)
    rows.push([
      'Training time',
      `${formatSeconds(s.train_seconds)}${s.tokens_per_s ? `, ${int(Math.round(s.tokens_per_s))} tokens/s` : ''}${typeof set.device === 'string' ? ` (device: ${set.device})` : ''}`,
    ]);
  const lines = [
    '## Training',
    '',
    '| | |',
    '| --- | --- |',
    ...rows.map(([k, v]) => `| ${k} | ${v.replaceAll('|', '\\|')} |`),
  ];
  if (inp.lossChart) lines.push('', `![Train and eval loss by step](${inp.lossChart})`);
  lines.push('', '`training_summary.json` and `metrics.jsonl` (one record per step) hold every figure of the run.');
  return lines.join('\n') + '\n';
}

function limitations(inp: ModelCardInputs): string {
  const scored = evalSet(inp);
  const items = [
    scored.scope,
    'The SQL it writes can be wrong while looking right: check results, and run generated queries on a read-only connection (it never should, but may, write a modifying statement).',
    `Scores are for the ${scored.evalName} questions named in Results${inp.finetuned ? ` (${inp.finetuned.summary.overall.count})` : ''}, one greedy answer each; they say little about ${scored.unlike}.`,
    inp.license === null || inp.license === 'other'
      ? `The base model's license and limitations apply to this adapter: see [${inp.baseModel}](https://huggingface.co/${inp.baseModel}).`
      : `The base model's limitations apply; see [${inp.baseModel}](https://huggingface.co/${inp.baseModel}).`,
  ];
  if (inp.example?.format === 'seed')
    items.unshift(
      'Its prompt names the database but not its schema: the model can only guess table and column names it saw in training, so it does not carry over to new databases.',
    );
  return ['## Limitations', '', ...items.map((i) => `- ${i}`)].join('\n') + '\n';
}
