/**
 * The SFT loop on a small random model: gradient accumulation with step-wide normalization
 * equals one big batch, an interrupted run resumed from its checkpoint continues on exactly the
 * same loss curve, a NaN stops training keeping the last good checkpoint, the eval loss is a
 * token-weighted mean, and checkpoints are pruned around the best one.
 */
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { initLora, LoraAdapter, type HostLora } from '../src/lora/lora.js';
import { buildExample, fingerprintExamples, type TrainExample } from '../src/train/batching.js';
import { listCheckpoints, loadTrainCheckpoint } from '../src/train/checkpoint.js';
import { evaluateLoss, trainSft, TrainingDivergedError, type SftConfig } from '../src/train/sft.js';
import { randomModel, rng, tinyConfig } from './helpers/random-qwen2.js';

const be = new CpuBackend();
const cfg = tinyConfig();
const model = randomModel(be, cfg, 4);

function examples(n: number, seed: number): TrainExample[] {
  const rand = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const len = 4 + Math.floor(rand() * 12);
    const ids = Array.from({ length: len }, () => 1 + Math.floor(rand() * (cfg.vocabSize - 1)));
    return buildExample(ids, i % 3 === 0 ? 0 : 2, {
      maxLength: 64,
      lossOnPrompt: i % 3 === 0,
      endOfTurnIds: new Set(),
    });
  });
}
const train = examples(20, 1);
const evalSet = examples(6, 2);
const data = { train, eval: evalSet, fingerprint: fingerprintExamples(train) };

function config(over: Partial<SftConfig> = {}): SftConfig {
  return {
    epochs: 2,
    maxSteps: 0,
    batchSize: 4,
    gradAccum: 2,
    lr: 5e-2,
    warmupRatio: 0.1,
    weightDecay: 0.01,
    maxGradNorm: 1,
    seed: 3,
    groupByLength: true,
    evalSteps: 0,
    evalBatchSize: 4,
    saveSteps: 0,
    saveTotalLimit: 0,
    padId: 0,
    outDir: mkdtempSync(join(tmpdir(), 'sqlora-sft-')),
    baseModel: 'tiny',
    settings: { lr: 5e-2 },
    ...over,
  };
}

function adapterFrom(host: HostLora): LoraAdapter {
  const a = LoraAdapter.upload(be, cfg, host);
  model.setLora(a);
  return a;
}

const lora = (dropout: number): HostLora =>
  initLora(
    cfg,
    { r: 4, alpha: 8, dropout, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], useRslora: false },
    11,
  );

async function run(c: SftConfig, host: HostLora, stopAfter?: number) {
  const adapter = adapterFrom(host);
  const losses: number[] = [];
  const result = await trainSft(model, adapter, data, c, {
    onStep: (r) => losses.push(r.loss),
    stopRequested: () => losses.length === stopAfter,
  });
  return { result, losses, weights: adapter.toHost(), adapter };
}

