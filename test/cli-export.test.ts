/**
 * `sqlora export` end to end: a GGUF with its Ollama Modelfile (the adapter's recorded system
 * prompt), a GGUF read back by sqlora's reader, a LoRA GGUF, and one-line errors for bad input.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SEED_SYSTEM } from '../src/data/prompts.js';
import { GgufFile } from '../src/export/gguf-reader.js';
import { buildExportFixture, type ExportFixture } from './helpers/export-model.js';
import { sqlora } from './helpers/cli.js';

let fx: ExportFixture;
const MODELFILE_TEMPLATE = `TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ .Response }}<|im_end|>
"""`;

beforeAll(() => {
  fx = buildExportFixture({ hiddenSize: 128 });
});

describe('sqlora export', () => {
  it('--to gguf writes the GGUF and a Modelfile with the seed system prompt', async () => {
    const out = join(fx.root, 'gguf');
    const r = await sqlora('export', ['--adapter', fx.adapterDir, '--to', 'gguf', '--quant', 'q8_0', '--out', out]);
    expect(r.stderr).toContain('into the original unquantized base weights');
    expect(r.code).toBe(0);
    // Named after the run folder holding adapter/.
    const file = `${basename(fx.root)}-q8_0.gguf`;
    expect(readdirSync(out).sort()).toEqual(['Modelfile', file]);
    expect(readFileSync(join(out, 'Modelfile'), 'utf8')).toBe(
      `FROM ./${file}\n${MODELFILE_TEMPLATE}\nPARAMETER stop "<|im_end|>"\nSYSTEM """${SEED_SYSTEM}"""\n`,
    );
    const g = GgufFile.open(join(out, file));
    expect(g.get('general.architecture')).toBe('qwen2');
    expect(g.get('general.file_type')).toBe(7);
    expect(g.get('qwen2.block_count')).toBe(2);
    expect(g.get('qwen2.embedding_length')).toBe(128);
    expect(g.get('tokenizer.ggml.model')).toBe('gpt2');
    expect(g.get('tokenizer.ggml.pre')).toBe('qwen2');
    expect(g.get('tokenizer.ggml.eos_token_id')).toBe(fx.toy.tokenizerSize - 1); // <|im_end|>, the last token
    expect((g.get('tokenizer.ggml.tokens') as string[]).length).toBe(fx.toy.config.vocabSize);
    expect((g.get('tokenizer.ggml.merges') as string[]).length).toBe(fx.toy.merges);
    expect(g.get('tokenizer.chat_template')).toBe(
      JSON.parse(readFileSync(join(fx.baseDir, 'tokenizer_config.json'), 'utf8')).chat_template,
    );
    g.close();
  });

  it('takes SYSTEM from the adapter’s sqlora.json when recorded', async () => {
    writeFileSync(join(fx.adapterDir, 'sqlora.json'), JSON.stringify({ system_prompt: 'You write SQLite.' }));
    const out = join(fx.root, 'gguf-system');
    const r = await sqlora('export', ['--adapter', fx.adapterDir, '--to', 'gguf', '--quant', 'f16', '--out', out]);
    expect(r.code).toBe(0);
    expect(readFileSync(join(out, 'Modelfile'), 'utf8')).toContain('SYSTEM """You write SQLite."""\n');
  });

  it('--to gguf-lora writes the adapter GGUF', async () => {
    const out = join(fx.root, 'lora');
    const r = await sqlora('export', ['--adapter', fx.adapterDir, '--to', 'gguf-lora', '--out', out]);
    expect(r.code).toBe(0);
    const g = GgufFile.open(join(out, `${basename(fx.root)}-lora.gguf`));
    expect(g.get('general.type')).toBe('adapter');
    expect(g.get('adapter.type')).toBe('lora');
    expect(g.get('adapter.lora.alpha')).toBe(16);
    expect(g.tensors.get('blk.1.attn_q.weight.lora_a')?.ne).toEqual([128, 8]);
    expect(g.tensors.get('blk.1.attn_q.weight.lora_b')?.ne).toEqual([8, 128]);
    expect(g.tensors.size).toBe(2 * 2 * 5);
    g.close();
  });

  it('bad input: one line, non-zero exit, nothing written', async () => {
    const out = join(fx.root, 'never');
    const quant = await sqlora('export', ['--adapter', fx.adapterDir, '--to', 'gguf', '--quant', 'q3_k', '--out', out]);
    expect(quant.code).not.toBe(0);
    expect(quant.stderr.trim()).toBe(
      'error: sqlora export: flag --quant must be one of f32, f16, bf16, q8_0, q4_k_m; got "q3_k"',
    );
    const noBase = await sqlora('export', [
      '--adapter',
      fx.adapterDir,
      '--model',
      join(fx.root, 'nope'),
      '--to',
      'merged',
      '--out',
      out,
    ]);
    expect(noBase.code).not.toBe(0);
    expect(noBase.stderr).toMatch(/model not found: .*nope is neither a directory nor a Hub repo id/);
    expect(noBase.stderr.trim().split('\n')).toHaveLength(1);
    const config = join(fx.adapterDir, 'adapter_config.json');
    const saved = readFileSync(config, 'utf8');
    writeFileSync(config, JSON.stringify({ ...JSON.parse(saved), base_model_name_or_path: join(fx.root, 'gone') }));
    try {
      const gone = await sqlora('export', ['--adapter', fx.adapterDir, '--to', 'gguf', '--out', out]);
      expect(gone.code).not.toBe(0);
      expect(gone.stderr).toContain(
        `the adapter's base model ${join(fx.root, 'gone')} (base_model_name_or_path in ${config}) cannot be found`,
      );
    } finally {
      writeFileSync(config, saved);
    }
    expect(existsSync(out)).toBe(false);
  });
});
