/**
 * `sqlora demo`: the whole pipeline in a minute or two on a laptop CPU with no network —
 * prepare the bundled Spider subset, measure a toy model, train a LoRA adapter, measure again,
 * write the report — by running the real commands in this process, each printed first.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { defaultTokenizerDir } from '../../data/modelFiles.js';
import { BUNDLED_SPIDER_DIR } from '../../demo/assets.js';
import { buildToyModel, TOY_MODEL_DEFAULTS, type ToyModel } from '../../demo/toyModel.js';
import { readResults, readTrainingRun } from '../../report/inputs.js';
import { readMmluResults } from '../../report/mmluSection.js';
import { UserError } from '../../util/errors.js';
import { formatDuration } from '../../util/progress.js';
import { parseCommandArgs, positiveInt, type CommandSpec, type ParsedArgs } from '../args.js';
import { compareSummaries, formatComparison } from './predict.js';

const REAL_MODEL = 'Qwen/Qwen1.5-1.8B-Chat';
/** Sub-folders the demo writes; a rerun replaces them and nothing else. */
const PARTS = ['model', 'prepare', 'baseline', 'train', 'eval', 'mmlu', 'report'] as const;
/** One subject per MMLU category, with short questions: the demo's MMLU check stays a few seconds. */
const MMLU_SUBJECTS = 'abstract_algebra,high_school_geography,marketing,world_religions';
const ALL_PROJECTIONS = 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj';

const STAGE_COMMANDS: Record<string, () => Promise<{ command: CommandSpec }>> = {
  prepare: () => import('./prepare.js'),
  baseline: () => import('./baseline.js'),
  train: () => import('./train.js'),
  eval: () => import('./eval.js'),
  mmlu: () => import('./mmlu.js'),
  report: () => import('./report.js'),
};

export const command: CommandSpec = {
  name: 'demo',
  summary: 'the whole pipeline on a toy model and the bundled Spider subset, on the CPU in a minute or two',
  usage: '[--out DIR] [flags]',
  flags: [
    {
      name: 'out',
      type: 'string',
      metavar: 'DIR',
      default: 'sqlora-demo',
      description: `run folder: ${PARTS.join(', ')} sub-folders (a rerun replaces them)`,
    },
    {
      name: 'train-limit',
      type: 'number',
      metavar: 'N',
      description: "training questions (default: all of the bundled subset's train files)",
    },
    {
      name: 'eval-limit',
      type: 'number',
      metavar: 'N',
      default: 20,
      description: 'dev questions measured before and after training (and for the eval loss)',
    },
    { name: 'epochs', type: 'number', default: 3, description: 'passes over the training questions' },
    { name: 'batch-size', type: 'number', default: 4, description: 'examples per optimizer step' },
    {
      name: 'lr',
      type: 'number',
      default: 1e-2,
      description: 'peak learning rate (a random toy model takes a larger one than a real model)',
    },
    {
      name: 'lora-r',
      type: 'number',
      default: 16,
      description: 'LoRA rank (alpha = 2r), on every projection, attention and MLP',
    },
    { name: 'eval-steps', type: 'number', default: 10, description: 'eval loss every N steps' },
    { name: 'max-new-tokens', type: 'number', default: 48, description: 'tokens generated at most per question' },
    {
      name: 'mmlu-limit',
      type: 'number',
      metavar: 'N',
      default: 5,
      description: 'MMLU questions per subject (4 subjects, one per category) scored before and after training',
    },
    {
      name: 'seed',
      type: 'number',
      default: 42,
      description: "seed of the training run (the toy model's weights are fixed)",
    },
  ],
  details: [
    'The model is a randomly initialized toy Qwen2 decoder built in OUT/model: 2 layers, hidden size 128, with a',
    `${TOY_MODEL_DEFAULTS.merges.toLocaleString('en-US')}-merge tokenizer cut from Qwen1.5's (a full 151,936-token vocabulary makes a CPU training step far too slow).`,
    'It knows no SQL, so its scores stay near zero; the demo shows the pipeline, and that LoRA training moves the loss',
    "and the token-match metric. Prompts use the reference workflow's format (--format seed: no schema).",
    `A real run is the same commands with --model ${REAL_MODEL} on a GPU; the demo prints them at the end.`,
  ].join('\n'),
  run: runDemo,
};

interface Stage {
  name: keyof typeof STAGE_COMMANDS;
  what: string;
  argv: string[];
}

