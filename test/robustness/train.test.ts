/**
 * `sqlora train` against a careful tester: two runs into one folder, damaged checkpoint states,
 * stale locks and temporary folders, Ctrl-C, a diverging run. Each refusal is checked for its
 * exit code, its one-line message, and for leaving every file of the run as it was.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../../src/cli/args.js';
import { command } from '../../src/cli/commands/train.js';
import { ADAPTER_WEIGHTS_FILE } from '../../src/lora/peft.js';
import { UserError } from '../../src/util/errors.js';
import { lastFiniteCheckpoint } from '../../src/train/checkpoint.js';
import { SafetensorsFile, writeSafetensors } from '../../src/tensor/safetensors.js';
import { f32Tensor, toF32 } from '../../src/tensor/tensor.js';
import { sqlora } from '../helpers/cli.js';
import { writeRecords, writeTinyChatModel, type SpiderQuestion } from '../helpers/tiny-chat-model.js';
import { deadPid, expectRefused, snapshot, waitFor } from './helpers.js';

let tmp: string;
let model: string;
let data: string;
let done: string; // a finished 6-step run: checkpoint-3 (its newest), adapter/, metrics.jsonl
let doneLog: string; // its stderr

const flags = (out: string, steps: number, ...extra: string[]): string[] => [
  ...['--model', model, '--data', data, '--out', out, '--quantize', 'none', '--device', 'cpu'],
  ...['--max-steps', String(steps), '--batch-size', '4', '--grad-accum', '1', '--lr', '1e-2', '--lora-r', '2'],
  ...['--save-steps', '3', '--eval-steps', '3'],
  ...extra,
];
const steps = (out: string): number[] =>
  existsSync(join(out, 'metrics.jsonl'))
    ? readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"train"'))
        .map((l) => (JSON.parse(l) as { step: number }).step)
    : [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-robust-train-'));
  model = writeTinyChatModel(join(tmp, 'model')).dir;
  data = join(tmp, 'data');
  mkdirSync(data);
  const train = JSON.parse(readFileSync('test/fixtures/spider/train_spider.json', 'utf8')) as SpiderQuestion[];
  writeRecords(join(data, 'train.jsonl'), model, 'train', train.slice(0, 8));
  writeRecords(join(data, 'eval.jsonl'), model, 'train', train.slice(8, 10));
  done = join(tmp, 'done');
  const r = await sqlora('train', flags(done, 6));
  expect(r.code, r.stderr).toBe(0);
  doneLog = r.stderr;
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('train: one run per folder', () => {
  it('refuses a second run (fresh or --resume) while one runs; Ctrl-C then says where it stopped and how to go on', async () => {
    const out = join(tmp, 'busy');
    let second: Awaited<ReturnType<typeof sqlora>>[] = [];
    const first = await sqlora('train', flags(out, 5000, '--save-steps', '0'), {
      onSpawn(child) {
        void (async () => {
          await waitFor(() => steps(out).length >= 2, 30_000, 'the first run to train');
          const before = steps(out);
          second = await Promise.all([
            sqlora('train', flags(out, 5000)),
            sqlora('train', flags(out, 5000, '--resume')),
          ]);
          // The refused runs wrote nothing: the log kept growing from where it was, step after step.
          expect(steps(out).slice(0, before.length)).toEqual(before);
          child.kill('SIGINT');
        })();
      },
    });
    for (const r of second)
      expectRefused(
        r,
        /busy is in use by another run \(sqlora train, pid \d+, since .*\): wait for it to finish, or choose another --out/,
      );
    expectRefused(
      first,
      /^error: stopped at step (\d+) of 5000; checkpoint saved in \S+checkpoint-\d+; continue with --resume/,
      130,
    );
    const stopped = Number(/stopped at step (\d+)/.exec(first.stderr)![1]);
    expect(steps(out)).toEqual(Array.from({ length: stopped }, (_, i) => i + 1));
    expect(existsSync(join(out, `checkpoint-${stopped}`, 'trainer_state.json'))).toBe(true);
    expect(existsSync(join(out, '.sqlora.lock'))).toBe(false);
  }, 60_000);

  it('SIGTERM (a scheduler stopping the job) also ends with a checkpoint: exit 143, lock released', async () => {
    const out = join(tmp, 'term');
    const r = await sqlora('train', flags(out, 5000, '--save-steps', '0'), {
      onSpawn(child) {
        void waitFor(() => steps(out).length >= 1, 30_000, 'a step').then(() => child.kill('SIGTERM'));
      },
    });
    expectRefused(r, /^error: stopped at step (\d+) of 5000; checkpoint saved in \S+; continue with --resume/, 143);
    const stopped = Number(/stopped at step (\d+)/.exec(r.stderr)![1]);
    expect(steps(out)).toEqual(Array.from({ length: stopped }, (_, i) => i + 1));
    expect(existsSync(join(out, `checkpoint-${stopped}`, 'optimizer.safetensors'))).toBe(true);
    expect(existsSync(join(out, '.sqlora.lock'))).toBe(false);
  }, 30_000);

  it("takes over a dead run's lock and removes its unfinished checkpoint folders, keeping a live writer's", async () => {
    const out = join(tmp, 'stale');
    const unfinished = join(out, `checkpoint-3.tmp-${deadPid()}`);
    mkdirSync(unfinished, { recursive: true });
    writeFileSync(join(unfinished, 'adapter_config.json'), '{');
    mkdirSync(join(out, `checkpoint-9.tmp-${process.pid}`));
    writeFileSync(join(out, '.sqlora.lock'), JSON.stringify({ pid: deadPid(), command: 'train', started: 'x' }));
    const r = await sqlora('train', flags(out, 2));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /removed \S+checkpoint-3\.tmp-\d+, a checkpoint an interrupted run did not finish writing/,
    );
    expect(readdirSync(out).filter((n) => n.includes('.tmp-'))).toEqual([`checkpoint-9.tmp-${process.pid}`]);
    expect(steps(out)).toEqual([1, 2]);
    expect(existsSync(join(out, '.sqlora.lock'))).toBe(false);
  }, 30_000);
});

describe.concurrent(
  'train --resume: a damaged checkpoint is refused naming the field, before anything is touched',
  () => {
    const state = (): Record<string, unknown> =>
      JSON.parse(readFileSync(join(done, 'checkpoint-3', 'trainer_state.json'), 'utf8'));
    const cases: [string, (s: Record<string, unknown>) => void, RegExp][] = [
      ['step -5', (s) => (s.step = -5), /"step" must be an integer from 1 to 6, got -5/],
      ['no step', (s) => delete s.step, /"step" must be an integer from 1 to 6, got nothing/],
      ['step "20"', (s) => (s.step = '20'), /"step" must be an integer from 1 to 6, got "20"/],
      ['step 12.5', (s) => (s.step = 12.5), /"step" must be an integer from 1 to 6, got 12\.5/],
      ['step 5 in checkpoint-3', (s) => (s.step = 5), /"step" is 5 but the folder is checkpoint-3/],
      ['total_steps null', (s) => (s.total_steps = null), /"total_steps" must be an integer from 1 to any, got null/],
      ['loss_sum null', (s) => (s.loss_sum = null), /"loss_sum" must be a finite number >= 0, got null/],
      ['tokens_seen -1', (s) => (s.tokens_seen = -1), /"tokens_seen" must be an integer from 0 to any, got -1/],
      [
        'best_eval after the step',
        (s) => (s.best_eval = { step: 6, eval_loss: 1 }),
        /"best_eval.step" must be an integer from 1 to the checkpoint's step 3, got 6/,
      ],
      ['settings a string', (s) => (s.settings = 'x'), /"settings" must be an object of flag values/],
      ['data_fingerprint empty', (s) => (s.data_fingerprint = ''), /"data_fingerprint" must be a non-empty string/],
      [
        'another data fingerprint',
        (s) => (s.data_fingerprint = 'abc'),
        /the training data differ from the data it was trained on/,
      ],
      [
        'epoch off the step',
        (s) => (s.epoch = 0.5),
        /"epoch" is 0\.5 but step 3 of 2 per epoch is epoch 1\.5: the checkpoint is damaged/,
      ],
      [
        'a format of the future',
        (s) => (s.format = 'sqlora-trainer-state/9'),
        /"format" must be "sqlora-trainer-state\/1"/,
      ],
    ];
    it.each(cases)(
      '%s',
      async (_name, damage, message) => {
        const out = join(tmp, `resume-${_name.replace(/\W+/g, '-')}`);
        cpSync(done, out, { recursive: true });
        const s = state();
        damage(s);
        writeFileSync(join(out, 'checkpoint-3', 'trainer_state.json'), JSON.stringify(s));
        const before = snapshot(out);
        // Two cases go through the CLI (exit code, one line); the others call the command in this
        // process (the same code path, without a process start per case): a UserError exits 1.
        if (_name === 'step -5' || _name === 'no step')
          expectRefused(await sqlora('train', flags(out, 6, '--resume')), message);
        else {
          const err: unknown = await Promise.resolve()
            .then(() => command.run(parseCommandArgs(command, flags(out, 6, '--resume'))))
            .then(
              () => null,
              (e: unknown) => e,
            );
          expect(err).toBeInstanceOf(UserError);
          expect((err as UserError).exitCode).toBe(1);
          expect((err as UserError).message).toMatch(message);
        }
        expect(snapshot(out)).toEqual(before);
      },
      30_000,
    );

    it('optimizer moments that cannot be (a negative exp_avg_sq) are refused', async () => {
      const out = join(tmp, 'resume-optimizer');
      cpSync(done, out, { recursive: true });
      const path = join(out, 'checkpoint-3', 'optimizer.safetensors');
      const tensors = SafetensorsFile.readAll(path);
      const name = Object.keys(tensors).find((n) => n.endsWith('.exp_avg_sq'))!;
      const v = toF32(tensors[name]).slice();
      v[1] = -1;
      tensors[name] = f32Tensor(tensors[name].shape, v);
      writeSafetensors(path, tensors, { format: 'pt' });
      const before = snapshot(out);
      expectRefused(
        await sqlora('train', flags(out, 6, '--resume')),
        new RegExp(
          `optimizer.safetensors: ${name.replaceAll('.', '\\.')} holds -1 at index 1: the optimizer state is damaged`,
        ),
      );
      expect(snapshot(out)).toEqual(before);
    }, 30_000);
  },
);

describe('train: progress', () => {
  it('each eval loss pass has its own bar; the step rate is steps over the time they took', () => {
    const evals = doneLog.split('\n').filter((l) => l.startsWith('eval loss ['));
    expect(evals).toHaveLength(2);
    for (const l of evals) expect(l).toMatch(/^eval loss \[#{20}\] 2\/2 [\d.]+ ex\/s ETA 00:00 {2}loss \d\.\d{3}$/);
    const last = /^train \[#{20}\] 6\/6 ([\d.]+) step\/s/m.exec(doneLog);
    expect(last, doneLog).not.toBeNull();
    const log = readFileSync(join(done, 'metrics.jsonl'), 'utf8').trim().split('\n');
    const trainSeconds = (JSON.parse(log.filter((l) => l.includes('"train"')).pop()!) as { elapsed_s: number })
      .elapsed_s;
    // The bar's clock runs from before the first step: no faster than the steps' own time allows.
    expect(Number(last![1])).toBeLessThanOrEqual((6 / trainSeconds) * 1.01);
  });
});

describe('train: divergence', () => {
  it('names no checkpoint as good when the saved weights are not finite', async () => {
    const out = join(tmp, 'nan');
    const r = await sqlora('train', flags(out, 4, '--lr', '1e300', '--warmup-ratio', '0', '--save-steps', '1'));
    expectRefused(
      r,
      /training stopped: the (loss|gradient norm) is NaN at step 2.*No checkpoint holds finite weights; start again with a lower --lr/,
    );
    expect(existsSync(join(out, 'checkpoint-1'))).toBe(true);
    expect(existsSync(join(out, 'adapter'))).toBe(false);
  }, 30_000);

  it('the last checkpoint with finite weights is the one named', () => {
    const out = join(tmp, 'finite');
    mkdirSync(out);
    cpSync(join(done, 'checkpoint-3'), join(out, 'checkpoint-3'), { recursive: true });
    cpSync(join(done, 'checkpoint-3'), join(out, 'checkpoint-6'), { recursive: true });
    const path = join(out, 'checkpoint-6', ADAPTER_WEIGHTS_FILE);
    const tensors = SafetensorsFile.readAll(path);
    const name = Object.keys(tensors)[0];
    const v = toF32(tensors[name]).slice();
    v[0] = NaN;
    tensors[name] = f32Tensor(tensors[name].shape, v);
    writeSafetensors(path, tensors);
    expect(lastFiniteCheckpoint(out)).toEqual({ step: 3, dir: join(out, 'checkpoint-3') });
  });
});
