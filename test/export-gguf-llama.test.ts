/**
 * The exported GGUFs in the real consumer: llama.cpp (node-llama-cpp 3.21.1, CPU build) loads
 * each one and its greedy tokens equal sqlora's own generation — from the merged weights for
 * f32, from the weights sqlora reads back (dequantized) out of its own GGUF for f16, q8_0 and
 * q4_k_m. The LoRA GGUF applied by llama.cpp on the base GGUF gives the merged model's tokens,
 * and llama.cpp's tokenizer built from the GGUF's vocabulary and merges tokenizes like ours.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getLlama, type Llama, type LlamaModel } from 'node-llama-cpp';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { ChatTemplate } from '../src/data/chatTemplate.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { exportGguf, exportLoraGguf, type ExportGgufResult } from '../src/export/gguf-export.js';
import { ggufTensorSource, type GgufQuant } from '../src/export/gguf-qwen2.js';
import { GgufFile } from '../src/export/gguf-reader.js';
import { MergedWeights } from '../src/export/merged-weights.js';
import { generate } from '../src/model/generate.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { uploadQwen2Weights, type TensorSource } from '../src/model/qwen2-weights.js';
import { GREEDY } from '../src/model/sampling.js';
import { buildExportFixture, type ExportFixture } from './helpers/export-model.js';

const NEW_TOKENS = 10;
const be = new CpuBackend();
let fx: ExportFixture;
let llama: Llama;
let prompts: number[][];
let tokenizer: Tokenizer;
const files: Partial<Record<GgufQuant | 'base' | 'lora', string>> = {};
const results: Partial<Record<GgufQuant, ExportGgufResult>> = {};

function sqloraModel(source: TensorSource): Qwen2Model {
  return new Qwen2Model(fx.toy.config, be, uploadQwen2Weights(be, fx.toy.config, source));
}

async function sqloraTokens(source: TensorSource): Promise<number[][]> {
  const m = sqloraModel(source);
  const out = await generate(m, prompts, {
    maxNewTokens: NEW_TOKENS,
    stopIds: [],
    padId: 0,
    batchSize: 4,
    sampling: GREEDY,
  });
  return out.map((g) => g.newIds);
}

async function llamaTokens(model: LlamaModel, lora?: string): Promise<number[][]> {
  const out: number[][] = [];
  // One thread: llama.cpp's worker threads spin while waiting, which on a busy 2-core machine
  // makes a 10-token run take tens of seconds instead of milliseconds.
  const ctx = await model.createContext({
    contextSize: 256,
    threads: 1,
    ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
  });
  try {
    for (const p of prompts) {
      const seq = ctx.getSequence();
      const ids: number[] = [];
      for await (const t of seq.evaluate(p as never, { temperature: 0 })) {
        ids.push(t as number);
        if (ids.length === NEW_TOKENS) break;
      }
      seq.dispose();
      out.push(ids);
    }
  } finally {
    await ctx.dispose();
  }
  return out;
}

async function withModel<T>(path: string, f: (m: LlamaModel) => Promise<T>): Promise<T> {
  const model = await llama.loadModel({ modelPath: path });
  try {
    return await f(model);
  } finally {
    await model.dispose();
  }
}

function fromGguf(path: string): TensorSource {
  const file = GgufFile.open(path);
  return ggufTensorSource(file);
}

beforeAll(async () => {
  fx = buildExportFixture();
  tokenizer = Tokenizer.fromModelDir(fx.baseDir);
  const template = ChatTemplate.fromModelDir(fx.baseDir);
  const questions = ['How many singers are there?', 'List the names of all stadiums.', 'Which city has the most?'];
  prompts = questions.map((q) =>
    tokenizer.encode(
      template.render(
        [
          { role: 'system', content: 'Write SQL.' },
          { role: 'user', content: q },
        ],
        { addGenerationPrompt: true },
      ),
    ),
  );
  const out = join(fx.root, 'gguf');
  for (const quant of ['f32', 'f16', 'q8_0', 'q4_k_m'] as const) {
    files[quant] = join(out, `merged-${quant}.gguf`);
    // q4_k_m through two worker threads, the others on this thread: both paths are checked.
    results[quant] = await exportGguf({
      threads: quant === 'q4_k_m' ? 2 : 0,
      baseDir: fx.baseDir,
      adapterDir: fx.adapterDir,
      outFile: files[quant]!,
      quant,
      modelfile: false,
    });
  }
  files.base = join(out, 'base-f32.gguf');
  await exportGguf({ baseDir: fx.baseDir, outFile: files.base, quant: 'f32', modelfile: false });
  files.lora = join(out, 'adapter.gguf');
  await exportLoraGguf({ baseDir: fx.baseDir, adapterDir: fx.adapterDir, outFile: files.lora });
  llama = await getLlama({ gpu: false, logLevel: 'error' as never });
}, 120_000);

afterAll(async () => {
  await llama?.dispose();
});

describe('GGUF export in llama.cpp', () => {
  it('uses the Q4_K_M mix of llama.cpp on the toy model', () => {
    const t = results.q4_k_m!.tensorTypes;
    expect(t['token_embd.weight']).toBe('Q4_K');
    expect(t['output.weight']).toBe('Q6_K');
    expect(t['blk.0.attn_v.weight']).toBe('Q4_K');
    expect(t['blk.1.attn_v.weight']).toBe('Q6_K');
    expect(t['blk.1.ffn_down.weight']).toBe('Q6_K');
    expect(t['blk.0.attn_q.weight']).toBe('Q4_K');
    expect(t['blk.0.attn_q.bias']).toBe('F32');
    expect(t['output_norm.weight']).toBe('F32');
    expect(results.q8_0!.tensorTypes['blk.0.ffn_up.weight']).toBe('Q8_0');
    expect(results.f16!.tensorTypes['blk.0.ffn_up.weight']).toBe('F16');
    expect(results.f16!.tensorTypes['blk.0.attn_norm.weight']).toBe('F32');
  });

  it('f32: llama.cpp generates exactly sqlora’s tokens on the merged weights', async () => {
    const w = MergedWeights.open({ baseDir: fx.baseDir, adapterDir: fx.adapterDir });
    const ours = await sqloraTokens((name) => w.readF32(name));
    w.close();
    const theirs = await withModel(files.f32!, (m) => llamaTokens(m));
    expect(theirs).toEqual(ours);
    // And the merge mattered: the base model says something else.
    const baseW = MergedWeights.open({ baseDir: fx.baseDir });
    const base = await sqloraTokens((name) => baseW.readF32(name));
    baseW.close();
    expect(base).not.toEqual(ours);
  });

  for (const quant of ['f16', 'q8_0'] as const) {
    it(`${quant}: llama.cpp’s tokens equal sqlora’s on the weights read back from the GGUF`, async () => {
      const ours = await sqloraTokens(fromGguf(files[quant]!));
      const theirs = await withModel(files[quant]!, (m) => llamaTokens(m));
      expect(theirs).toEqual(ours);
    });
  }

  it('q4_k_m: every llama.cpp token is sqlora’s greedy choice on the read-back weights, up to near-ties', async () => {
    // llama.cpp multiplies K-quant weights with activations rounded to 8 bits (Q8_K), so where
    // two logits are within a few hundredths it may pick the other one; a wrong block layout
    // would pick unrelated tokens from the first step. So: feed llama.cpp's tokens through
    // sqlora's model and check each was its argmax, or within 0.05 of it.
    const m = sqloraModel(fromGguf(files.q4_k_m!));
    const theirs = await withModel(files.q4_k_m!, (lm) => llamaTokens(lm));
    const V = fx.toy.config.vocabSize;
    let exact = 0;
    prompts.forEach((p, row) => {
      const seq = [...p, ...theirs[row]];
      const t = m.forward({ batchSize: 1, seqLen: seq.length, inputIds: Int32Array.from(seq) });
      const logits = be.download(t) as Float32Array;
      be.free(t);
      for (let k = 0; k < NEW_TOKENS; k++) {
        const at = (p.length - 1 + k) * V;
        let best = -Infinity;
        for (let v = 0; v < V; v++) best = Math.max(best, logits[at + v]);
        const chosen = logits[at + theirs[row][k]];
        expect(best - chosen).toBeLessThan(0.05);
        if (chosen === best) exact++;
      }
    });
    expect(exact).toBeGreaterThanOrEqual(prompts.length * NEW_TOKENS - 3);
  });

  it('the LoRA GGUF on the base GGUF gives the merged model’s tokens', async () => {
    const merged = await withModel(files.f32!, (m) => llamaTokens(m));
    const viaLora = await withModel(files.base!, (m) => llamaTokens(m, files.lora));
    const plain = await withModel(files.base!, (m) => llamaTokens(m));
    expect(viaLora).toEqual(merged);
    expect(plain).not.toEqual(merged);
  });

  it('llama.cpp tokenizes text like sqlora’s tokenizer (vocabulary, merges, pre-tokenizer, special tokens)', async () => {
    const texts = [
      'SELECT count(*) FROM singer WHERE age > 30;',
      '<|im_start|>user\nHow many heads of the departments are older than 56 ?<|im_end|>\n<|im_start|>assistant\n',
      'Zoë’s café — naïve 東京 😀 "name" 12345\r\n\tend  ',
      "it's   they're 3.14 foo_bar",
    ];
    await withModel(files.q4_k_m!, async (m) => {
      for (const text of texts) expect(m.tokenize(text, true)).toEqual(tokenizer.encode(text));
      expect(m.tokens.eos).toBe(tokenizer.tokenId('<|im_end|>'));
    });
  });
});