/** Empties the demo's own sub-folders of OUT; refuses a folder holding anything else. */
function prepareOutDir(out: string): void {
  if (!existsSync(out)) return;
  const other = readdirSync(out).filter((f) => !(PARTS as readonly string[]).includes(f));
  if (other.length > 0) {
    throw new UserError(
      `${out} holds files the demo did not write (${other.slice(0, 3).join(', ')}${other.length > 3 ? ', ...' : ''}): choose another --out`,
    );
  }
  for (const part of PARTS) rmSync(join(out, part), { recursive: true, force: true });
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`;
}

function realCommands(): string {
  return [
    'sqlora prepare --spider spider --out data',
    `sqlora baseline --model ${REAL_MODEL} --data data --out runs/baseline`,
    `sqlora train --model ${REAL_MODEL} --data data --out runs/train`,
    `sqlora eval --model ${REAL_MODEL} --adapter runs/train/adapter --data data --out runs/eval --compare runs/baseline/results.json`,
    `sqlora mmlu --model ${REAL_MODEL} --adapter runs/train/adapter --out runs/mmlu/results.json`,
    'sqlora report --run runs/train --baseline runs/baseline/results.json --finetuned runs/eval/results.json --mmlu runs/mmlu/results.json --out runs/report',
  ]
    .map((c) => `  ${c}`)
    .join('\n');
}

function describeModel(m: ToyModel): string {
  const c = m.config;
  return (
    `a randomly initialized toy Qwen2 model (${c.numLayers} layers, hidden size ${c.hiddenSize}, ${m.parameters.toLocaleString('en-US')} parameters, ` +
    `${m.tokenizerSize.toLocaleString('en-US')}-token vocabulary cut from Qwen1.5's tokenizer)`
  );
}

