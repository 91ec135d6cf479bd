/**
 * The model's explicit backward pass against central finite differences of the loss, in f64:
 * every LoRA factor of every layer and projection, with GQA, padding, completion-only labels,
 * and with LoRA dropout (same seed in both passes); the loss over blocks of a few rows (gathered
 * where their targets are scattered) equals the loss over one block.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { LoraAdapter } from '../src/lora/lora.js';
import { readPeftAdapter } from '../src/lora/peft.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import type { TrainBatch } from '../src/model/qwen2-batch.js';
import { PROJECTIONS } from '../src/model/qwen2-linear.js';
import { loraWithRandomB, randomArray, randomModel, rng, tinyConfig } from './helpers/random-qwen2.js';
import {
  adapterDir,
  haveTinyFixtures,
  MISSING_FIXTURES,
  modelDir,
  readReference,
  relativeError,
  VARIANTS,
} from './helpers/tiny-fixture.js';

const be = new CpuBackend({ float64: true });
const cfg = tinyConfig();
const model = randomModel(be, cfg, 5);

function makeAdapter(dropout: number): LoraAdapter {
  return LoraAdapter.upload(
    be,
    cfg,
    loraWithRandomB(cfg, { r: 4, alpha: 8, dropout, targetModules: [...PROJECTIONS], useRslora: false }, 9, 11),
  );
}

/** Right-padded rows of lengths 6, 4, 2 with the first two real tokens of each masked. */
function batch(): TrainBatch {
  const B = 3,
    T = 6,
    lengths = [6, 4, 2];
  const rand = rng(17);
  const inputIds = new Int32Array(B * T),
    attentionMask = new Int32Array(B * T),
    labels = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < lengths[b]; t++) {
      const id = 1 + Math.floor(rand() * (cfg.vocabSize - 1));
      inputIds[b * T + t] = id;
      attentionMask[b * T + t] = 1;
      if (t >= 2) labels[b * T + t] = id;
    }
  return { batchSize: B, seqLen: T, inputIds, attentionMask, labels };
}

function checkAgainstFiniteDifferences(adapter: LoraAdapter, loss: () => number, seed: number): void {
  const grads = adapter.gradsToHost();
  const rand = rng(seed);
  const h = 1e-5;
  for (const p of adapter.parameters()) {
    const base = Float64Array.from(be.download(p.param));
    const dir = randomArray(base.length, 1, rand);
    const shifted = (s: number): number => {
      be.copy(
        p.param,
        be.upload(
          base.map((v, i) => v + s * dir[i]),
          p.param.shape,
        ),
      );
      return loss();
    };
    const fd = (shifted(h) - shifted(-h)) / (2 * h);
    be.copy(p.param, be.upload(base, p.param.shape));
    let analytic = 0;
    for (let i = 0; i < base.length; i++) analytic += grads[p.name][i] * dir[i];
    expect(Math.abs(analytic), `${p.name} gradient is zero`).toBeGreaterThan(1e-4);
    expect(Math.abs(fd - analytic) / Math.abs(analytic), p.name).toBeLessThan(1e-6);
  }
}

