import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectQwen2Tensors, openCheckpoint, saveCheckpoint } from '../src/model/checkpoint.js';
import { loadModelConfig, parseModelConfig, type Qwen2Config } from '../src/model/config.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';
import { writeSafetensors } from '../src/tensor/safetensors.js';
import { hostTensor, numel, type HostTensor } from '../src/tensor/tensor.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const configFixture = (name: string): unknown =>
  JSON.parse(readFileSync(join('test/fixtures/checkpoints/configs', name), 'utf8'));

const tiny: Qwen2Config = parseModelConfig(
  {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 16,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    bos_token_id: 1,
    eos_token_id: 2,
  },
  'tiny',
);

/** Every expected tensor in bf16; value = tensor index + (element index mod 4) / 4, exact in bf16. */
function tinyTensors(config: Qwen2Config): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  expectQwen2Tensors(config).forEach((spec, k) => {
    const v = new Float32Array(numel(spec.shape)).map((_, i) => k + (i % 4) / 4);
    out[spec.name] = hostTensor('BF16', spec.shape, f32ToBf16(v));
  });
  return out;
}

describe('expectQwen2Tensors', () => {
  it('gives Qwen1.5-1.8B-Chat its 291 tensors and 1,836,828,672 parameters', () => {
    const specs = expectQwen2Tensors(parseModelConfig(configFixture('qwen1.5-1.8b-chat.json'), 'q'));
    expect(specs.length).toBe(291);
    expect(specs.reduce((s, t) => s + numel(t.shape), 0)).toBe(1_836_828_672);
    const byName = new Map(specs.map((s) => [s.name, s.shape]));
    expect(byName.get('model.embed_tokens.weight')).toEqual([151936, 2048]);
    expect(byName.get('model.layers.23.self_attn.k_proj.bias')).toEqual([2048]);
    expect(byName.get('model.layers.0.mlp.down_proj.weight')).toEqual([2048, 5504]);
    expect(byName.get('lm_head.weight')).toEqual([151936, 2048]);
  });

  it('uses kv heads for k/v and marks lm_head optional when embeddings are tied', () => {
    const specs = expectQwen2Tensors(parseModelConfig(configFixture('qwen2.5-1.5b-instruct-tf5.json'), 'q'));
    const byName = new Map(specs.map((s) => [s.name, s]));
    expect(byName.get('model.layers.0.self_attn.v_proj.weight')?.shape).toEqual([256, 1536]);
    expect(byName.get('model.layers.0.self_attn.v_proj.bias')?.shape).toEqual([256]);
    expect(byName.get('lm_head.weight')?.optional).toBe(true);
    const llama = expectQwen2Tensors(parseModelConfig(configFixture('llama-3.2-1b-style.json'), 'l'));
    expect(llama.some((s) => s.name.endsWith('.bias'))).toBe(false);
    expect(llama.find((s) => s.name === 'model.layers.0.self_attn.q_proj.weight')?.shape).toEqual([2048, 2048]);
  });
});

