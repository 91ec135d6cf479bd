/**
 * LoRA initialization and the PEFT adapter folder: our files round-trip exactly, PEFT-written
 * adapters (test/fixtures/tiny/, from tools/reference/tiny_model.py) load, and the config we
 * write carries every field PEFT writes.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { initLora, LoraAdapter, loraScale, peftTensorName } from '../src/lora/lora.js';
import { ADAPTER_CONFIG_FILE, readPeftAdapter, writePeftAdapter } from '../src/lora/peft.js';
import { loadModelConfig } from '../src/model/config.js';
import { PROJECTIONS } from '../src/model/qwen2-linear.js';
import { toF32 } from '../src/tensor/tensor.js';
import { adapterDir, haveTinyFixtures, MISSING_FIXTURES, modelDir, VARIANTS } from './helpers/tiny-fixture.js';
import { randomModel, tinyConfig } from './helpers/random-qwen2.js';

const be = new CpuBackend();
const cfg = tinyConfig();
const loraCfg = {
  r: 4,
  alpha: 8,
  dropout: 0.05,
  targetModules: ['v_proj', 'q_proj', 'down_proj'] as (typeof PROJECTIONS)[number][],
  useRslora: false,
};

if (!haveTinyFixtures) console.warn(`lora-peft: skipping PEFT fixture checks: ${MISSING_FIXTURES}`);

describe('LoRA initialization', () => {
  it("is PEFT's default: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, reproducible per seed", () => {
    const a = initLora(cfg, loraCfg, 1),
      b = initLora(cfg, loraCfg, 1),
      c = initLora(cfg, loraCfg, 2);
    expect(a.config.targetModules).toEqual(['q_proj', 'v_proj', 'down_proj']);
    const nameA = peftTensorName(1, 'down_proj', 'A');
    expect(nameA).toBe('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight');
    const A = toF32(a.tensors[nameA]);
    expect(a.tensors[nameA].shape).toEqual([4, cfg.intermediateSize]);
    const bound = 1 / Math.sqrt(cfg.intermediateSize);
    expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(bound);
    const variance = A.reduce((s, x) => s + x * x, 0) / A.length;
    expect(variance / ((bound * bound) / 3)).toBeGreaterThan(0.7);
    expect(variance / ((bound * bound) / 3)).toBeLessThan(1.3);
    expect(toF32(a.tensors[peftTensorName(0, 'q_proj', 'B')]).every((x) => x === 0)).toBe(true);
    expect(toF32(b.tensors[nameA])).toEqual(A);
    expect(toF32(c.tensors[nameA])).not.toEqual(A);
  });

  it('leaves the model unchanged until B moves; rsLoRA scales by alpha/sqrt(r)', () => {
    const model = randomModel(be, cfg, 4);
    const batch = { batchSize: 1, seqLen: 5, inputIds: Int32Array.from([1, 2, 3, 4, 5]) };
    const base = be.download(model.forward(batch));
    const adapter = LoraAdapter.upload(be, cfg, initLora(cfg, loraCfg, 3));
    model.setLora(adapter);
    expect(be.download(model.forward(batch))).toEqual(base);
    expect(loraScale({ ...loraCfg, r: 16, alpha: 32 })).toBe(2);
    expect(loraScale({ ...loraCfg, r: 16, alpha: 32, useRslora: true })).toBe(8);
  });
});

describe('PEFT adapter folder', () => {
  it('round-trips tensors bit for bit and the LoRA settings', () => {
    const host = initLora(cfg, { ...loraCfg, useRslora: true }, 7);
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-peft-'));
    writePeftAdapter(dir, host, { baseModelNameOrPath: 'Qwen/Qwen1.5-1.8B-Chat' });
    const back = readPeftAdapter(dir, cfg);
    expect(back.config).toEqual(host.config);
    expect(back.baseModelNameOrPath).toBe('Qwen/Qwen1.5-1.8B-Chat');
    expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(host.tensors).sort());
    for (const [name, t] of Object.entries(host.tensors)) expect(toF32(back.tensors[name])).toEqual(toF32(t));
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    expect(json).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.05,
      use_rslora: true,
      bias: 'none',
      fan_in_fan_out: false,
      use_dora: false,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
    });
  });

  it('refuses adapters whose math it would get wrong, naming the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-peft-'));
    writePeftAdapter(dir, initLora(cfg, loraCfg, 7));
    const path = join(dir, ADAPTER_CONFIG_FILE);
    const json = JSON.parse(readFileSync(path, 'utf8'));
    for (const [field, value, why] of [
      ['use_dora', true, /DoRA/],
      ['rank_pattern', { q_proj: 8 }, /rank_pattern/],
      ['bias', 'all', /bias/],
    ] as const) {
      writeFileSync(path, JSON.stringify({ ...json, [field]: value }));
      expect(() => readPeftAdapter(dir, cfg)).toThrow(why);
    }
    writeFileSync(path, JSON.stringify({ ...json, target_modules: ['q_proj', 'k_proj'] }));
    expect(() => readPeftAdapter(dir, cfg)).toThrow(/k_proj/);
  });
});

describe.skipIf(!haveTinyFixtures)('PEFT-written adapters (HF fixtures)', () => {
  for (const v of VARIANTS) {
    it(`${v}: loads with the config PEFT wrote, and our rewrite keeps tensors and every PEFT field`, () => {
      const model = loadModelConfig(modelDir(v));
      const peft = readPeftAdapter(adapterDir(v), model);
      expect(peft.config).toEqual({
        r: 8,
        alpha: 16,
        dropout: 0,
        targetModules: [...PROJECTIONS],
        useRslora: v === 'tied',
      });
      expect(Object.keys(peft.tensors)).toHaveLength(2 * PROJECTIONS.length * model.numLayers);
      const adapter = LoraAdapter.upload(be, model, peft);
      const dir = mkdtempSync(join(tmpdir(), 'sqlora-peft-'));
      writePeftAdapter(dir, adapter.toHost());
      const back = readPeftAdapter(dir, model);
      for (const [name, t] of Object.entries(peft.tensors)) expect(toF32(back.tensors[name]), name).toEqual(toF32(t));
      const theirs = JSON.parse(readFileSync(join(adapterDir(v), ADAPTER_CONFIG_FILE), 'utf8'));
      const ours = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
      // peft_version records the writer's version; we do not claim one.
      const missing = Object.keys(theirs).filter((k) => k !== 'peft_version' && !(k in ours));
      expect(missing).toEqual([]);
      for (const k of [
        'peft_type',
        'task_type',
        'r',
        'lora_alpha',
        'lora_dropout',
        'use_rslora',
        'bias',
        'fan_in_fan_out',
        'use_dora',
      ]) {
        expect(ours[k], k).toEqual(theirs[k]);
      }
      expect([...ours.target_modules].sort()).toEqual([...theirs.target_modules].sort());
      adapter.free();
    });
  }
});