describe('trainSft', () => {
  // Equal up to f32 summation order (the weights drift a little further: Adam's update of a
  // near-zero gradient is sign-sensitive, so they are not compared).
  it('accumulating 2 micro-batches of 4 equals one batch of 8 (loss normalized over the step)', async () => {
    const a = await run(config({ batchSize: 4, gradAccum: 2 }), lora(0));
    const b = await run(config({ batchSize: 8, gradAccum: 1 }), lora(0));
    expect(a.losses.length).toBe(6); // 20 examples: 3 steps per epoch, the last with 4 examples
    expect(b.losses.length).toBe(6);
    for (let i = 0; i < a.losses.length; i++)
      expect(Math.abs(a.losses[i] - b.losses[i]) / b.losses[i]).toBeLessThan(1e-5);
    expect(a.losses[a.losses.length - 1]).toBeLessThan(a.losses[0]);
  });

  it('resumed from a checkpoint, continues on exactly the loss curve of an uninterrupted run', async () => {
    const straight = await run(config({ maxSteps: 6 }), lora(0.1));
    const first = await run(config({ maxSteps: 6 }), lora(0.1), 3);
    expect(first.result.status).toBe('interrupted');
    expect(first.losses).toEqual(straight.losses.slice(0, 3));
    const ckpt = loadTrainCheckpoint(first.result.checkpoint!, cfg);
    expect(ckpt.state.step).toBe(3);
    const adapter = adapterFrom(ckpt.adapter);
    const rest: number[] = [];
    const c = config({ maxSteps: 6, outDir: join(first.result.checkpoint!, '..') });
    const done = await trainSft(
      model,
      adapter,
      data,
      c,
      { onStep: (r) => rest.push(r.loss) },
      { optimizer: ckpt.optimizer, state: ckpt.state, dir: ckpt.dir },
    );
    expect(done.status).toBe('completed');
    expect(rest).toEqual(straight.losses.slice(3));
    expect(adapter.toHost().tensors).toEqual(straight.weights.tensors);
  });

  it('refuses to resume with other settings or data', async () => {
    const first = await run(config({ maxSteps: 4 }), lora(0), 2);
    const ckpt = loadTrainCheckpoint(first.result.checkpoint!, cfg);
    const adapter = adapterFrom(ckpt.adapter);
    const resume = { optimizer: ckpt.optimizer, state: ckpt.state, dir: ckpt.dir };
    await expect(
      trainSft(model, adapter, data, config({ maxSteps: 4, settings: { lr: 1e-3 } }), {}, resume),
    ).rejects.toThrow(/settings differ \(--lr 0.05 there, 0.001 now\)/);
    const other = { ...data, fingerprint: fingerprintExamples(examples(20, 9)) };
    await expect(trainSft(model, adapter, other, config({ maxSteps: 4 }), {}, resume)).rejects.toThrow(
      /training data differ/,
    );
  });

  it('stops on a NaN loss, keeping the last good checkpoint', async () => {
    const c = config({ maxSteps: 8, saveSteps: 2 });
    const adapter = adapterFrom(lora(0));
    let steps = 0;
    const poison = (): void => {
      // The last layer's o_proj output goes straight into the residual stream: the loss turns NaN.
      if (++steps === 3)
        be.fill(adapter.parameters().find((p) => p.name.includes('layers.1.self_attn.o_proj.lora_B'))!.param, NaN);
    };
    const err = await trainSft(model, adapter, data, c, { onStep: poison }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect((err as Error).message).toMatch(
      /the loss is NaN at step 4 .*last checkpoint with finite weights is .*checkpoint-2 \(step 2\)/,
    );
    expect(listCheckpoints(c.outDir).map((k) => k.step)).toEqual([2]);
    expect(readdirSync(c.outDir).filter((n) => n.includes('tmp'))).toEqual([]);
  });

  it('evaluates a token-weighted mean loss that does not depend on batching or padding', async () => {
    adapterFrom(lora(0));
    const whole = await evaluateLoss(model, evalSet, 4, 0);
    let sum = 0,
      tokens = 0;
    for (const e of evalSet) {
      const r = await evaluateLoss(model, [e], 1, 0);
      sum += r.loss * r.tokens;
      tokens += r.tokens;
    }
    expect(whole.tokens).toBe(evalSet.reduce((n, e) => n + e.targets, 0));
    expect(Math.abs(whole.loss - sum / tokens)).toBeLessThan(1e-5);
  });

  it('records eval losses and keeps only the newest checkpoints plus the best', async () => {
    const evals: number[] = [];
    const c = config({ maxSteps: 6, evalSteps: 1, saveSteps: 1, saveTotalLimit: 2, lr: 0.3 });
    const adapter = adapterFrom(lora(0));
    const r = await trainSft(model, adapter, data, c, { onEval: (e) => evals.push(e.eval_loss) });
    expect(evals.length).toBe(6);
    const best = r.state.best_eval!;
    expect(best.eval_loss).toBe(Math.min(...evals));
    const kept = listCheckpoints(c.outDir).map((k) => k.step);
    // Checkpoints at steps 1..5 (none after the last step); the newest two and the best survive.
    expect(kept).toEqual([...new Set([...(best.step < 4 ? [best.step] : []), 4, 5])]);
    expect(existsSync(join(c.outDir, 'checkpoint-5', 'adapter_model.safetensors'))).toBe(true);
  });
});
