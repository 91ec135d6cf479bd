import { formatCommandHelp, parseCommandArgs, type CommandSpec } from './args.js';
import { UserError, describeSystemError } from '../util/errors.js';

interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<{ command: CommandSpec }>;
}

// Command modules load lazily so `sqlora --help` stays instant and one command's
// dependencies (SQLite, the model engine) are not loaded for another.
const COMMANDS: CommandEntry[] = [
  {
    name: 'prepare',
    summary: 'Spider (folder or HF parquet), BIRD or your own question/SQL pairs -> train/eval prompts as JSONL',
    load: () => import('./commands/prepare.js'),
  },
  {
    name: 'baseline',
    summary: 'base model -> predictions + metrics on the eval set (resumable)',
    load: () => import('./commands/baseline.js'),
  },
  {
    name: 'train',
    summary: 'QLoRA SFT -> PEFT adapter, checkpoints, metrics log (resumable)',
    load: () => import('./commands/train.js'),
  },
  {
    name: 'eval',
    summary: 'base + adapter -> predictions + metrics; compare with the baseline',
    load: () => import('./commands/eval.js'),
  },
  {
    name: 'mmlu',
    summary: 'MMLU accuracy before/after an adapter (lm-evaluation-harness semantics) with a verdict (resumable)',
    load: () => import('./commands/mmlu.js'),
  },
  {
    name: 'evaluate',
    summary: 'score predictions against gold: seed metrics, exact-set-match, execution (Spider), BIRD execution',
    load: () => import('./commands/evaluate.js'),
  },
  {
    name: 'ask',
    summary: 'question + SQLite file or PostgreSQL URL -> SQL -> rows, with the adapter',
    load: () => import('./commands/ask.js'),
  },
  {
    name: 'generate',
    summary: 'generate text from prompts (raw or chat), greedy or sampled',
    load: () => import('./commands/generate.js'),
  },
  {
    name: 'serve',
    summary: 'OpenAI-compatible API, /v1/sql on your databases and a web page, with continuous batching',
    load: () => import('./commands/serve.js'),
  },
  {
    name: 'report',
    summary: 'markdown + self-contained HTML report: loss curves, before/after by hardness, examples',
    load: () => import('./commands/report.js'),
  },
  {
    name: 'export',
    summary: 'adapter -> merged HF folder, GGUF (f32 .. q4_k_m) + Ollama Modelfile, or LoRA GGUF',
    load: () => import('./commands/export.js'),
  },
  {
    name: 'publish',
    summary: 'adapter + model card (Hub metadata, scores, loss curve) -> folder or Hugging Face Hub',
    load: () => import('./commands/publish.js'),
  },
  {
    name: 'doctor',
    summary: 'can this machine run the main job? GPU, driver, CUDA libraries, memory, caches, Hub',
    load: () => import('./commands/doctor.js'),
  },
  {
    name: 'demo',
    summary: 'the whole pipeline on a toy model and the bundled Spider subset, on the CPU in a minute or two',
    load: () => import('./commands/demo.js'),
  },
];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'sqlora — fine-tune chat LLMs into Text-to-SQL models with QLoRA, evaluate on Spider, publish and serve.',
    '',
    'usage: sqlora <command> [flags]     (sqlora <command> --help for its flags)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return name === undefined ? 1 : 0;
  }
  if (name === '--version') {
    const { createRequire } = await import('node:module');
    process.stdout.write(createRequire(import.meta.url)('../../package.json').version + '\n');
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`sqlora: unknown command "${name}"\n\n${mainHelp()}`);
    return 2;
  }
  const { command } = await entry.load();
  const args = parseCommandArgs(command, rest);
  if (args.boolean('help')) {
    process.stdout.write(formatCommandHelp(command));
    return 0;
  }
  await command.run(args);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const system = describeSystemError(err);
    if (err instanceof UserError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else if (system !== null) {
      process.stderr.write(`error: ${system}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 70;
    }
  },
);
