import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildToyModel,
  defaultTokenizerDir,
  loadModel,
  prepareDataset,
  readRecords,
  trainAdapter,
} from '../src/index.js';
import type { LoadedModel, TrainRecord } from '../src/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-api-train-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let loaded: LoadedModel;
let train: ReturnType<typeof readRecords>;

beforeAll(async () => {
  await prepareDataset({
    ...{ spider: 'test/fixtures/spider', out: join(tmp, 'data'), format: 'seed', modelDir: defaultTokenizerDir() },
    ...{ trainLimit: 8, evalLimit: 0, shuffle: false, seed: 42, trainSplits: 'spider', sampleRows: 0 },
    ...{ maxPromptTokens: 448, quiet: true },
  });
  train = readRecords(join(tmp, 'data', 'train.jsonl'));
  const toy = buildToyModel(join(tmp, 'model'), defaultTokenizerDir());
  loaded = await loadModel({ model: toy.dir, device: 'cpu', quantize: 'none', quiet: true });
});

describe('trainAdapter (library API)', () => {
  it('reports each step and stops at an aborted signal with a checkpoint', async () => {
    const steps: TrainRecord[] = [];
    const stop = new AbortController();
    const r = await trainAdapter(loaded, {
      train,
      outDir: join(tmp, 'stopped'),
      config: { maxSteps: 3, batchSize: 2, gradAccum: 1 },
      signal: stop.signal,
      onStep(s) {
        steps.push(s);
        if (s.step === 1) stop.abort();
      },
    });
    expect(r.status).toBe('interrupted');
    expect(steps.map((s) => s.step)).toEqual([1]);
    expect(Number.isFinite(steps[0].loss)).toBe(true);
    expect(r.checkpoint).not.toBeNull();
    expect(existsSync(r.checkpoint as string)).toBe(true);
    expect(r.adapterDir).toBeNull();
  });

  it('writes the PEFT adapter when the run completes', async () => {
    const r = await trainAdapter(loaded, {
      train,
      outDir: join(tmp, 'done'),
      config: { maxSteps: 2, batchSize: 4, gradAccum: 1 },
    });
    expect(r.status).toBe('completed');
    expect(r.state.step).toBe(2);
    expect(r.adapterDir).toBe(join(tmp, 'done', 'adapter'));
    expect(existsSync(join(r.adapterDir as string, 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(r.adapterDir as string, 'adapter_model.safetensors'))).toBe(true);
  });
});
