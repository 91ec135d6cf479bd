/**
 * `sqlora generate` as other programs call it: a tiny chat model folder (byte-level BPE
 * tokenizer with ChatML tokens, random weights), prompts from the command line or JSONL,
 * --chat templating, --json lines in input order, and the errors people see.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../src/cli/args.js';
import { command } from '../src/cli/commands/generate.js';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { sqlora } from './helpers/cli.js';
import { writeTinyChatModel, type TinyChatModel } from './helpers/tiny-chat-model.js';

let tmp: string;
let tiny: TinyChatModel;
let tokenizer: Tokenizer;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-cli-generate-'));
  tiny = writeTinyChatModel(join(tmp, 'model'));
  tokenizer = Tokenizer.fromModelDir(tiny.dir);
});

interface Line {
  index: number;
  prompt_ids: number[];
  new_ids: number[];
  text: string;
  finish_reason: 'stop' | 'length';
}

const parse = (stdout: string): Line[] =>
  stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);

describe('sqlora generate', () => {
  it('--prompts FILE --json: one line per prompt in input order, special tokens parsed, text = decoded new ids', async () => {
    const prompts = [
      '<|im_start|>user\nHow many singers?<|im_end|>\n<|im_start|>assistant\n',
      'SELECT',
      'x',
      'SELECT count(*) FROM singer WHERE',
    ];
    const file = join(tmp, 'prompts.jsonl');
    writeFileSync(file, prompts.map((p) => JSON.stringify({ prompt: p }) + '\n').join(''));
    const r = await sqlora('generate', [
      '--model',
      tiny.dir,
      '--prompts',
      file,
      '--json',
      '--max-new-tokens',
      '12',
      '--batch-size',
      '3',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const lines = parse(r.stdout);
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2, 3]);
    lines.forEach((l, i) => {
      expect(l.prompt_ids).toEqual(tokenizer.encode(prompts[i]));
      expect(l.new_ids.length).toBeGreaterThan(0);
      expect(l.new_ids.length).toBeLessThanOrEqual(12);
      const stopped = l.finish_reason === 'stop';
      expect(stopped || l.new_ids.length === 12).toBe(true);
      if (stopped) expect([tiny.ids.imEnd, tiny.ids.endoftext]).toContain(l.new_ids[l.new_ids.length - 1]);
      expect(l.text).toBe(tokenizer.decode(stopped ? l.new_ids.slice(0, -1) : l.new_ids));
    });
    expect(lines[0].prompt_ids[0]).toBe(tiny.ids.imStart);
    // The load is reported on stderr, stdout holds only the JSON lines.
    expect(r.stderr).toMatch(
      new RegExp(`model: ${tiny.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} on cpu: loaded in \\d+\\.\\d s\n`),
    );
  });

  it("--chat renders the prompt as a user turn with the model's chat template", async () => {
    const r = await sqlora('generate', [
      '--model',
      tiny.dir,
      '--prompt',
      'How many singers?',
      '--chat',
      '--json',
      '--max-new-tokens',
      '4',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rendered = ChatTemplate.fromModelDir(tiny.dir).render([{ role: 'user', content: 'How many singers?' }], {
      addGenerationPrompt: true,
    });
    expect(parse(r.stdout)[0].prompt_ids).toEqual(tokenizer.encode(rendered));
  });

  it('prints the text of a single prompt without --json; sampling is reproducible with --seed', async () => {
    const args = [
      '--model',
      tiny.dir,
      '--prompt',
      'SELECT',
      '--max-new-tokens',
      '8',
      '--temperature',
      '1',
      '--top-k',
      '50',
      '--seed',
      '3',
    ];
    const a = await sqlora('generate', args);
    const b = await sqlora('generate', [...args, '--json']);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(parse(b.stdout)[0].text + '\n');
  });

  it('explains bad usage', async () => {
    for (const [args, message] of [
      [['--model', tiny.dir], /give exactly one of --prompt TEXT and --prompts FILE.jsonl/],
      [['--model', join(tmp, 'nope'), '--prompt', 'x'], /model not found/],
      [['--model', tiny.dir, '--prompt', 'x', '--top-p', '0'], /--top-p must be in \(0, 1\]/],
    ] as const) {
      await expect(command.run(parseCommandArgs(command, [...args]))).rejects.toThrow(message);
    }
    expect(() => parseCommandArgs(command, ['--model', tiny.dir, '--prompt', 'x', '--device', 'tpu'])).toThrow(
      /--device must be one of cpu, cuda, auto/,
    );
  });
});
