import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate } from '../../data/chatTemplate.js';
import { PROMPT_SETTINGS_FILE, promptSettingsFromDataset, promptSettingsJson } from '../../data/promptSettings.js';
import { initLora, LoraAdapter, type LoraConfig } from '../../lora/lora.js';
import { ADAPTER_WEIGHTS_FILE, writePeftAdapter } from '../../lora/peft.js';
import { PROJECTIONS, type ProjectionName } from '../../model/qwen2-linear.js';
import { fingerprintExamples } from '../../train/batching.js';
import {
  listCheckpoints,
  loadTrainCheckpoint,
  readTrainerState,
  type TrainCheckpoint,
} from '../../train/checkpoint.js';
import { MetricsLog } from '../../train/metrics.js';
import { trainSft, type SftConfig, type SftResult } from '../../train/sft.js';
import { UserError } from '../../util/errors.js';
import { Progress } from '../../util/progress.js';
import { GracefulStop, signalExitCode } from '../../util/interrupt.js';
import { acquireRunLock, removeStaleTempEntries } from '../../util/runLock.js';
import { positiveInt, type CommandSpec, type ParsedArgs } from '../args.js';
import { loadModel } from '../../api/load.js';
import { deviceFlag, quantizeFlag } from './engine.js';
import { endOfTurnIds, readRecords, tokenizeRecords } from '../../api/train-data.js';