describe('checkpoints', () => {
  it('saves and loads a single-file checkpoint', () => {
    const dir = join(tmp, 'single');
    const tensors = tinyTensors(tiny);
    saveCheckpoint(dir, tiny, tensors);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(loadModelConfig(dir)).toEqual(tiny);
    const ckpt = openCheckpoint(dir);
    ckpt.validate(tiny);
    expect(ckpt.names().length).toBe(expectQwen2Tensors(tiny).length);
    const w = ckpt.readF32('model.layers.1.mlp.up_proj.weight', [12, 8]);
    const k = expectQwen2Tensors(tiny).findIndex((s) => s.name === 'model.layers.1.mlp.up_proj.weight');
    expect(w[0]).toBe(k);
    expect(w[65]).toBe(k + 0.25);
    expect(ckpt.read('model.norm.weight').dtype).toBe('BF16');
    ckpt.close();
  });

  it('loads a sharded checkpoint through its index, reading tensors from the right shard', () => {
    const dir = join(tmp, 'sharded');
    const tensors = tinyTensors(tiny);
    saveCheckpoint(dir, tiny, tensors, { maxShardBytes: 600 });
    const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
    expect(files.length).toBeGreaterThan(2);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(Object.values(tensors).reduce((s, t) => s + t.data.byteLength, 0));
    const ckpt = openCheckpoint(dir);
    expect(ckpt.files().sort()).toEqual(files.sort());
    ckpt.validate(tiny);
    for (const name of ['model.embed_tokens.weight', 'model.layers.1.self_attn.o_proj.weight', 'lm_head.weight']) {
      expect(ckpt.info(name).file).toBe(index.weight_map[name]);
      expect(Array.from(ckpt.readF32(name))).toEqual(
        Array.from(
          new Float32Array(numel(tensors[name].shape)).map((_, i) => {
            const k = expectQwen2Tensors(tiny).findIndex((s) => s.name === name);
            return k + (i % 4) / 4;
          }),
        ),
      );
    }
    ckpt.close();
    // Saving again as one file must not leave the stale index and shards behind.
    saveCheckpoint(dir, tiny, tensors);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  it('names the tensor, shapes and file when a tensor is missing or misshapen', () => {
    const dir = join(tmp, 'broken');
    const tensors = tinyTensors(tiny);
    delete tensors['model.layers.1.self_attn.q_proj.bias'];
    tensors['model.layers.0.mlp.gate_proj.weight'] = hostTensor('BF16', [8, 12], new Uint16Array(96));
    saveCheckpoint(dir, tiny, tensors);
    const ckpt = openCheckpoint(dir);
    expect(() => ckpt.validate(tiny)).toThrow(
      /does not match its config\.json: model\.layers\.0\.mlp\.gate_proj\.weight in model\.safetensors has shape \[8, 12\], expected \[12, 8\]; missing model\.layers\.1\.self_attn\.q_proj\.bias \(expected shape \[8\]\)/,
    );
    expect(() => ckpt.readF32('model.layers.0.mlp.gate_proj.weight', [12, 8])).toThrow(
      /tensor model\.layers\.0\.mlp\.gate_proj\.weight in .*broken\/model\.safetensors has shape \[8, 12\], expected \[12, 8\]/,
    );
    expect(() => ckpt.readF32('model.layers.1.self_attn.q_proj.bias')).toThrow(
      /checkpoint .*broken has no tensor model\.layers\.1\.self_attn\.q_proj\.bias/,
    );
    ckpt.close();
  });

  it('accepts a tied checkpoint without lm_head.weight, and refuses an untied one', () => {
    const tied = { ...tiny, tieWordEmbeddings: true };
    const tensors = tinyTensors(tied);
    delete tensors['lm_head.weight'];
    saveCheckpoint(join(tmp, 'tied'), tied, tensors);
    openCheckpoint(join(tmp, 'tied')).validate(tied);
    expect(() => openCheckpoint(join(tmp, 'tied')).validate(tiny)).toThrow(
      /missing lm_head\.weight \(expected shape \[16, 8\]\)/,
    );
  });

  it('reports directories without weights, missing shards and bad index entries', () => {
    const empty = join(tmp, 'empty');
    saveCheckpoint(empty, tiny, {});
    rmSync(join(empty, 'model.safetensors'));
    expect(() => openCheckpoint(empty)).toThrow(
      /no weights in .*empty: expected model\.safetensors or model\.safetensors\.index\.json/,
    );
    expect(() => openCheckpoint(join(tmp, 'nowhere'))).toThrow(/model directory not found/);
    const idx = join(empty, 'model.safetensors.index.json');
    writeFileSync(idx, JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors' } }));
    expect(() => openCheckpoint(empty)).toThrow(/lists shard model-00001-of-00002\.safetensors, which is missing/);
    writeFileSync(idx, JSON.stringify({ weight_map: { a: '../../etc/passwd' } }));
    expect(() => openCheckpoint(empty)).toThrow(/weight_map\["a"\] must name a \.safetensors file in the same folder/);
    writeSafetensors(join(empty, 'only.safetensors'), {});
    writeFileSync(idx, JSON.stringify({ weight_map: { a: 'only.safetensors' } }));
    expect(() => openCheckpoint(empty).info('a')).toThrow(
      /maps a to only\.safetensors, but that file does not contain it/,
    );
  });
});
