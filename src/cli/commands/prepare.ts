import type { CommandSpec } from '../args.js';
import { prepareDataset } from '../../data/prepareDataset.js';
import { defaultTokenizerDir } from '../../data/modelFiles.js';
import { resolveModel } from '../../hub/download.js';
import { PROMPT_FORMATS, type PromptFormat } from '../../data/prompts.js';
import { TRAIN_SPLITS, type TrainSplits } from '../../data/spider.js';
import { SPLIT_BY, type SplitBy } from '../../data/pairsChecks.js';
import { isPostgresUrl } from '../../eval/postgresUrl.js';
import { PostgresExecutor } from '../../serve/postgresExecutor.js';

export const command: CommandSpec = {
  name: 'prepare',
  summary: 'Spider (folder or HF parquet), BIRD or your own question/SQL pairs -> train/eval prompts as JSONL',
  usage:
    '(--spider DIR | --parquet DIR --db-dir DIR | --bird DIR | --pairs FILE [--db-dir DIR | --db FILE]) [--out DIR] [flags]',
  flags: [
    {
      name: 'spider',
      type: 'string',
      metavar: 'DIR',
      description:
        'Spider in the official layout (dev.json, train_spider.json, train_others.json, tables.json, database/); with --parquet, only its databases are used',
    },
    {
      name: 'parquet',
      type: 'string',
      metavar: 'DIR',
      description:
        'the Hugging Face dataset xlangai/spider as downloaded (spider/train-*.parquet, spider/validation-*.parquet)',
    },
    {
      name: 'bird',
      type: 'string',
      metavar: 'DIR',
      description:
        "BIRD in its release layout (train/train.json, train/train_databases/, dev/dev.json, dev/dev_databases/); evaluate then scores it by BIRD's rules",
    },
    {
      name: 'pairs',
      type: 'string',
      metavar: 'FILE',
      description:
        'your own question/SQL pairs: .jsonl or .csv with question, sql, db_id or db_path (relative to FILE), evidence (optional)',
    },
    {
      name: 'db',
      type: 'string',
      metavar: 'FILE|URL',
      description:
        '--pairs: one SQLite file, or one PostgreSQL URL (password from the URL or PGPASSWORD; never written), for every row',
    },
    {
      name: 'eval-pairs',
      type: 'string',
      metavar: 'FILE',
      description: '--pairs: evaluation pairs of their own (same columns) instead of a split drawn from --pairs',
    },
    {
      name: 'eval-fraction',
      type: 'number',
      metavar: 'F',
      default: 0.1,
      description: '--pairs: share of the pairs drawn for eval, seeded by --seed',
    },
    {
      name: 'split-by',
      type: 'string',
      metavar: 'WHAT',
      default: 'row',
      choices: SPLIT_BY,
      description:
        '--pairs: draw eval by row, or by database (no database in both splits: the setting for unseen databases)',
    },
    {
      name: 'evidence',
      type: 'boolean',
      default: true,
      description:
        "BIRD: show each question's evidence (external knowledge) in the prompt; --no-evidence leaves it out",
    },
    {
      name: 'db-dir',
      type: 'string',
      metavar: 'DIR',
      description:
        'SQLite databases for --parquet (a Spider folder or its database/ folder) or --pairs (<db_id>/<db_id>.sqlite or <db_id>.sqlite)',
    },
    {
      name: 'out',
      type: 'string',
      metavar: 'DIR',
      default: 'data',
      description: 'where train.jsonl, eval.jsonl, dataset.json and README.md (the dataset card) go',
    },
    {
      name: 'format',
      type: 'string',
      metavar: 'NAME',
      default: 'schema',
      choices: PROMPT_FORMATS,
      description:
        "prompt format: schema = CREATE TABLE statements + question; seed = the reference workflow's prompt (database name only), byte for byte",
    },
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description:
        "model folder or Hub repo id whose tokenizer.json and chat template are used (only those files are downloaded; default: the bundled Qwen1.5 tokenizer, identical to Qwen/Qwen1.5-1.8B-Chat's)",
    },
    {
      name: 'train-limit',
      type: 'number',
      default: 3500,
      description: 'training examples to take (all when larger than the split)',
    },
    { name: 'eval-limit', type: 'number', default: 200, description: 'evaluation examples to take from dev' },
    {
      name: 'shuffle',
      type: 'boolean',
      description: 'take a seeded random subset instead of the first N (kept in file order)',
    },
    {
      name: 'seed',
      type: 'number',
      default: 42,
      description: 'seed of --shuffle (train uses N, eval N+1) and of the --pairs split',
    },
    {
      name: 'train-splits',
      type: 'string',
      metavar: 'WHICH',
      default: 'spider',
      choices: TRAIN_SPLITS,
      description: 'training files: train_spider.json, train_others.json or both (in that order)',
    },
    {
      name: 'sample-rows',
      type: 'number',
      metavar: 'K',
      default: 0,
      description: 'schema format: first K rows of each table as INSERT statements',
    },
    {
      name: 'max-prompt-tokens',
      type: 'number',
      default: 448,
      description:
        'token budget of a rendered prompt (448 leaves room for the answer within train --max-length 512); the schema format drops sample rows, then the tables least related to the question, to fit',
    },
  ],
  details: [
    'Each record: id (dev-0, train-12: index in the source file), db_id, question, query, hardness,',
    "messages (system/user/assistant), text (whole chat, rendered by the model's chat template) and",
    'prompt (the chat up to the answer, a prefix of text). dataset.json has counts, options, token',
    'length percentiles (p50/p90/p99/max) and hardness counts; README.md is the same card for people',
    '(source, counts, format with one example, token lengths, license: Spider is CC BY-SA 4.0).',
    '',
    '--bird: records add evidence and difficulty (dev); ids are dev-<question_id> and train-<index>; dataset.json',
    "counts difficulties instead of Spider's hardness. --pairs: records add db_path; before anything is written",
    'the gold SQL of every pair is run (failures kept out with their error), exact duplicates are dropped, and a',
    'train question asked of the same database in eval is removed from train; all three are listed on stderr and',
    'in dataset.json "checks". Spider hardness is not computed for BIRD or your own pairs.',
    '--pairs --db postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=a,b]: schema and sample rows from the catalog,',
    'prompts naming PostgreSQL, gold SQL checked read-only on the server; db_path is the URL without its password',
    '(evaluate, baseline and eval connect with PGPASSWORD), and dataset.json records dialect postgresql.',
    '',
    'Shuffling uses a Fisher-Yates shuffle driven by mulberry32(seed): the same seed gives the same',
    "subset on every machine. Trimming relevance: question words found in a table's name (x2) and",
    'column names, plus a bonus for tables linked by a foreign key to a matching one.',
  ].join('\n'),
  async run(args) {
    const db = args.string('db');
    const postgres = db !== undefined && isPostgresUrl(db) ? new PostgresExecutor([db]) : undefined;
    const card = await prepareDataset({
      spider: args.string('spider'),
      parquet: args.string('parquet'),
      bird: args.string('bird'),
      evidence: args.boolean('evidence'),
      pairs: args.string('pairs'),
      db,
      postgres,
      evalPairs: args.string('eval-pairs'),
      evalFraction: args.number('eval-fraction') as number,
      splitBy: args.string('split-by') as SplitBy,
      dbDir: args.string('db-dir'),
      out: args.string('out') as string,
      format: args.string('format') as PromptFormat,
      modelDir: args.has('model')
        ? (await resolveModel(args.required('model'), { skipWeights: true })).dir
        : defaultTokenizerDir(),
      trainLimit: args.number('train-limit') as number,
      evalLimit: args.number('eval-limit') as number,
      shuffle: args.boolean('shuffle'),
      seed: args.number('seed') as number,
      trainSplits: args.string('train-splits') as TrainSplits,
      sampleRows: args.number('sample-rows') as number,
      maxPromptTokens: args.number('max-prompt-tokens') as number,
    }).finally(() => postgres?.close());
    const out = args.string('out') as string;
    const over = card.train.over_budget + card.eval.over_budget;
    process.stderr.write(
      `wrote ${out}/train.jsonl (${card.train.count}), ${out}/eval.jsonl (${card.eval.count}), ${out}/dataset.json, ${out}/README.md; ` +
        `prompt tokens p50/max: train ${card.train.tokens.prompt.p50}/${card.train.tokens.prompt.max}, eval ${card.eval.tokens.prompt.p50}/${card.eval.tokens.prompt.max}` +
        (over > 0 ? `; ${over} prompts over --max-prompt-tokens ${card.options.max_prompt_tokens}` : '') +
        '\n',
    );
  },
};
