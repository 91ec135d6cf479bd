import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { shrinkByteLevelBpe } from '../src/demo/smallTokenizer.js';
import { buildToyModel, TOY_MODEL_DEFAULTS, type ToyModel } from '../src/demo/toyModel.js';
import { Qwen2Model } from '../src/model/qwen2.js';

// The demo's prompts (the reference workflow's format, byte for byte) plus text outside ASCII.
const TEXTS = [
  ...readFileSync('test/fixtures/seed/validation_head.jsonl', 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { text: string }).text),
  'Zoë’s café — naïve 東京 😀 SELECT "name" FROM t WHERE x <> \'ü\';\r\n\tend',
];

const qwenDir = defaultTokenizerDir();
let qwen: Tokenizer;
let toy: ToyModel;
let small: Tokenizer;

beforeAll(() => {
  qwen = Tokenizer.fromModelDir(qwenDir);
  toy = buildToyModel(mkdtempSync(join(tmpdir(), 'sqlora-toy-')), qwenDir);
  small = Tokenizer.fromModelDir(toy.dir);
});

describe('demo tokenizer cut from Qwen1.5', () => {
  it('keeps the first K merges and numbers the tokens densely, ChatML tokens last', () => {
    const json = JSON.parse(readFileSync(join(toy.dir, 'tokenizer.json'), 'utf8'));
    expect(json.model.merges).toHaveLength(TOY_MODEL_DEFAULTS.merges);
    const ids = Object.values(json.model.vocab as Record<string, number>).sort((a, b) => a - b);
    expect(ids).toEqual(ids.map((_, i) => i));
    expect(ids.length).toBe(256 + TOY_MODEL_DEFAULTS.merges);
    expect(['<|endoftext|>', '<|im_start|>', '<|im_end|>'].map((t) => small.tokenId(t))).toEqual([
      ids.length,
      ids.length + 1,
      ids.length + 2,
    ]);
    expect(small.vocabSize).toBe(toy.tokenizerSize);
    expect(small.special.eos).toBe(small.tokenId('<|im_end|>'));
    expect(toy.config.vocabSize % 64).toBe(0);
    expect(toy.config.vocabSize - toy.tokenizerSize).toBeLessThan(64);
  });

  it('round-trips every demo prompt, special tokens included', () => {
    for (const text of TEXTS) expect(small.decode(small.encode(text))).toBe(text);
  });

  it("gives Qwen's own tokens (renumbered) for every word whose Qwen tokens it kept", () => {
    const cut = shrinkByteLevelBpe(
      JSON.parse(readFileSync(join(qwenDir, 'tokenizer.json'), 'utf8')),
      TOY_MODEL_DEFAULTS.merges,
      'qwen',
    );
    const words = new Set(TEXTS.flatMap((t) => t.split(/(?=[ \n])/)));
    let same = 0;
    let kept = 0;
    for (const w of words) {
      const q = qwen.encode(w, { parseSpecial: false });
      if (!q.every((id) => cut.idMap.has(id))) continue;
      kept++;
      if (JSON.stringify(small.encode(w, { parseSpecial: false })) === JSON.stringify(q.map((id) => cut.idMap.get(id))))
        same++;
    }
    // Enough words to mean something: 61 of the 167 distinct words of these prompts.
    expect(kept).toBeGreaterThan(50);
    expect(same).toBe(kept);
  });

  it('keeps the chat template', () => {
    const config = (dir: string) => JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    expect(config(toy.dir).chat_template).toBe(config(qwenDir).chat_template);
    expect(Object.values(config(toy.dir).added_tokens_decoder)).toEqual(
      Object.values(config(qwenDir).added_tokens_decoder),
    );
    expect(Object.keys(config(toy.dir).added_tokens_decoder)).toEqual(
      [toy.tokenizerSize - 3, toy.tokenizerSize - 2, toy.tokenizerSize - 1].map(String),
    );
  });
});

describe('demo toy model', () => {
  it('loads as a Qwen2 model and is the same on every build (fixed seed)', () => {
    const model = Qwen2Model.load(toy.dir, new CpuBackend());
    expect(model.config).toMatchObject({
      hiddenSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 256,
      vocabSize: toy.config.vocabSize,
    });
    expect(toy.parameters).toBe(
      2 * toy.config.vocabSize * 128 +
        2 * (128 * 128 * 2 + 2 * 128 * 64 + 2 * 64 + 128 + 3 * 128 * 256 + 2 * 128) +
        128,
    );
    const again = buildToyModel(mkdtempSync(join(tmpdir(), 'sqlora-toy-')), qwenDir);
    expect(
      readFileSync(join(again.dir, 'model.safetensors')).equals(readFileSync(join(toy.dir, 'model.safetensors'))),
    ).toBe(true);
  });
});
