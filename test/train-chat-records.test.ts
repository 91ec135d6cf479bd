/**
 * Generic chat records ({"messages": [...]}, as TRL and axolotl read them) in `sqlora train`:
 * loss on the assistant turns only, every token with --loss-on-prompt, and a single-turn chat
 * trains exactly as the prompt record `sqlora prepare` writes for it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endOfTurnIds, readRecords, tokenizeRecords } from '../src/api/train-data.js';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { IGNORE_INDEX } from '../src/model/qwen2-batch.js';
import { chatExample, toChatRecord } from '../src/api/chatRecords.js';
import type { MetricsRecord } from '../src/train/metrics.js';
import { sqlora } from './helpers/cli.js';
import {
  writeRecords,
  writeTinyChatModel,
  type SpiderQuestion,
  type TinyChatModel,
} from './helpers/tiny-chat-model.js';

let tmp: string;
let tiny: TinyChatModel;
let template: ChatTemplate;
let tokenizer: Tokenizer;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-chat-records-'));
  tiny = writeTinyChatModel(join(tmp, 'model'));
  template = ChatTemplate.fromModelDir(tiny.dir);
  tokenizer = Tokenizer.fromModelDir(tiny.dir);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const opts = (lossOnPrompt = false) => ({ maxLength: 512, lossOnPrompt, endOfTurnIds: endOfTurnIds(tokenizer) });
const conversation = toChatRecord(
  {
    messages: [
      { role: 'user', content: 'how many singer' },
      { role: 'assistant', content: 'SELECT count(*) FROM singer' },
      { role: 'user', content: 'and the name' },
      { role: 'assistant', content: 'SELECT name FROM singer' },
    ],
  },
  'test',
  0,
);

describe('chat records', () => {
  it('label the assistant turns only: each answer and its <|im_end|>, nothing the template adds around it', () => {
    const e = chatExample(conversation, template, tokenizer, opts());
    expect(Array.from(e.ids)).toEqual(tokenizer.encode(template.render(conversation.messages)));
    const learned = Array.from(e.labels).filter((l) => l !== IGNORE_INDEX);
    expect(learned).toEqual([
      ...tokenizer.encode('SELECT count(*) FROM singer'),
      tiny.ids.imEnd,
      ...tokenizer.encode('SELECT name FROM singer'),
      tiny.ids.imEnd,
    ]);
    // Labels are the ids themselves where they are kept (the shift happens in the loss).
    e.labels.forEach((l, i) => l !== IGNORE_INDEX && expect(l).toBe(e.ids[i]));
    const all = chatExample(conversation, template, tokenizer, opts(true));
    expect(Array.from(all.labels)).toEqual(Array.from(all.ids));
  });

  it('reject rows that are not chats, naming the record and field', () => {
    const path = join(tmp, 'bad.jsonl');
    writeFileSync(path, '{"messages":[{"role":"user","content":"hi"},{"role":"robot","content":"x"}]}\n');
    expect(() => readRecords(path)).toThrow(
      `${path}: record 1: messages[1].role must be one of system, user, assistant`,
    );
    writeFileSync(path, '{"messages":[{"role":"user","content":"hi"}]}\n');
    expect(() => readRecords(path)).toThrow(`${path}: record 1: "messages" has no assistant turn to learn from`);
    writeFileSync(path, '{"messages":[{"role":"user","content":3},{"role":"assistant","content":"x"}]}\n');
    expect(() => readRecords(path)).toThrow(`${path}: record 1: messages[0].content must be a string`);
  });

  it('train on a single-turn chat exactly as on the prompt record prepare writes for it', async () => {
    const questions = (
      JSON.parse(readFileSync('test/fixtures/spider/train_spider.json', 'utf8')) as SpiderQuestion[]
    ).slice(0, 8);
    const prompts = join(tmp, 'prompts');
    const chats = join(tmp, 'chats');
    mkdirSync(prompts);
    mkdirSync(chats);
    writeRecords(join(prompts, 'train.jsonl'), tiny.dir, 'train', questions);
    const records = readRecords(join(prompts, 'train.jsonl'));
    const chatLines = readFileSync(join(prompts, 'train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.stringify({ messages: (JSON.parse(l) as { messages: unknown }).messages }));
    writeFileSync(join(chats, 'train.jsonl'), chatLines.join('\n') + '\n');
    const chatRecords = readRecords(join(chats, 'train.jsonl'));
    expect(tokenizeRecords(chatRecords, tokenizer, opts(), () => template).examples).toEqual(
      tokenizeRecords(records, tokenizer, opts(), () => template).examples,
    );

    const run = async (data: string, extra: string[] = []) => {
      const out = join(data, 'run');
      const r = await sqlora('train', [
        ...['--model', tiny.dir, '--data', data, '--out', out, '--quantize', 'none', '--max-steps', '2'],
        ...['--batch-size', '4', '--grad-accum', '1', '--lr', '1e-2', '--lora-r', '4', '--lora-alpha', '8'],
        ...extra,
      ]);
      expect(r.code, r.stderr).toBe(0);
      return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as MetricsRecord)
        .filter((m) => m.type === 'train')
        .map((m) => [m.step, m.loss]);
    };
    const fromChats = await run(chats);
    expect(fromChats).toEqual(await run(prompts));
    expect(fromChats.length).toBe(2);
  });
});
