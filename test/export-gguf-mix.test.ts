/**
 * The Q4_K_M per-tensor mix on Qwen1.5-1.8B's shape and on a tied model, as llama.cpp's
 * llama-quant.cpp chooses it (use_more_bits layers, output Q6_K, fallbacks for rows that are
 * not a multiple of 256), and the HF -> GGUF tensor names.
 */
import { describe, expect, it } from 'vitest';
import { GgmlType } from '../src/export/gguf-format.js';
import { ggufTensorName, ggufTensorType, useMoreBits } from '../src/export/gguf-qwen2.js';
import { parseModelConfig } from '../src/model/config.js';
import { SHAPES } from '../bench/measure.js';

const cfg = (tied: boolean) =>
  parseModelConfig(
    { ...SHAPES['1.8b'], model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], tie_word_embeddings: tied },
    'test',
  );

describe('Q4_K_M mix', () => {
  it('gives Q6_K to attn_v / ffn_down on layers 0-2, every third from 5, and 21-23 of 24', () => {
    const more = Array.from({ length: 24 }, (_, i) => i).filter((i) => useMoreBits(i, 24));
    expect(more).toEqual([0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    expect([0, 1].filter((i) => useMoreBits(i, 2))).toEqual([1]);
  });

  it('on the 1.8B shape: ffn_down rows of 5504 fall back to Q5_0 / Q8_0, the rest as llama.cpp picks', () => {
    const c = cfg(false);
    const type = (name: string, ne: number[]) => GgmlType[ggufTensorType(name, ne, 'q4_k_m', c)];
    expect(type('token_embd.weight', [2048, 151936])).toBe('Q4_K');
    expect(type('output.weight', [2048, 151936])).toBe('Q6_K');
    expect(type('blk.0.attn_v.weight', [2048, 2048])).toBe('Q6_K');
    expect(type('blk.3.attn_v.weight', [2048, 2048])).toBe('Q4_K');
    expect(type('blk.0.ffn_down.weight', [5504, 2048])).toBe('Q8_0');
    expect(type('blk.3.ffn_down.weight', [5504, 2048])).toBe('Q5_0');
    expect(type('blk.3.ffn_up.weight', [2048, 5504])).toBe('Q4_K');
    expect(type('blk.3.attn_q.bias', [2048])).toBe('F32');
    expect(type('blk.3.ffn_norm.weight', [2048])).toBe('F32');
    expect(GgmlType[ggufTensorType('blk.3.ffn_down.weight', [5504, 2048], 'q8_0', c)]).toBe('Q8_0');
    expect(GgmlType[ggufTensorType('blk.3.ffn_down.weight', [5504, 2048], 'bf16', c)]).toBe('BF16');
    expect(GgmlType[ggufTensorType('output_norm.weight', [2048], 'f16', c)]).toBe('F32');
  });

  it('tied embeddings: token_embd is the output matrix and gets its Q6_K', () => {
    expect(GgmlType[ggufTensorType('token_embd.weight', [2048, 151936], 'q4_k_m', cfg(true))]).toBe('Q6_K');
  });

  it('names tensors as llama.cpp does for Qwen2', () => {
    expect(ggufTensorName('model.embed_tokens.weight')).toBe('token_embd.weight');
    expect(ggufTensorName('lm_head.weight')).toBe('output.weight');
    expect(ggufTensorName('model.norm.weight')).toBe('output_norm.weight');
    expect(ggufTensorName('model.layers.7.input_layernorm.weight')).toBe('blk.7.attn_norm.weight');
    expect(ggufTensorName('model.layers.7.post_attention_layernorm.weight')).toBe('blk.7.ffn_norm.weight');
    expect(ggufTensorName('model.layers.7.self_attn.k_proj.bias')).toBe('blk.7.attn_k.bias');
    expect(ggufTensorName('model.layers.7.self_attn.o_proj.weight')).toBe('blk.7.attn_output.weight');
    expect(ggufTensorName('model.layers.7.mlp.gate_proj.weight')).toBe('blk.7.ffn_gate.weight');
    expect(ggufTensorName('model.layers.7.rotary_emb.inv_freq')).toBeUndefined();
  });
});