describe('Qwen2 backward (LoRA gradients)', () => {
  it('matches finite differences for every lora_A and lora_B', () => {
    const adapter = makeAdapter(0);
    model.setLora(adapter);
    const b = batch();
    adapter.zeroGrad();
    const step = model.forwardTrain(b);
    model.backward(step);
    expect(step.tokens).toBe(4 + 2 + 0); // shifted targets: tokens 2.. of rows of length 6, 4, 2
    checkAgainstFiniteDifferences(adapter, () => model.evalLoss(b).loss, 1);
    adapter.free();
  });

  it('matches finite differences with LoRA dropout (mask recomputed from the seed)', () => {
    const adapter = makeAdapter(0.3);
    model.setLora(adapter);
    const b = batch();
    adapter.zeroGrad();
    model.backward(model.forwardTrain(b, { dropoutSeed: 123 }));
    // forwardTrain applies the same masks for the same seed; its state is simply dropped.
    checkAgainstFiniteDifferences(adapter, () => model.forwardTrain(b, { dropoutSeed: 123 }).loss, 2);
    const other = model.forwardTrain(b, { dropoutSeed: 124 }).loss;
    expect(other).not.toBeCloseTo(model.forwardTrain(b, { dropoutSeed: 123 }).loss, 6);
    adapter.free();
  });

  it('gives the same loss and gradients with the rows of targets in blocks of 3 (rows 1-3 in place, 4, 7, 8 gathered) as in one block (gathered)', () => {
    const adapter = makeAdapter(0);
    const blocks = new Qwen2Model(cfg, be, model.weights, { logitsChunkElements: 3 * cfg.vocabSize });
    const b = batch();
    const run = (m: Qwen2Model): { loss: number; grads: ReturnType<LoraAdapter['gradsToHost']> } => {
      m.setLora(adapter);
      adapter.zeroGrad();
      const step = m.forwardTrain(b);
      m.backward(step);
      m.setLora(null);
      return { loss: step.loss, grads: adapter.gradsToHost() };
    };
    const one = run(model),
      two = run(blocks);
    expect(two.loss).toBe(one.loss);
    for (const [name, g] of Object.entries(one.grads)) expect(two.grads[name], name).toEqual(g);
    // No target at all: a zero loss and no gradient.
    const none = { ...b, labels: new Int32Array(b.labels!.length).fill(-100) };
    blocks.setLora(adapter);
    adapter.zeroGrad();
    const empty = blocks.forwardTrain(none);
    blocks.backward(empty);
    expect(empty.loss).toBe(0);
    for (const [name, g] of Object.entries(adapter.gradsToHost()))
      expect(
        g.every((v) => v === 0),
        name,
      ).toBe(true);
    blocks.setLora(null);
    adapter.free();
  });

  it('accumulates gradients over backward calls and honours lossNormalizer', () => {
    const adapter = makeAdapter(0);
    model.setLora(adapter);
    const b = batch();
    adapter.zeroGrad();
    const one = model.forwardTrain(b);
    model.backward(one);
    const g1 = adapter.gradsToHost();
    model.backward(model.forwardTrain(b, { lossNormalizer: 2 * one.tokens }));
    const g2 = adapter.gradsToHost();
    for (const name of Object.keys(g1)) {
      for (let i = 0; i < g1[name].length; i += 7) expect(g2[name][i]).toBeCloseTo(1.5 * g1[name][i], 10);
    }
    expect(() => model.backward(one)).toThrow(/already used/);
    adapter.free();
  });
});

if (!haveTinyFixtures) console.warn(`model-backward: skipping HF comparisons: ${MISSING_FIXTURES}`);

describe.skipIf(!haveTinyFixtures)('Qwen2 loss and LoRA gradients against HF transformers + PEFT', () => {
  for (const v of VARIANTS) {
    it(`${v}: loss and every lora_A / lora_B gradient agree within 1e-4 (relative)`, () => {
      const cpu = new CpuBackend();
      const ref = readReference(v);
      const m = Qwen2Model.load(modelDir(v), cpu);
      const adapter = LoraAdapter.upload(cpu, m.config, readPeftAdapter(adapterDir(v), m.config));
      m.setLora(adapter);
      for (const side of ['right', 'left'] as const) {
        const [B, T] = ref.shape(`${side}.input_ids`);
        const b: TrainBatch = {
          batchSize: B,
          seqLen: T,
          inputIds: ref.ints(`${side}.input_ids`),
          attentionMask: ref.ints(`${side}.attention_mask`),
          labels: ref.ints(`${side}.labels`),
        };
        adapter.zeroGrad();
        const step = m.forwardTrain(b);
        m.backward(step);
        expect(
          Math.abs(step.loss - ref.floats(`${side}.loss`)[0]) / ref.floats(`${side}.loss`)[0],
          `${side} loss`,
        ).toBeLessThan(1e-5);
        if (side !== 'right') continue;
        const grads = adapter.gradsToHost();
        const names = ref.names().filter((n) => n.startsWith('grad.'));
        expect(names).toHaveLength(adapter.parameters().length);
        for (const name of names) {
          const ours = grads[name.slice('grad.'.length)];
          expect(ours, name).toBeDefined();
          expect(relativeError(ours, ref.floats(name)), name).toBeLessThan(1e-4);
        }
      }
      adapter.free();
    });
  }
});