export const command: CommandSpec = {
  name: 'train',
  summary: 'QLoRA supervised fine-tuning -> PEFT adapter, checkpoints, metrics log',
  usage: '[--model DIR|HUB_ID] [--data DIR] [--out DIR] [flags]',
  flags: [
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      default: 'Qwen/Qwen1.5-1.8B-Chat',
      description: 'base model folder or Hugging Face repo id',
    },
    {
      name: 'data',
      type: 'string',
      metavar: 'DIR',
      default: 'data',
      description: 'folder with train.jsonl and eval.jsonl from sqlora prepare',
    },
    {
      name: 'train-file',
      type: 'string',
      metavar: 'FILE',
      description:
        'training records (default: DATA/train.jsonl): sqlora prepare\'s, or chat records {"messages": [{role, content}, ...]} (TRL/axolotl), rendered with the model\'s chat template',
    },
    {
      name: 'eval-file',
      type: 'string',
      metavar: 'FILE',
      description: 'records for the eval loss (default: DATA/eval.jsonl when it exists)',
    },
    {
      name: 'out',
      type: 'string',
      metavar: 'DIR',
      default: 'runs/train',
      description: 'run folder: adapter/, checkpoint-N/, metrics.jsonl, training_summary.json',
    },
    quantizeFlag('nf4'),
    deviceFlag(),
    { name: 'lora-r', type: 'number', default: 16, description: 'LoRA rank' },
    { name: 'lora-alpha', type: 'number', default: 32, description: 'LoRA alpha (scale alpha / r)' },
    { name: 'lora-dropout', type: 'number', default: 0.05, description: "dropout on the LoRA path's input" },
    {
      name: 'target-modules',
      type: 'string',
      metavar: 'LIST',
      default: 'q_proj,k_proj,v_proj,o_proj',
      description: `adapted projections, comma-separated (of ${PROJECTIONS.join(', ')})`,
    },
    { name: 'epochs', type: 'number', default: 5, description: 'passes over the training data (may be fractional)' },
    {
      name: 'max-steps',
      type: 'number',
      default: 0,
      description: 'run exactly this many optimizer steps instead (0 = use --epochs)',
    },
    { name: 'batch-size', type: 'number', default: 8, description: 'examples per micro-batch' },
    { name: 'grad-accum', type: 'number', default: 2, description: 'micro-batches per optimizer step' },
    { name: 'lr', type: 'number', default: 2e-4, description: 'peak learning rate (AdamW, cosine schedule)' },
    {
      name: 'warmup-ratio',
      type: 'number',
      default: 0.05,
      description: 'linear warmup over ceil(ratio x total steps) steps',
    },
    {
      name: 'weight-decay',
      type: 'number',
      default: 0.01,
      description: 'AdamW decoupled weight decay (applied to the LoRA weights)',
    },
    {
      name: 'max-grad-norm',
      type: 'number',
      default: 1,
      description: 'clip the gradient norm to this (0 = no clipping)',
    },
    {
      name: 'max-activation-gib',
      type: 'number',
      metavar: 'GIB',
      default: 0,
      description:
        'keep the activations saved for backward under this many GiB by recomputing the fewest layers that fit (0 = no limit, recompute nothing)',
    },
    {
      name: 'max-length',
      type: 'number',
      default: 512,
      description: 'tokens per example; longer ones are cut at the end',
    },
    {
      name: 'loss-on-prompt',
      type: 'boolean',
      description:
        'train on the whole sequence, prompt included (the reference workflow); default: the answer and its <|im_end|> only',
    },
    {
      name: 'group-by-length',
      type: 'boolean',
      default: true,
      description: "batch examples of similar length (HF's megabatch scheme)",
    },
    { name: 'seed', type: 'number', default: 42, description: 'seed of the LoRA init, data order and dropout' },
    {
      name: 'eval-steps',
      type: 'number',
      default: 100,
      description: 'eval loss every N steps (and after the last; 0 = only after the last)',
    },
    { name: 'eval-batch-size', type: 'number', default: 8, description: 'examples per eval batch' },
    { name: 'save-steps', type: 'number', default: 100, description: 'checkpoint every N steps (0 = only on Ctrl-C)' },
    {
      name: 'save-total-limit',
      type: 'number',
      default: 0,
      description: 'keep the N newest checkpoints plus the best by eval loss (0 = keep all)',
    },
    { name: 'resume', type: 'boolean', description: 'continue from the newest checkpoint in --out' },
    { name: 'resume-from', type: 'string', metavar: 'DIR', description: 'continue from this checkpoint folder' },
  ],
  details: [
    'Each optimizer step runs --grad-accum micro-batches of --batch-size examples (right-padded with the eos token),',
    'normalizes the summed token loss by the target tokens of the whole step (as HF with num_items_in_batch), clips',
    "the gradient norm, and takes an AdamW step at lr x cosine-with-warmup(step) (transformers'",
    "get_cosine_schedule_with_warmup). The data order of epoch e is HF's group_by_length scheme over a",
    'permutation drawn from mulberry32(seed, e): megabatches of up to 50 x batch x accum examples, longest first.',
    'Steps per epoch = ceil(ceil(examples / batch) / accum).',
    '',
    'Writes OUT/metrics.jsonl (a "train" record per step: loss, lr, grad_norm, tokens/s; an "eval" record per',
    'evaluation), OUT/checkpoint-N/ (PEFT adapter + optimizer + trainer state) every --save-steps, OUT/adapter/',
    '(the final PEFT adapter) and OUT/training_summary.json. Ctrl-C finishes the current step, saves a checkpoint',
    'and exits; run the same command with --resume to continue on exactly the same loss curve.',
  ].join('\n'),
  run: runTrain,
};

/** Flags whose value shapes the loss curve: a resumed run must repeat them. */
const CURVE_FLAGS = [
  'model',
  'quantize',
  'lora-r',
  'lora-alpha',
  'lora-dropout',
  'target-modules',
  'epochs',
  'max-steps',
  'batch-size',
  'grad-accum',
  'lr',
  'warmup-ratio',
  'weight-decay',
  'max-grad-norm',
  'max-length',
  'loss-on-prompt',
  'group-by-length',
  'seed',
] as const;

