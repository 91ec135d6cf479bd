import { createInterface } from 'node:readline';
import { ChatTemplate } from '../../data/chatTemplate.js';
import { readPromptSettings } from '../../data/promptSettings.js';
import { readPeftAdapter } from '../../lora/peft.js';
import { askQuestion, type AskAnswer } from '../../serve/ask.js';
import { answerJson, formatAnswerText } from '../../serve/askFormat.js';
import type { SqlDatabase } from '../../serve/database.js';
import { defaultDatabaseName, openDatabase } from '../../serve/databases.js';
import { QuestionPrompter } from '../../serve/questionPrompts.js';
import { UserError } from '../../util/errors.js';
import { positiveInt, type CommandSpec, type ParsedArgs } from '../args.js';
import { baseModelSource, loadModel } from '../../api/load.js';
import { sqlGenerator } from '../../api/generate.js';
import { deviceFlag, quantizeFlag } from './engine.js';

export const command: CommandSpec = {
  name: 'ask',
  summary: 'question + SQLite file or PostgreSQL URL -> SQL -> rows, with the adapter',
  usage: '--adapter DIR [--model DIR|HUB_ID] --db FILE.sqlite|postgres://... ["question"] [flags]',
  positional: {
    metavar: '"question"',
    description: 'what to ask; without it, questions are read from stdin, one a line, the model staying loaded',
  },
  flags: [
    { name: 'adapter', type: 'string', metavar: 'DIR', description: 'PEFT LoRA adapter folder (with its sqlora.json)' },
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description: "base model folder or repo id (default: the adapter's base_model_name_or_path)",
    },
    {
      name: 'db',
      type: 'string',
      metavar: 'FILE|URL',
      description: 'a SQLite file, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=a,b] (opened read-only)',
    },
    {
      name: 'max-rows',
      type: 'number',
      metavar: 'N',
      default: 20,
      description: 'rows shown at most (all are counted)',
    },
    { name: 'timeout', type: 'number', metavar: 'SECONDS', default: 10, description: 'time limit per query' },
    {
      name: 'json',
      type: 'boolean',
      description:
        'one JSON object per question: {question, sql, columns, rows, row_count, truncated, elapsed_ms} or {question, sql, error}',
    },
    { name: 'sql-only', type: 'boolean', description: 'print the SQL without running it' },
    {
      name: 'evidence',
      type: 'string',
      metavar: 'TEXT',
      description: "BIRD's evidence (a hint on the data) for the question, put in the prompt as prepare --bird does",
    },
    { name: 'max-new-tokens', type: 'number', default: 128, description: 'tokens generated at most per question' },
    quantizeFlag('nf4'),
    deviceFlag(),
  ],
  details: [
    'The prompt is the one the adapter was trained on (its sqlora.json): the schema read from the database, in the',
    'dialect it speaks. The SQL runs read-only: SQLite files open read-only with writes, ATTACH, PRAGMA writes and',
    'extensions refused; PostgreSQL queries run in a READ ONLY transaction under statement_timeout. Results are capped',
    'in rows and bytes. In interactive mode "quit" or end of input ends the session.',
    '',
    'Example:\n  sqlora ask --adapter runs/train/adapter --db spider/database/concert_singer/concert_singer.sqlite "How many singers are there?"',
  ].join('\n'),
  run: runAsk,
};

async function runAsk(args: ParsedArgs): Promise<void> {
  const adapterDir = args.required('adapter');
  const spec = args.required('db');
  const maxRows = positiveInt('ask', 'max-rows', args.number('max-rows'));
  const maxNewTokens = positiveInt('ask', 'max-new-tokens', args.number('max-new-tokens'));
  const timeout = args.number('timeout')!;
  if (!(timeout > 0)) throw new UserError('sqlora ask: --timeout must be a positive number of seconds');
  const json = args.boolean('json');
  const sqlOnly = args.boolean('sql-only');
  const question = args.positional?.trim();
  if (question === '') throw new UserError('sqlora ask: the question is empty');
  const evidence = args.string('evidence');
  if (evidence !== undefined && question === undefined)
    throw new UserError(
      'sqlora ask: --evidence goes with one question given as the argument (not with questions from stdin)',
    );

  // Everything that can be wrong with the input fails before the model loads.
  baseModelSource(args.string('model'), adapterDir, readPeftAdapter(adapterDir));
  const { settings, warning } = readPromptSettings(adapterDir);
  const db = await openDatabase(defaultDatabaseName(spec), spec);
  try {
    if (warning) process.stderr.write(`warning: ${warning}\n`);
    if (evidence !== undefined && settings.evidence === false)
      process.stderr.write(
        `warning: ${adapterDir} was trained without evidence in its prompts (prepare --no-evidence); it is put in the prompt anyway\n`,
      );
    const loaded = await loadModel({
      model: args.string('model'),
      adapter: adapterDir,
      device: args.string('device')!,
      quantize: args.string('quantize')!,
    });
    const prompter = new QuestionPrompter(ChatTemplate.fromModelDir(loaded.dir), loaded.tokenizer, settings);
    const generator = sqlGenerator(loaded, { maxNewTokens });
    const ask = (q: string) =>
      askQuestion(db, prompter, generator, q, { sqlOnly, evidence, limits: { maxRows, timeoutMs: timeout * 1000 } });
    if (question !== undefined) {
      const error = show(await ask(question), json);
      if (error) throw new UserError(error);
    } else {
      await interactive(db, async (q) => {
        const error = show(await ask(q), json);
        if (error) process.stderr.write(`error: ${error}\n`);
      });
    }
  } finally {
    await db.close();
  }
}

/** Prints an answer; returns the query's error, if any. */
function show(a: AskAnswer, json: boolean): string | null {
  if (a.overBudget) process.stderr.write(`note: the schema does not fit the adapter's prompt budget, even trimmed\n`);
  if (json) {
    process.stdout.write(JSON.stringify(answerJson(a)) + '\n');
    return a.error?.message ?? null;
  }
  const { out, error } = formatAnswerText(a);
  process.stdout.write(out);
  return error;
}

/** Questions from stdin, one a line (a prompt on a terminal), until "quit" or end of input. */
async function interactive(db: SqlDatabase, answer: (q: string) => Promise<void>): Promise<void> {
  const tty = process.stdin.isTTY === true;
  if (tty) process.stderr.write(`asking ${db.name} (${db.dialect}); "quit" or Ctrl-D ends\n`);
  const lines = createInterface({ input: process.stdin, terminal: false });
  if (tty) process.stderr.write('question> ');
  for await (const line of lines) {
    const q = line.trim();
    if (q === 'quit' || q === 'exit' || q === '\\q') break;
    if (q !== '') await answer(q);
    if (tty) process.stderr.write('question> ');
  }
  lines.close();
}