async function runDemo(args: ParsedArgs): Promise<void> {
  const out = args.string('out')!;
  const int = (name: string): number => positiveInt('demo', name, args.number(name));
  const evalLimit = int('eval-limit');
  const batchSize = int('batch-size');
  const loraR = int('lora-r');
  const lr = args.number('lr')!;
  const epochs = args.number('epochs')!;
  if (!(lr > 0) || !(epochs > 0)) throw new UserError('sqlora demo: --lr and --epochs must be positive');
  if (!existsSync(join(BUNDLED_SPIDER_DIR, 'dev.json')))
    throw new UserError(`the bundled Spider subset is missing (${BUNDLED_SPIDER_DIR}): reinstall sqlora`);
  prepareOutDir(out);
  const say = (s: string): void => void process.stdout.write(s + '\n');
  const p = (part: (typeof PARTS)[number]): string => join(out, part);
  const started = Date.now();
  const timings: [string, number][] = [];

  const mmluLimit = int('mmlu-limit');
  say(`[1/7] model: building a toy model in ${p('model')}`);
  let t = Date.now();
  const model = buildToyModel(p('model'), defaultTokenizerDir());
  timings.push(['model', Date.now() - t]);
  say(
    `      ${describeModel(model)}\n      NOT ${REAL_MODEL}: it knows no SQL; the demo shows the pipeline, not a useful model.`,
  );

  const common = ['--model', p('model'), '--data', p('prepare'), '--quantize', 'none', '--device', 'cpu'];
  const generation = [
    '--limit',
    String(evalLimit),
    '--max-new-tokens',
    String(int('max-new-tokens')),
    '--batch-size',
    '10',
  ];
  const note =
    `Demo run: ${describeModel(model)}, trained with LoRA on the CPU on the Spider subset bundled with sqlora. ` +
    `It knows no SQL, so absolute scores are near zero: what the demo shows is the pipeline, and that training moves the loss and the token-match metric. ` +
    `A real run uses --model ${REAL_MODEL} on a GPU.`;
  const stages: Stage[] = [
    {
      name: 'prepare',
      what: `prompts from the bundled Spider subset (${evalLimit} dev questions)`,
      argv: [
        '--spider',
        BUNDLED_SPIDER_DIR,
        '--out',
        p('prepare'),
        '--format',
        'seed',
        '--model',
        p('model'),
        '--train-splits',
        'both',
        '--eval-limit',
        String(evalLimit),
        ...(args.has('train-limit') ? ['--train-limit', String(int('train-limit'))] : []),
      ],
    },
    {
      name: 'baseline',
      what: 'the untrained model answers the dev questions',
      argv: [...common, '--out', p('baseline'), ...generation],
    },
    {
      name: 'train',
      what: 'LoRA fine-tuning on the CPU',
      argv: [
        ...common,
        '--out',
        p('train'),
        '--target-modules',
        ALL_PROJECTIONS,
        '--lora-r',
        String(loraR),
        '--lora-alpha',
        String(2 * loraR),
        '--epochs',
        String(epochs),
        '--batch-size',
        String(batchSize),
        '--grad-accum',
        '1',
        '--lr',
        String(lr),
        '--eval-steps',
        String(int('eval-steps')),
        '--save-steps',
        '0',
        '--seed',
        String(positiveInt('demo', 'seed', args.number('seed'), true)),
      ],
    },
    {
      name: 'eval',
      what: 'the fine-tuned model answers the same questions',
      argv: [
        ...common,
        '--adapter',
        join(p('train'), 'adapter'),
        '--out',
        p('eval'),
        '--compare',
        join(p('baseline'), 'results.json'),
        ...generation,
      ],
    },
    {
      name: 'mmlu',
      what: `general knowledge before and after: ${4 * mmluLimit} MMLU questions of the embedded selection`,
      argv: [
        '--model',
        p('model'),
        '--adapter',
        join(p('train'), 'adapter'),
        '--subjects',
        MMLU_SUBJECTS,
        '--limit',
        String(mmluLimit),
        '--quantize',
        'none',
        '--device',
        'cpu',
        '--out',
        join(p('mmlu'), 'results.json'),
      ],
    },
    {
      name: 'report',
      what: 'markdown + HTML report',
      argv: [
        '--run',
        p('train'),
        '--baseline',
        join(p('baseline'), 'results.json'),
        '--finetuned',
        join(p('eval'), 'results.json'),
        '--mmlu',
        join(p('mmlu'), 'results.json'),
        '--out',
        p('report'),
        '--note',
        note,
      ],
    },
  ];
  for (const [i, stage] of stages.entries()) {
    say(`\n[${i + 2}/7] ${stage.name}: ${stage.what}\n$ sqlora ${stage.name} ${stage.argv.map(shellQuote).join(' ')}`);
    t = Date.now();
    const { command: cmd } = await STAGE_COMMANDS[stage.name]();
    await cmd.run(parseCommandArgs(cmd, stage.argv));
    timings.push([stage.name, Date.now() - t]);
  }

  const before = readResults(join(p('baseline'), 'results.json'), 'baseline').summary;
  const after = readResults(join(p('eval'), 'results.json'), 'eval').summary;
  const { train, eval: evals } = readTrainingRun(p('train'));
  const mmlu = readMmluResults(join(p('mmlu'), 'results.json')).results.summary;
  const seconds = (Date.now() - started) / 1000;
  say(
    [
      '',
      `demo finished in ${formatDuration(seconds)} (${timings.map(([n, ms]) => `${n} ${(ms / 1000).toFixed(1)} s`).join(', ')})`,
      `model: ${describeModel(model)}`,
      `training: ${train.length} steps, train loss ${train[0].loss.toFixed(2)} -> ${train[train.length - 1].loss.toFixed(2)}` +
        (evals.length > 0
          ? `, eval loss ${evals[0].eval_loss.toFixed(2)} (step ${evals[0].step}) -> ${evals[evals.length - 1].eval_loss.toFixed(2)} (step ${evals[evals.length - 1].step})`
          : ''),
      `before -> after training, ${after.overall.count} dev questions (%):`,
      formatComparison(compareSummaries(before.overall, after.overall)).replace(/\n$/, ''),
      `MMLU, ${mmlu.overall.questions} questions: ${mmlu.verdict?.line ?? ''}`,
      `report: ${join(p('report'), 'report.html')} (and report.md)`,
      '',
      'A randomly initialized toy model knows no SQL, so its absolute scores are near zero. What the demo shows is the',
      'pipeline running end to end, and training moving the loss and the token-match metric.',
      `The real thing: the full Spider folder (spider/) and ${REAL_MODEL} on an NVIDIA GPU (found and used by default),`,
      "with the reference workflow's settings (NF4 base, LoRA r=16 on q,k,v,o, 5 epochs, 3,500 train and 200 dev questions;",
      'add --format seed to prepare for its prompt):',
      realCommands(),
    ].join('\n') + '\n',
  );
}