async function runTrain(args: ParsedArgs): Promise<void> {
  const out = args.string('out')!;
  const data = args.string('data')!;
  const trainFile = args.string('train-file') ?? join(data, 'train.jsonl');
  const evalFile =
    args.string('eval-file') ?? (existsSync(join(data, 'eval.jsonl')) ? join(data, 'eval.jsonl') : undefined);
  const int = (name: string, allowZero = false): number => positiveInt('train', name, args.number(name), allowZero);
  const lora: LoraConfig = {
    r: int('lora-r'),
    alpha: args.number('lora-alpha')!,
    dropout: args.number('lora-dropout')!,
    targetModules: parseModules(args.string('target-modules')!),
    useRslora: false,
  };
  const maxLength = int('max-length');
  for (const name of ['lr', 'epochs'] as const)
    if (!(args.number(name)! > 0)) throw new UserError(`sqlora train: --${name} must be positive`);
  for (const name of ['warmup-ratio', 'weight-decay', 'max-grad-norm', 'max-activation-gib'] as const)
    if (!(args.number(name)! >= 0)) throw new UserError(`sqlora train: --${name} must be >= 0`);
  const lock = acquireRunLock(out, 'train');
  try {
    await trainLocked(args, { data, out, trainFile, evalFile, lora, maxLength, int });
  } finally {
    lock.release();
  }
}

interface TrainInputs {
  data: string;
  out: string;
  trainFile: string;
  evalFile: string | undefined;
  lora: LoraConfig;
  maxLength: number;
  int: (name: string, allowZero?: boolean) => number;
}

