import { mmluEvaluate } from '../../eval/mmlu.js';
import { formatSummary } from '../../eval/mmluSummary.js';
import { UserError } from '../../util/errors.js';
import { positiveInt, type CommandSpec } from '../args.js';
import { loadModel } from '../../api/load.js';
import { deviceFlag, quantizeFlag } from './engine.js';

export const command: CommandSpec = {
  name: 'mmlu',
  summary: "MMLU accuracy (lm-evaluation-harness's semantics) of a model, or base vs adapter with a verdict",
  usage: '[--model DIR|HUB_ID] [--adapter DIR] [--data DIR] [--subjects LIST] [--limit N] [--shots 0|5] [flags]',
  flags: [
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description: "model folder or Hugging Face repo id (default: the adapter's base model)",
    },
    {
      name: 'adapter',
      type: 'string',
      metavar: 'DIR',
      description: 'PEFT LoRA adapter: scores the base and the adapted model in one run, with the verdict',
    },
    {
      name: 'data',
      type: 'string',
      metavar: 'DIR',
      description:
        'MMLU folder: the original CSVs (test/, dev/ or data/test/, data/dev/) or cais/mmlu parquet (all/ or one folder per subject); default: the embedded selection',
    },
    {
      name: 'subjects',
      type: 'string',
      metavar: 'LIST',
      description: 'comma-separated subjects (e.g. anatomy,virology); default all',
    },
    { name: 'limit', type: 'number', metavar: 'N', description: 'at most N test questions per subject (file order)' },
    { name: 'shots', type: 'number', default: 0, description: "0 or 5: the subject's first dev questions as examples" },
    {
      name: 'batch-size',
      type: 'number',
      default: 0,
      description: 'questions per forward pass (0 = by a token budget: wide on a GPU, small on the CPU)',
    },
    quantizeFlag('nf4'),
    deviceFlag(),
    {
      name: 'out',
      type: 'string',
      metavar: 'FILE',
      default: 'mmlu-results.json',
      description: 'results JSON; per-question results are appended to FILE.progress.jsonl as they come',
    },
    { name: 'json', type: 'boolean', description: 'print only the results JSON on stdout' },
  ],
  details: [
    'Prompts, continuations (" A".."D") and tokenization are lm-evaluation-harness\'s mmlu task; the prediction',
    'is the letter of highest log-likelihood. Accuracy is the micro average (overall, per category, per subject).',
    "With --adapter: the paired 95% bootstrap interval of the difference, McNemar's exact p, and a verdict line.",
    'Ctrl-C keeps what was scored: the same command continues where it stopped.',
    'Example:',
    '  sqlora mmlu --model Qwen/Qwen1.5-1.8B-Chat --adapter runs/train/adapter --data mmlu --shots 5 --out runs/mmlu.json',
  ].join('\n'),
  async run(args) {
    const shots = positiveInt('mmlu', 'shots', args.number('shots'), true);
    if (shots !== 0 && shots !== 5) throw new UserError(`sqlora mmlu: --shots must be 0 or 5, got ${shots}`);
    const subjects = args
      .string('subjects')
      ?.split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const limit = args.has('limit') ? positiveInt('mmlu', 'limit', args.number('limit')) : undefined;
    const batchSize = positiveInt('mmlu', 'batch-size', args.number('batch-size'), true);
    const json = args.boolean('json');
    const quantize = args.string('quantize')!;
    const device = args.string('device')!;
    const loaded = await loadModel({ model: args.string('model'), adapter: args.string('adapter'), device, quantize });
    const out = args.string('out')!;
    const results = await mmluEvaluate({
      model: loaded.model,
      tokenizer: loaded.tokenizer,
      adapter: loaded.adapter,
      modelName: loaded.source,
      adapterName: args.string('adapter') ?? null,
      data: args.string('data'),
      subjects,
      limit,
      shots,
      batchSize,
      quantize,
      device,
      out,
      quiet: json,
    });
    if (json) process.stdout.write(JSON.stringify(results) + '\n');
    else process.stdout.write(formatSummary(results) + `wrote ${out}\n`);
  },
};
