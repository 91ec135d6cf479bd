import { ChatTemplate } from '../../data/chatTemplate.js';
import { StreamDecoder } from '../../data/tokenizer.js';
import { generate, type Generation } from '../../model/generate.js';
import { UserError } from '../../util/errors.js';
import { readJsonl } from '../../util/jsonl.js';
import { positiveInt, type CommandSpec, type ParsedArgs } from '../args.js';
import { decodeBatchSize, loadModel } from '../../api/load.js';
import { deviceFlag, quantizeFlag } from './engine.js';

export const command: CommandSpec = {
  name: 'generate',
  summary: 'continue prompts with a model (+ adapter): greedy or sampled, batched',
  usage: '[--model DIR|HUB_ID] [--adapter DIR] (--prompt TEXT | --prompts FILE.jsonl) [flags]',
  flags: [
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description: "model folder or Hugging Face repo id (default: the adapter's base model)",
    },
    { name: 'adapter', type: 'string', metavar: 'DIR', description: 'PEFT LoRA adapter folder to apply' },
    { name: 'prompt', type: 'string', metavar: 'TEXT', description: 'one prompt' },
    { name: 'prompts', type: 'string', metavar: 'FILE', description: 'JSONL file, one {"prompt": "..."} per line' },
    {
      name: 'chat',
      type: 'boolean',
      description:
        "wrap each prompt as a user message with the model's chat template (and the assistant header); otherwise prompts are raw text",
    },
    { name: 'max-new-tokens', type: 'number', default: 128, description: 'tokens to generate at most per prompt' },
    { name: 'temperature', type: 'number', default: 0, description: '0 = greedy; above 0 samples' },
    {
      name: 'top-p',
      type: 'number',
      default: 1,
      description: 'sampling: keep the most likely tokens up to this probability mass',
    },
    { name: 'top-k', type: 'number', default: 0, description: 'sampling: keep the K most likely tokens (0 = all)' },
    {
      name: 'repetition-penalty',
      type: 'number',
      default: 1,
      description: "HF's repetition penalty over prompt and output (1 = off)",
    },
    {
      name: 'seed',
      type: 'number',
      default: 0,
      description: 'sampling seed (each prompt draws from its own stream, so batching does not change results)',
    },
    {
      name: 'batch-size',
      type: 'number',
      default: 0,
      description: 'prompts decoded together (0 = 64 on a GPU, 8 on the CPU)',
    },
    quantizeFlag('none'),
    deviceFlag(),
    {
      name: 'json',
      type: 'boolean',
      description:
        'print one JSON object per prompt and line, in input order: {index, prompt_ids, new_ids, text, finish_reason}',
    },
  ],
  details: [
    'Raw prompts are tokenized with special tokens parsed, so "<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n"',
    "is a chat turn. Generation stops at the eos ids of generation_config.json and config.json, the tokenizer's eos and",
    '<|im_end|>. In --json output new_ids end with the stop token when finish_reason is "stop"; text leaves it out.',
    'Examples:',
    '  sqlora generate --model Qwen/Qwen1.5-1.8B-Chat --chat --prompt "Write SQL counting the rows of table singer."',
    '  sqlora generate --adapter runs/train/adapter --prompts prompts.jsonl --json > out.jsonl',
  ].join('\n'),
  run: runGenerate,
};

async function runGenerate(args: ParsedArgs): Promise<void> {
  const texts = readPrompts(args);
  const maxNewTokens = positiveInt('generate', 'max-new-tokens', args.number('max-new-tokens'));
  const requestedBatch = positiveInt('generate', 'batch-size', args.number('batch-size'), true);
  const temperature = args.number('temperature')!;
  const topP = args.number('top-p')!;
  const topK = positiveInt('generate', 'top-k', args.number('top-k'), true);
  const repetitionPenalty = args.number('repetition-penalty')!;
  if (!(temperature >= 0)) throw new UserError(`sqlora generate: --temperature must be >= 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new UserError(`sqlora generate: --top-p must be in (0, 1], got ${topP}`);
  if (!(repetitionPenalty > 0))
    throw new UserError(`sqlora generate: --repetition-penalty must be positive, got ${repetitionPenalty}`);
  const json = args.boolean('json');

  const loaded = await loadModel({
    model: args.string('model'),
    adapter: args.string('adapter'),
    device: args.string('device')!,
    quantize: args.string('quantize')!,
  });
  const { tokenizer, stopIds } = loaded;
  const template = args.boolean('chat') ? ChatTemplate.fromModelDir(loaded.dir) : null;
  const prompts = texts.map((t) =>
    tokenizer.encode(template ? template.render([{ role: 'user', content: t }], { addGenerationPrompt: true }) : t),
  );
  const stop = new Set(stopIds);
  const completion = (g: Generation): string =>
    tokenizer.decode(
      g.finishReason === 'stop' && stop.has(g.newIds[g.newIds.length - 1]) ? g.newIds.slice(0, -1) : g.newIds,
    );

  // One prompt on a terminal-like stdout: show the text as it is generated.
  const stream = !json && prompts.length === 1 ? new StreamDecoder(tokenizer) : null;
  const done: (Generation | undefined)[] = new Array(prompts.length);
  let printed = 0;
  const results = await generate(loaded.model, prompts, {
    maxNewTokens,
    batchSize: decodeBatchSize(requestedBatch, loaded),
    stopIds,
    padId: loaded.padId,
    seed: args.number('seed'),
    sampling: { temperature, topP, topK, repetitionPenalty },
    onToken: stream
      ? (_, id) => {
          if (!stop.has(id)) process.stdout.write(stream.push(id));
        }
      : undefined,
    // JSON lines go out in input order as soon as every earlier prompt is done.
    onResult: json
      ? (index, g) => {
          done[index] = g;
          for (; printed < done.length && done[printed]; printed++) {
            const r = done[printed]!;
            process.stdout.write(
              JSON.stringify({
                index: printed,
                prompt_ids: r.promptIds,
                new_ids: r.newIds,
                text: completion(r),
                finish_reason: r.finishReason,
              }) + '\n',
            );
          }
        }
      : undefined,
  });
  if (stream) process.stdout.write(stream.flush() + '\n');
  else if (!json) results.forEach((g, i) => process.stdout.write(`[${i + 1}] ${completion(g)}\n`));
}

function readPrompts(args: ParsedArgs): string[] {
  const one = args.string('prompt');
  const file = args.string('prompts');
  if ((one === undefined) === (file === undefined))
    throw new UserError('sqlora generate: give exactly one of --prompt TEXT and --prompts FILE.jsonl');
  if (one !== undefined) return [one];
  const rows = readJsonl<unknown>(file!, 'prompts file');
  if (rows.length === 0) throw new UserError(`${file} has no prompts`);
  return rows.map((r, i) => {
    const p = (r as { prompt?: unknown } | null)?.prompt;
    if (typeof p !== 'string') throw new UserError(`${file}: prompt ${i + 1} must be an object with a string "prompt"`);
    return p;
  });
}