async function trainLocked(args: ParsedArgs, inputs: TrainInputs): Promise<void> {
  const { data, out, trainFile, evalFile, lora, maxLength, int } = inputs;
  // Checkpoint writes cut off by a kill leave checkpoint-N.tmp-PID folders; their writer is gone.
  for (const name of removeStaleTempEntries(out, /^checkpoint-\d+\.tmp-\d+$/))
    process.stderr.write(`removed ${join(out, name)}, a checkpoint an interrupted run did not finish writing\n`);
  const resume = findResume(args, out);
  // The state is checked before the model loads: a damaged checkpoint is refused at once.
  if (resume) readTrainerState(resume);

  const records = readRecords(trainFile);
  // The adapter records the prompt it is trained on, for ask, serve and eval (sqlora.json).
  const promptSettings = promptSettingsFromDataset(data, trainFile);
  if (!promptSettings)
    process.stderr.write(
      `warning: no dataset.json in ${data}: the adapter will not record its prompt format (${PROMPT_SETTINGS_FILE}); ask, serve and eval will assume the default\n`,
    );
  const adapterFiles: Record<string, string> = promptSettings
    ? { [PROMPT_SETTINGS_FILE]: promptSettingsJson(promptSettings) }
    : {};
  const evalRecords = evalFile !== undefined ? readRecords(evalFile) : null;
  const loaded = await loadModel({
    model: args.string('model'),
    device: args.string('device')!,
    quantize: args.string('quantize')!,
  });
  const { model, tokenizer } = loaded;
  const exampleOpts = {
    maxLength,
    lossOnPrompt: args.boolean('loss-on-prompt'),
    endOfTurnIds: endOfTurnIds(tokenizer),
  };
  let chatTemplate: ChatTemplate | undefined;
  const template = () => (chatTemplate ??= ChatTemplate.fromModelDir(loaded.dir));
  const train = tokenizeRecords(records, tokenizer, exampleOpts, template);
  const evalSplit = evalRecords ? tokenizeRecords(evalRecords, tokenizer, exampleOpts, template) : null;
  const padId = tokenizer.special.eos ?? loaded.padId;

  const checkpoint: TrainCheckpoint | null = resume ? loadTrainCheckpoint(resume, model.config) : null;
  const adapter = LoraAdapter.upload(
    model.backend,
    model.config,
    checkpoint?.adapter ?? initLora(model.config, lora, args.number('seed')!),
    checkpoint ? join(checkpoint.dir, ADAPTER_WEIGHTS_FILE) : undefined,
  );
  model.setLora(adapter);
  const settings: Record<string, unknown> = Object.fromEntries(CURVE_FLAGS.map((f) => [f, flagValue(args, f)]));
  const cfg: SftConfig = {
    epochs: args.number('epochs')!,
    maxSteps: int('max-steps', true),
    batchSize: int('batch-size'),
    gradAccum: int('grad-accum'),
    lr: args.number('lr')!,
    warmupRatio: args.number('warmup-ratio')!,
    weightDecay: args.number('weight-decay')!,
    maxGradNorm: args.number('max-grad-norm')!,
    seed: args.number('seed')!,
    groupByLength: args.boolean('group-by-length'),
    evalSteps: int('eval-steps', true),
    evalBatchSize: int('eval-batch-size'),
    saveSteps: int('save-steps', true),
    saveTotalLimit: int('save-total-limit', true),
    padId,
    outDir: out,
    baseModel: loaded.source,
    adapterFiles,
    settings,
    activationBudget: args.number('max-activation-gib')! > 0 ? args.number('max-activation-gib')! * 2 ** 30 : undefined,
  };
  const trainable = adapter.parameters().reduce((s, p) => s + p.param.size, 0);
  // Opened at the first step, once trainSft has accepted a resume: a refused one keeps the log intact.
  let log: MetricsLog | null = null;
  const metrics = (): MetricsLog =>
    (log ??= new MetricsLog(join(out, 'metrics.jsonl'), checkpoint ? checkpoint.state.step : null));
  process.stderr.write(
    `train: ${train.examples.length} examples (${train.truncated} cut at ${maxLength} tokens)` +
      (evalSplit ? `, eval: ${evalSplit.examples.length}` : ', no eval set') +
      `; ${trainable.toLocaleString('en-US')} trainable parameters; ${loaded.model.backend.name}, ${args.string('quantize')} base` +
      (checkpoint ? `; resuming from ${checkpoint.dir} (step ${checkpoint.state.step})` : '') +
      '\n',
  );
  if (train.empty > 0)
    process.stderr.write(
      `warning: ${train.empty} training examples have no answer token left within --max-length ${maxLength}; they add no loss\n`,
    );

  let progress: Progress | null = null;
  let evalProgress: Progress | null = null;
  const stop = new GracefulStop('finishing this step and saving a checkpoint', () => describeKept(out));
  let result: SftResult;
  try {
    result = await trainSft(
      model,
      adapter,
      { train: train.examples, eval: evalSplit?.examples ?? null, fingerprint: fingerprintExamples(train.examples) },
      cfg,
      {
        onStart(plan, fromStep) {
          // Started before the first step, so the rate is steps over the time they took.
          progress = new Progress({ label: 'train', total: plan.totalSteps, unit: 'step' }, fromStep);
        },
        onStep(r) {
          metrics().append(r);
          progress!.tick(1, { loss: r.loss, lr: r.lr, 'tok/s': r.tokens_per_s });
        },
        onEvalStart(examples) {
          progress?.breakLine();
          evalProgress = new Progress({ label: 'eval loss', total: examples, unit: 'ex' });
        },
        onEvalBatch(examples) {
          evalProgress?.tick(examples);
        },
        onEval(r) {
          evalProgress?.set({ loss: r.eval_loss });
          evalProgress?.finish();
          evalProgress = null;
          metrics().append(r);
          progress?.set({ eval: r.eval_loss });
        },
        stopRequested: () => stop.signal !== null,
      },
      checkpoint ? { optimizer: checkpoint.optimizer, state: checkpoint.state, dir: checkpoint.dir } : undefined,
    );
  } finally {
    stop.dispose();
    (evalProgress as Progress | null)?.finish();
    (progress as Progress | null)?.finish();
  }

  if (result.status === 'interrupted') {
    throw new UserError(
      `stopped at step ${result.state.step} of ${result.plan.totalSteps}; checkpoint saved in ${result.checkpoint}; continue with --resume (the same command and flags)`,
      signalExitCode(stop.signal ?? 'SIGINT'),
    );
  }
  const adapterDir = join(out, 'adapter');
  writePeftAdapter(adapterDir, adapter.toHost(), { baseModelNameOrPath: loaded.source, extraFiles: adapterFiles });
  const s = result.state;
  const summary = {
    model: loaded.source,
    adapter: adapterDir,
    data: {
      train_file: trainFile,
      eval_file: evalFile ?? null,
      train_examples: train.examples.length,
      eval_examples: evalSplit?.examples.length ?? 0,
      truncated: train.truncated,
      target_tokens: train.examples.reduce((n, e) => n + e.targets, 0),
    },
    settings: { ...settings, device: args.string('device'), eval_steps: cfg.evalSteps, save_steps: cfg.saveSteps },
    trainable_params: trainable,
    steps: { total: result.plan.totalSteps, per_epoch: result.plan.stepsPerEpoch, warmup: result.warmupSteps },
    epochs: s.epoch,
    train_loss: s.loss_sum / s.step,
    best_eval: s.best_eval,
    // The checkpoint holding the adapter of the best eval loss, when one was saved at that step.
    best_checkpoint: s.best_eval ? (listCheckpoints(out).find((c) => c.step === s.best_eval!.step)?.dir ?? null) : null,
    final_eval: s.last_eval,
    train_seconds: s.train_seconds,
    tokens_seen: s.tokens_seen,
    tokens_per_s: s.train_seconds > 0 ? s.tokens_seen / s.train_seconds : 0,
    checkpoints: listCheckpoints(out).map((c) => c.dir),
  };
  writeFileSync(join(out, 'training_summary.json'), JSON.stringify(summary, null, 2) + '\n');
  process.stderr.write(
    `done: ${s.step} steps, mean train loss ${summary.train_loss.toFixed(4)}` +
      (s.last_eval
        ? `, eval loss ${s.last_eval.eval_loss.toFixed(4)} (best ${s.best_eval!.eval_loss.toFixed(4)} at step ${s.best_eval!.step})`
        : '') +
      `; adapter in ${adapterDir}\n`,
  );
}

