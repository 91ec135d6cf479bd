import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadGenerationConfig, loadModelConfig, modelConfigToJson, parseModelConfig } from '../src/model/config.js';
import { UserError } from '../src/util/errors.js';

const DIR = 'test/fixtures/checkpoints/configs';
const fixture = (name: string): Record<string, unknown> => JSON.parse(readFileSync(join(DIR, name), 'utf8'));
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-cfg-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('parseModelConfig', () => {
  it('reads Qwen1.5-1.8B-Chat (classic form)', () => {
    const dir = mkdtempSync(join(tmp, 'qwen15-'));
    copyFileSync(join(DIR, 'qwen1.5-1.8b-chat.json'), join(dir, 'config.json'));
    const c = loadModelConfig(dir);
    expect(c).toEqual({
      modelType: 'qwen2',
      architectures: ['Qwen2ForCausalLM'],
      hiddenSize: 2048,
      intermediateSize: 5504,
      numLayers: 24,
      numHeads: 16,
      numKvHeads: 16,
      headDim: 128,
      vocabSize: 151936,
      rmsNormEps: 1e-6,
      ropeTheta: 1e6,
      maxPositionEmbeddings: 32768,
      tieWordEmbeddings: false,
      attentionBias: true,
      hiddenAct: 'silu',
      torchDtype: 'bfloat16',
      bosTokenId: 151643,
      eosTokenIds: [151645],
      useSlidingWindow: false,
      slidingWindow: 32768,
      maxWindowLayers: 21,
    });
  });

  it('reads the transformers 5 form (rope_parameters, dtype, null sliding_window)', () => {
    const c = parseModelConfig(fixture('qwen2.5-1.5b-instruct-tf5.json'), 'config.json');
    expect(c).toMatchObject({
      hiddenSize: 1536,
      numHeads: 12,
      numKvHeads: 2,
      headDim: 128,
      numLayers: 28,
      ropeTheta: 1e6,
      tieWordEmbeddings: true,
      torchDtype: 'bfloat16',
      slidingWindow: null,
      attentionBias: true,
    });
  });

  it('reads a Llama-style config: explicit head_dim, no biases, several eos ids', () => {
    const c = parseModelConfig(fixture('llama-3.2-1b-style.json'), 'config.json');
    expect(c).toMatchObject({
      modelType: 'llama',
      headDim: 64,
      numKvHeads: 8,
      attentionBias: false,
      ropeTheta: 500000,
      rmsNormEps: 1e-5,
    });
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
  });

  it('applies transformers defaults to optional fields', () => {
    const c = parseModelConfig(
      {
        model_type: 'qwen2',
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        vocab_size: 100,
      },
      'tiny/config.json',
    );
    expect(c).toMatchObject({
      numKvHeads: 4,
      headDim: 16,
      ropeTheta: 10000,
      rmsNormEps: 1e-6,
      tieWordEmbeddings: false,
      eosTokenIds: [],
      bosTokenId: null,
    });
  });

  const base = fixture('qwen1.5-1.8b-chat.json');
  const errorOf = (patch: Record<string, unknown>): string => {
    try {
      parseModelConfig({ ...base, ...patch }, 'models/x/config.json');
    } catch (err) {
      expect(err).toBeInstanceOf(UserError);
      return (err as Error).message;
    }
    throw new Error('expected a UserError');
  };

  it('names the file and field of what it refuses', () => {
    expect(errorOf({ model_type: 'gemma2' })).toMatch(
      /^models\/x\/config\.json: model_type is "gemma2"; supported: "qwen2"/,
    );
    expect(errorOf({ architectures: ['Qwen2ForSequenceClassification'] })).toMatch(
      /config\.json: architectures is .*only Qwen2ForCausalLM/,
    );
    expect(errorOf({ hidden_size: undefined })).toBe('models/x/config.json: hidden_size is missing');
    expect(errorOf({ num_hidden_layers: 2.5 })).toMatch(/num_hidden_layers must be a positive integer, got 2.5/);
    expect(errorOf({ num_key_value_heads: 5 })).toMatch(
      /num_key_value_heads \(5\) must divide num_attention_heads \(16\)/,
    );
    expect(errorOf({ hidden_act: 'gelu' })).toMatch(/hidden_act is "gelu"; only "silu"/);
    expect(errorOf({ rope_scaling: { type: 'yarn', factor: 4 } })).toMatch(/rope_scaling is .*yarn.*not supported/);
    expect(
      errorOf({ rope_theta: undefined, rope_parameters: { rope_type: 'llama3', rope_theta: 5e5, factor: 32 } }),
    ).toMatch(/rope_parameters\.rope_type is "llama3"; only "default"/);
    expect(errorOf({ eos_token_id: 'x' })).toMatch(/eos_token_id must be a token id or a list/);
    expect(errorOf({ use_sliding_window: true, sliding_window: null })).toMatch(
      /sliding_window is missing while use_sliding_window is true/,
    );
    const llama = fixture('llama-3.2-1b-style.json');
    expect(() => parseModelConfig({ ...llama, attention_bias: true }, 'l.json')).toThrow(
      /l\.json: attention_bias is true/,
    );
    expect(() => parseModelConfig({ ...llama, mlp_bias: true }, 'l.json')).toThrow(/mlp_bias is true/);
    expect(() => parseModelConfig([], 'l.json')).toThrow(/l\.json: expected a JSON object/);
  });

  it('reports a missing or malformed config.json with its path', () => {
    const empty = mkdtempSync(join(tmp, 'empty-'));
    expect(() => loadModelConfig(empty)).toThrow(/model config not found: .*config\.json/);
    writeFileSync(join(empty, 'config.json'), '{"model_type": ');
    expect(() => loadModelConfig(empty)).toThrow(/malformed JSON in .*config\.json/);
  });

  it('writes a classic config.json that parses back to the same config', () => {
    for (const name of ['qwen1.5-1.8b-chat.json', 'qwen2.5-1.5b-instruct-tf5.json', 'llama-3.2-1b-style.json']) {
      const c = parseModelConfig(fixture(name), name);
      const json = modelConfigToJson(c);
      expect(Object.keys(json)).toEqual(Object.keys(json).sort());
      expect(parseModelConfig(JSON.parse(JSON.stringify(json)), 'out.json')).toEqual(c);
    }
  });
});

describe('loadGenerationConfig', () => {
  it('reads eos ids and sampling defaults; a missing file is not an error', () => {
    const dir = mkdtempSync(join(tmp, 'gen-'));
    expect(loadGenerationConfig(dir)).toBeUndefined();
    copyFileSync(join(DIR, 'qwen2.5-1.5b-instruct.generation_config.json'), join(dir, 'generation_config.json'));
    expect(loadGenerationConfig(dir)).toEqual({
      bosTokenId: 151643,
      eosTokenIds: [151645, 151643],
      padTokenId: 151643,
      doSample: true,
      temperature: 0.7,
      topP: 0.8,
      topK: 20,
      repetitionPenalty: 1.1,
      maxNewTokens: null,
    });
    writeFileSync(join(dir, 'generation_config.json'), '{"top_p": "high"}');
    expect(() => loadGenerationConfig(dir)).toThrow(/generation_config\.json: top_p must be a number, got "high"/);
  });
});
