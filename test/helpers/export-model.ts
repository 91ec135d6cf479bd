/**
 * A toy Qwen2 chat model (the demo's: a tokenizer cut from Qwen1.5's, ChatML template) and a
 * PEFT adapter on it with random non-zero factors, for the export tests. Hidden size 256 so
 * the Q4_K/Q6_K super-blocks fit the rows; `hiddenSize: 128` exercises llama.cpp's Q5_0/Q8_0
 * fallbacks instead.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultTokenizerDir } from '../../src/data/modelFiles.js';
import { buildToyModel, TOY_MODEL_DEFAULTS, type ToyModel } from '../../src/demo/toyModel.js';
import { initLora, type LoraConfig } from '../../src/lora/lora.js';
import { writePeftAdapter } from '../../src/lora/peft.js';
import { mulberry32 } from '../../src/util/random.js';

export interface ExportFixture {
  root: string;
  toy: ToyModel;
  baseDir: string;
  adapterDir: string;
}

export function buildExportFixture(
  opts: { hiddenSize?: number; lora?: Partial<LoraConfig>; seed?: number } = {},
): ExportFixture {
  const root = mkdtempSync(join(tmpdir(), 'sqlora-export-'));
  const baseDir = join(root, 'base');
  const hidden = opts.hiddenSize ?? 256;
  const toy = buildToyModel(baseDir, defaultTokenizerDir(), {
    ...TOY_MODEL_DEFAULTS,
    merges: 1500,
    hiddenSize: hidden,
    intermediateSize: 2 * hidden,
    seed: opts.seed ?? 7,
  });
  const config: LoraConfig = {
    r: 8,
    alpha: 16,
    dropout: 0,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj'],
    useRslora: false,
    ...opts.lora,
  };
  const adapter = initLora(toy.config, config, 11);
  // A trained adapter has non-zero B; make the merge change the model's choices.
  const rand = mulberry32(12);
  for (const [name, t] of Object.entries(adapter.tensors)) {
    if (!name.includes('lora_B')) continue;
    const b = t.data as Float32Array;
    for (let i = 0; i < b.length; i++) b[i] = (2 * rand() - 1) * 0.4;
  }
  const adapterDir = join(root, 'adapter');
  writePeftAdapter(adapterDir, adapter, { baseModelNameOrPath: baseDir });
  return { root, toy, baseDir, adapterDir };
}
