import { datasetOf } from '../../report/dataset.js';
import { positiveInt, type CommandSpec, type ParsedArgs } from '../args.js';
import { checkGoldErrors, scoringFlags, scoringInputs } from './scoring.js';
import { exitOnInterrupt } from '../../util/interrupt.js';
import { checkWritableFile, writeFileAtomic } from '../../util/outputs.js';
import { UserError, describeError } from '../../util/errors.js';
import { evaluatePredictions, formatSummaryTable } from '../../eval/evaluate.js';
import { PostgresExecutor } from '../../serve/postgresExecutor.js';
import { PREDICTION_FORMATS, loadEvalItems, type PredictionFormat } from '../../eval/predictions.js';

export const command: CommandSpec = {
  name: 'evaluate',
  summary: 'score predictions against gold: seed metrics, exact-set-match, execution (Spider), BIRD execution',
  usage: '--pred FILE [--gold FILE] [--spider DIR] [flags]',
  flags: [
    {
      name: 'pred',
      type: 'string',
      metavar: 'FILE',
      description:
        'predictions: JSONL {"id","sql"} lines, one SQL per line (the official format), a results JSON with detailed_results[] (the reference workflow\'s), or BIRD\'s predict_dev.json',
    },
    {
      name: 'gold',
      type: 'string',
      metavar: 'FILE',
      description:
        "gold: eval.jsonl from sqlora prepare (matched by id), a gold.sql of SQL<TAB>db_id lines a Spider split JSON or BIRD's dev.json (matched by position); not used with a results JSON",
    },
    {
      name: 'pred-format',
      type: 'string',
      choices: PREDICTION_FORMATS,
      default: 'auto',
      description: 'format of --pred; auto goes by extension (.json results, .jsonl) and content',
    },
    ...scoringFlags(
      'Spider folder: database/ (execution, hardness) and tables.json (exact-set-match); with neither it nor --db-dir only the seed metrics are computed',
    ),
    { name: 'limit', type: 'number', metavar: 'N', description: 'evaluate only the first N examples' },
    {
      name: 'keep-distinct',
      type: 'boolean',
      description: 'compare results with DISTINCT kept (the official script drops it from both queries by default)',
    },
    { name: 'out', type: 'string', metavar: 'FILE', description: 'write per-example results and the summary as JSON' },
    { name: 'json', type: 'boolean', description: 'print the summary as JSON only (no table, no progress)' },
  ],
  details: [
    'Metrics, per example and per Spider hardness (easy, medium, hard, extra):',
    "  seed_exact / seed_token  the reference workflow's string metrics (lower-cased, whitespace collapsed,",
    '                           trailing ";" stripped; exact equality / share of gold tokens present)',
    "  exact_set_match          Spider's official component match (needs --spider or --db-dir + --tables)",
    '  execution                same result rows as gold, official test-suite semantics (needs databases):',
    '                           columns may be reordered, row order counts only if gold has ORDER BY',
    "BIRD gold (eval.jsonl of prepare --bird, or BIRD's dev.json) is scored by BIRD's own rule instead, per difficulty",
    '(simple, moderate, challenging): the same set of result rows, column order counting, no query rewriting.',
    'Your own pairs (prepare --pairs) run on their own database files, with no Spider hardness or exact-set-match.',
    'Predictions run read-only, one statement each, under --timeout; a write, an error or a timeout is a wrong',
    'prediction with its reason in --out. Examples:',
    '  sqlora evaluate --pred runs/eval/predictions.jsonl --gold data/eval.jsonl --spider spider --out results.json',
    '  sqlora evaluate --pred pred.sql --gold spider/dev_gold.sql --spider spider',
    '  sqlora evaluate --pred finetuned_results.json            (seed metrics only)',
    '  sqlora evaluate --pred predict_dev.json --gold bird/dev/dev.json --db-dir bird/dev/dev_databases',
  ].join('\n'),
  run: runEvaluate,
};

async function runEvaluate(args: ParsedArgs): Promise<void> {
  const predPath = args.required('pred');
  const goldPath = args.string('gold');
  const { dbDir, tablesPath, timeoutMs, workers, allowGoldErrors } = scoringInputs(args);
  const limit = args.has('limit') ? positiveInt('evaluate', 'limit', args.number('limit')) : undefined;
  const json = args.boolean('json');
  const out = args.string('out');
  if (out !== undefined) checkWritableFile(out, '--out');

  const items = loadEvalItems({ predPath, goldPath, format: args.string('pred-format') as PredictionFormat, limit });
  const started = Date.now();
  const stopHandling = exitOnInterrupt(
    () =>
      `nothing was written${out !== undefined ? ` (${out} is written when scoring completes)` : ''}; run the same command again`,
  );
  let report: Awaited<ReturnType<typeof evaluatePredictions>>;
  // Pairs on PostgreSQL (a db_path URL) connect on first use; nothing opens otherwise.
  const postgres = new PostgresExecutor();
  try {
    report = await evaluatePredictions(items, {
      dbDir,
      tablesPath,
      timeoutMs,
      workers,
      keepDistinct: args.boolean('keep-distinct'),
      progress: !json,
      postgres,
    });
  } finally {
    await postgres.close();
    stopHandling();
  }
  const seconds = (Date.now() - started) / 1000;
  const meta = {
    pred: predPath,
    gold: goldPath ?? null,
    db_dir: dbDir ?? null,
    tables: tablesPath ?? null,
    timeout_s: timeoutMs / 1000,
    keep_distinct: args.boolean('keep-distinct'),
    count: items.length,
    seconds,
    dataset: goldPath !== undefined ? datasetOf(goldPath) : null,
  };

  // Written beside, then renamed: an interrupted write never leaves half a results file. A write
  // that fails anyway (the disk filled up meanwhile) still lets the summary be printed first.
  let writeError: UserError | null = null;
  if (out !== undefined) {
    try {
      writeFileAtomic(
        out,
        JSON.stringify({ meta, summary: report.summary, examples: report.examples }, null, 1) + '\n',
      );
    } catch (err) {
      writeError = new UserError(`cannot write ${out}: ${describeError(err)} (the summary above is all that was kept)`);
    }
  }
  const written = writeError ? undefined : out;
  if (json) {
    process.stdout.write(JSON.stringify({ meta, summary: report.summary }, null, 2) + '\n');
    if (writeError) throw writeError;
    checkGoldErrors(report, allowGoldErrors, written);
    return;
  }
  const failed = report.examples.filter((e) => e.error !== undefined).length;
  const lines = [
    `evaluated ${items.length} examples of ${predPath} in ${seconds.toFixed(1)} s`,
    '',
    formatSummaryTable(report.summary),
  ];
  if (dbDir === undefined && !items.some((it) => it.db_path !== undefined))
    lines.push('exact-set-match and execution need the databases: pass --spider DIR');
  if (failed)
    lines.push(
      `${failed} examples have an error (a query that failed, was rejected or timed out, or SQL the parser could not read)${out ? `: see "error" in ${out}` : '; --out FILE lists them'}`,
    );
  if (written !== undefined) lines.push(`wrote ${written}`);
  process.stdout.write(lines.join('\n') + '\n');
  if (writeError) throw writeError;
  checkGoldErrors(report, allowGoldErrors, written);
}