/** What a run interrupted at once leaves behind, and how to go on from it. */
function describeKept(out: string): string {
  const newest = listCheckpoints(out).pop();
  return newest
    ? `no new checkpoint; the newest is ${newest.dir} (step ${newest.step}); continue with --resume`
    : `no checkpoint was saved; metrics so far are in ${join(out, 'metrics.jsonl')}`;
}

function flagValue(args: ParsedArgs, name: string): string | number | boolean | null {
  if (name === 'loss-on-prompt' || name === 'group-by-length') return args.boolean(name);
  const n = ['model', 'quantize', 'target-modules'].includes(name) ? undefined : args.number(name);
  return n ?? args.string(name) ?? null;
}

function parseModules(list: string): ProjectionName[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const n of names) {
    if (!(PROJECTIONS as readonly string[]).includes(n))
      throw new UserError(
        `sqlora train: --target-modules: ${JSON.stringify(n)} is not one of ${PROJECTIONS.join(', ')}`,
      );
  }
  return names as ProjectionName[];
}

/** The checkpoint to continue from, or null for a fresh run (which must not overwrite one). */
function findResume(args: ParsedArgs, out: string): string | null {
  const from = args.string('resume-from');
  if (from !== undefined) return from;
  const existing = listCheckpoints(out);
  if (args.boolean('resume')) {
    if (existing.length === 0) throw new UserError(`--resume: no checkpoint in ${out} to continue from`);
    return existing[existing.length - 1].dir;
  }
  if (existing.length > 0) {
    throw new UserError(
      `${out} already holds checkpoints (newest: step ${existing[existing.length - 1].step}): pass --resume to continue that run, or choose another --out`,
    );
  }
  return null;
}
