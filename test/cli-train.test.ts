/**
 * `sqlora train` end to end on a tiny chat model: metrics log, checkpoints, the final PEFT
 * adapter and summary; a run resumed from a checkpoint reproduces the uninterrupted loss curve;
 * Ctrl-C saves a checkpoint and exits non-zero saying how to resume; --device cuda (a GPU, or
 * the CUDA emulator) follows the CPU's loss curve.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../src/cli/args.js';
import { command } from '../src/cli/commands/train.js';
import { readPromptSettings } from '../src/data/promptSettings.js';
import { readPeftAdapter } from '../src/lora/peft.js';
import type { MetricsRecord, TrainRecord } from '../src/train/metrics.js';
import { sqlora } from './helpers/cli.js';
import { cudaTarget } from './helpers/cuda-device.js';
import {
  writeRecords,
  writeTinyChatModel,
  type SpiderQuestion,
  type TinyChatModel,
} from './helpers/tiny-chat-model.js';

let tmp: string;
let tiny: TinyChatModel;
let data: string;

const metrics = (out: string): MetricsRecord[] =>
  existsSync(join(out, 'metrics.jsonl'))
    ? readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l)
        .map((l) => JSON.parse(l) as MetricsRecord)
    : [];
const trainLosses = (out: string): [number, number][] =>
  metrics(out)
    .filter((r): r is TrainRecord => r.type === 'train')
    .map((r) => [r.step, r.loss]);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-cli-train-'));
  tiny = writeTinyChatModel(join(tmp, 'model'));
  data = join(tmp, 'data');
  mkdirSync(data);
  const train = JSON.parse(readFileSync('test/fixtures/spider/train_spider.json', 'utf8')) as SpiderQuestion[];
  const dev = JSON.parse(readFileSync('test/fixtures/spider/dev.json', 'utf8')) as SpiderQuestion[];
  writeRecords(join(data, 'train.jsonl'), tiny.dir, 'train', train.slice(0, 12));
  writeRecords(join(data, 'eval.jsonl'), tiny.dir, 'dev', dev.slice(0, 4));
  // The parts of prepare's dataset card that the adapter records as its prompt (sqlora.json).
  writeFileSync(
    join(data, 'dataset.json'),
    JSON.stringify({ format: 'schema', options: { sample_rows: 2, max_prompt_tokens: 300 } }),
  );
});

const common = (out: string, steps: number): string[] => [
  '--model',
  tiny.dir,
  '--data',
  data,
  '--out',
  out,
  '--quantize',
  'none',
  '--max-steps',
  String(steps),
  '--batch-size',
  '4',
  '--grad-accum',
  '2',
  '--lr',
  '1e-2',
  '--lora-r',
  '4',
  '--lora-alpha',
  '8',
  '--save-steps',
  '3',
  '--eval-steps',
  '3',
];

describe('sqlora train', () => {
  it('writes metrics, checkpoints, the adapter and a summary; resuming from checkpoint-3 reproduces steps 4-6', async () => {
    const out1 = join(tmp, 'run1');
    const r = await sqlora('train', common(out1, 6));
    expect(r.code, r.stderr).toBe(0);
    const log = metrics(out1);
    expect(log.filter((m) => m.type === 'train').map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(log.filter((m) => m.type === 'eval').map((m) => m.step)).toEqual([3, 6]);
    const first = log[0] as TrainRecord;
    expect(first.lr).toBe(0); // warmup starts at 0
    for (const k of ['epoch', 'loss', 'grad_norm', 'tokens', 'tokens_per_s'] as const)
      expect(first[k]).toBeGreaterThan(0);
    expect(existsSync(join(out1, 'checkpoint-3', 'optimizer.safetensors'))).toBe(true);
    const adapter = readPeftAdapter(join(out1, 'adapter'));
    expect(adapter.config).toMatchObject({
      r: 4,
      alpha: 8,
      dropout: 0.05,
      targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
    });
    expect(adapter.baseModelNameOrPath).toBe(tiny.dir);
    const prompt = {
      format: 'schema',
      sample_rows: 2,
      max_prompt_tokens: 300,
      system_prompt: 'Write SQL.', // the records' system message
      dialect: 'sqlite',
    };
    for (const dir of ['adapter', 'checkpoint-3']) {
      expect(JSON.parse(readFileSync(join(out1, dir, 'sqlora.json'), 'utf8'))).toEqual({
        sqlora: 'sqlora-prompt/1',
        prompt,
      });
      expect(readPromptSettings(join(out1, dir))).toEqual({ settings: prompt, warning: null });
    }
    const summary = JSON.parse(readFileSync(join(out1, 'training_summary.json'), 'utf8'));
    expect(summary).toMatchObject({ steps: { total: 6, warmup: 1 }, data: { train_examples: 12, eval_examples: 4 } });
    expect(summary.final_eval.step).toBe(6);

    const out2 = join(tmp, 'run2');
    const resumed = await sqlora('train', [...common(out2, 6), '--resume-from', join(out1, 'checkpoint-3')]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(trainLosses(out2)).toEqual(trainLosses(out1).slice(3));
    expect(readPeftAdapter(join(out2, 'adapter')).tensors).toEqual(adapter.tensors);

    // A fresh run must not write over a run's checkpoints; other settings cannot resume it.
    await expect(command.run(parseCommandArgs(command, common(out1, 6)))).rejects.toThrow(
      /already holds checkpoints .* pass --resume/,
    );
    await expect(
      command.run(parseCommandArgs(command, [...common(out1, 6), '--resume', '--lr', '0.5'])),
    ).rejects.toThrow(/settings differ \(--lr 0.01 there, 0.5 now\)/);
    expect(trainLosses(out1).length).toBe(6);
  });

  it('on Ctrl-C finishes the step, saves a checkpoint and exits non-zero with how to resume', async () => {
    const out = join(tmp, 'interrupted');
    const r = await sqlora('train', [...common(out, 2000), '--save-steps', '0'], {
      onSpawn(child) {
        const poll = setInterval(() => {
          if (trainLosses(out).length >= 2) {
            clearInterval(poll);
            child.kill('SIGINT');
          }
        }, 50);
        child.on('close', () => clearInterval(poll));
      },
    });
    expect(r.code).toBe(130);
    const m = /stopped at step (\d+) of 2000; checkpoint saved in (\S+); continue with --resume/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const step = Number(m![1]);
    expect(m![2]).toBe(join(out, `checkpoint-${step}`));
    expect(JSON.parse(readFileSync(join(out, `checkpoint-${step}`, 'trainer_state.json'), 'utf8')).step).toBe(step);
    expect(trainLosses(out).map(([s]) => s)).toEqual(Array.from({ length: step }, (_, i) => i + 1));
    expect(existsSync(join(out, 'adapter'))).toBe(false);
  });

  it('recomputing layers under --max-activation-gib gives the same loss curve', async () => {
    const plain = join(tmp, 'act-plain'),
      budget = join(tmp, 'act-budget');
    for (const [out, extra] of [
      [plain, []],
      [budget, ['--max-activation-gib', '0.000001']],
    ] as const) {
      await command.run(parseCommandArgs(command, [...common(out, 2), '--device', 'cpu', ...extra]));
    }
    expect(trainLosses(budget)).toEqual(trainLosses(plain));
    expect(trainLosses(plain)).toHaveLength(2);
  });

  it('explains bad settings', async () => {
    const out = join(tmp, 'bad');
    await expect(
      command.run(parseCommandArgs(command, [...common(out, 6), '--target-modules', 'q_proj,foo'])),
    ).rejects.toThrow(/"foo" is not one of/);
    await expect(command.run(parseCommandArgs(command, [...common(out, 6), '--resume']))).rejects.toThrow(
      /no checkpoint in .* to continue from/,
    );
    expect(() => parseCommandArgs(command, [...common(out, 6), '--device', 'tpu'])).toThrow(
      /--device must be one of cpu, cuda, auto/,
    );
  });

  it('on --device cuda follows the CPU run within bf16 tolerance', async (ctx) => {
    // Last in the file: once loaded, the emulator stays this process's driver library, and
    // --device auto in the tests above means the CPU.
    const saved = process.env.SQLORA_CUDA_EMULATOR;
    try {
      if (!cudaTarget('cli-train --device cuda').available) ctx.skip();
      const runs = { cpu: join(tmp, 'dev-cpu'), cuda: join(tmp, 'dev-cuda') };
      for (const [device, out] of Object.entries(runs))
        await command.run(parseCommandArgs(command, [...common(out, 2), '--device', device]));
      const cpu = trainLosses(runs.cpu),
        cuda = trainLosses(runs.cuda);
      expect(cuda.map(([s]) => s)).toEqual([1, 2]);
      cuda.forEach(([, loss], i) =>
        expect(Math.abs(loss - cpu[i][1]) / cpu[i][1], `step ${i + 1}: ${loss} vs ${cpu[i][1]}`).toBeLessThan(1e-2),
      );
      expect(readPeftAdapter(join(runs.cuda, 'adapter')).config.r).toBe(4);
    } finally {
      if (saved === undefined) delete process.env.SQLORA_CUDA_EMULATOR;
      else process.env.SQLORA_CUDA_EMULATOR = saved;
    }
    // Kernels compile on first use in the emulator: tens of seconds on 2 busy cores.
  }, 240_000);
});
