/**
 * npm run bench -- [--shape 1.8b|tiny] [--batch 16 --seq 512] [--device cuda|cpu] [--skip-hf] ...
 *
 * sqlora versus HF transformers + PEFT (tools/reference/bench_hf.py) on a Qwen2 model with random
 * weights: LoRA training steps (tokens/s, estimated MFU, peak memory) for each batch shape, and
 * greedy generation (new tokens/s). Both sides load the same checkpoint (the Python script writes
 * it) and decode the same prompts. Prints one table and writes every number as JSON.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createBackend } from '../src/backend/select.js';
import { loadModelConfig } from '../src/model/config.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { UserError } from '../src/util/errors.js';
import {
  measureGenerate,
  measureTrain,
  PEAK_FLOPS,
  randomModel,
  randomPrompts,
  shapeConfig,
  trainFlops,
  type GenerateResult,
  type LoraSettings,
  type ShapeName,
  type TrainResult,
} from './measure.js';
import { gpuTemperature, settle, type Settled } from './gpu-settle.js';
import { HF_SCRIPT, runHf, saveHfModel, type HfOutcome } from './reference.js';

const DEFAULTS: Record<
  ShapeName,
  {
    cases: [number, number][];
    steps: number;
    warmup: number;
    prompts: number;
    promptLen: number;
    newTokens: number;
    genBatch: number;
  }
> = {
  '1.8b': {
    cases: [
      [16, 512],
      [8, 128],
    ],
    steps: 10,
    warmup: 2,
    prompts: 200,
    promptLen: 110,
    newTokens: 64,
    genBatch: 50,
  },
  tiny: {
    cases: [
      [4, 64],
      [2, 32],
    ],
    steps: 2,
    warmup: 1,
    prompts: 8,
    promptLen: 24,
    newTokens: 8,
    genBatch: 4,
  },
};

const LORA: LoraSettings = { r: 16, alpha: 32, dropout: 0.05, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };

const HELP = `npm run bench -- [flags]   (in a bundle: ./bench [flags])

sqlora versus HF transformers + PEFT on a Qwen2 model with random weights: LoRA r=16 training
steps (tokens/s, MFU estimate, peak memory) and greedy generation (new tokens/s).

flags:
  --shape 1.8b|tiny     model shape (default 1.8b: Qwen1.5-1.8B's; tiny: a CPU smoke test)
  --device cuda|cpu     sqlora's backend (default cuda)
  --batch N --seq N     one training shape (default: 16x512 and 8x128; tiny: 4x64 and 2x32)
  --steps N             timed training steps (default 10; tiny 2)
  --warmup N            untimed steps first (default 2; tiny 1)
  --mode all|train|generate   what to measure (default all)
  --prompts N           generation prompts (default 200; tiny 8)
  --prompt-len N        their length, +-10% (default 110; tiny 24)
  --new-tokens N        new tokens per prompt (default 64; tiny 8)
  --gen-batch N         prompts decoded together (default 50; tiny 4)
  --quantize nf4        sqlora's base in NF4 (QLoRA's); HF stays bf16 (it has no bitsandbytes here)
  --model DIR           use this checkpoint on both sides instead of random weights
  --work DIR            where the random checkpoint and HF results go (default: $TMPDIR/sqlora-bench-SHAPE)
  --hf-python CMD       Python with torch, transformers, peft (default python3)
  --skip-hf             measure sqlora only (random weights made in JavaScript)
  --seed N              weights, batches and prompts (default 0)
  --settle S            before each measurement, wait up to S seconds for the GPU to cool back
                        to within 3 degrees C of its starting temperature (default 60; 0: no wait)
  --out FILE            JSON results (default runs/bench/bench-SHAPE-DEVICE.json)
`;

function positive(name: string, v: string | undefined, dflt: number, allowZero = false): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || (n === 0 && !allowZero))
    throw new UserError(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  return n;
}

function parse() {
  const str = { type: 'string' } as const;
  const { values } = parseArgs({
    options: {
      shape: str,
      device: str,
      batch: str,
      seq: str,
      steps: str,
      warmup: str,
      mode: str,
      prompts: str,
      'prompt-len': str,
      'new-tokens': str,
      'gen-batch': str,
      settle: str,
      quantize: str,
      model: str,
      work: str,
      'hf-python': str,
      'skip-hf': { type: 'boolean', default: false },
      seed: str,
      out: str,
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const shape = (values.shape ?? '1.8b') as ShapeName;
  if (!(shape in DEFAULTS)) throw new UserError(`--shape must be 1.8b or tiny, got ${values.shape}`);
  const device = values.device ?? 'cuda';
  if (values.quantize !== undefined && values.quantize !== 'nf4')
    throw new UserError(`--quantize must be nf4, got ${values.quantize}`);
  const quantize: 'nf4' | null = values.quantize === 'nf4' ? 'nf4' : null;
  const mode = values.mode ?? 'all';
  if (!['all', 'train', 'generate'].includes(mode))
    throw new UserError(`--mode must be all, train or generate, got ${mode}`);
  const d = DEFAULTS[shape];
  if ((values.batch === undefined) !== (values.seq === undefined))
    throw new UserError('give --batch and --seq together');
  const cases: [number, number][] =
    values.batch !== undefined ? [[positive('batch', values.batch, 0), positive('seq', values.seq, 0)]] : d.cases;
  return {
    shape,
    device,
    mode,
    cases,
    quantize,
    steps: positive('steps', values.steps, d.steps),
    warmup: positive('warmup', values.warmup, d.warmup, true),
    prompts: positive('prompts', values.prompts, d.prompts),
    promptLen: positive('prompt-len', values['prompt-len'], d.promptLen),
    newTokens: positive('new-tokens', values['new-tokens'], d.newTokens),
    genBatch: positive('gen-batch', values['gen-batch'], d.genBatch),
    model: values.model,
    work: resolve(values.work ?? join(tmpdir(), `sqlora-bench-${shape}`)),
    python: values['hf-python'] ?? 'python3',
    skipHf: values['skip-hf'],
    seed: positive('seed', values.seed, 0, true),
    settle: positive('settle', values.settle, 60, true),
    out: values.out ?? join('runs', 'bench', `bench-${shape}-${device}.json`),
  };
}

interface Row {
  workload: string;
  unit: string;
  sqlora: TrainResult | GenerateResult | { error: string };
  hf: HfOutcome | null;
  /** The GPU's temperature when each side's measurement began. */
  settled: { sqlora?: Settled; hf?: Settled };
  /** FLOPs per token for the MFU columns (training rows). */
  flopsPerToken: number | null;
}

const gib = (b: number): string =>
  b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`;
const rate = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2));
const pct = (x: number): string => `${x >= 0.001 ? (100 * x).toFixed(1) : (100 * x).toPrecision(2)}%`;
const count = (n: number): string => (n >= 1e9 ? `${(n / 1e9).toFixed(3)} B` : `${(n / 1e6).toFixed(2)} M`);

/** A row's starting temperatures, for the table's footer. */
function temps(r: Row): string {
  const one = (name: string, s: Settled | undefined): string | null =>
    s?.start_c != null
      ? `${name} ${s.start_c} C${s.waited_s >= 1 ? ` (waited ${s.waited_s.toFixed(0)} s)` : ''}`
      : null;
  return [one('HF', r.settled.hf), one('sqlora', r.settled.sqlora)].filter((x) => x).join(', ') || '-';
}

function table(rows: Row[]): string {
  const head = ['workload', 'sqlora', 'HF', 'sqlora/HF', 'MFU sqlora', 'MFU HF', 'peak sqlora', 'peak HF'];
  const body = rows.map((r) => {
    const s = 'error' in r.sqlora ? null : r.sqlora;
    const h = r.hf?.ok ? r.hf.result : null;
    const mfu = (tps: number | undefined): string =>
      tps !== undefined && r.flopsPerToken ? pct((tps * r.flopsPerToken) / PEAK_FLOPS) : '-';
    return [
      `${r.workload} (${r.unit})`,
      s ? rate(s.tokens_per_s) : 'failed',
      h ? rate(h.tokens_per_s) : r.hf ? 'failed' : 'skipped',
      s && h ? `${(s.tokens_per_s / h.tokens_per_s).toFixed(2)}x` : '-',
      mfu(s?.tokens_per_s),
      mfu(h?.tokens_per_s),
      s ? gib(s.peak_bytes) : '-',
      h ? gib(h.peak_bytes) : '-',
    ];
  });
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const o = parse();
  mkdirSync(o.work, { recursive: true });
  const notes: string[] = [];
  let modelDir = o.model ?? null;
  let hfArgs = [
    '--device',
    o.device,
    ...(o.model ? ['--model', o.model] : ['--shape', o.shape, '--seed', String(o.seed)]),
  ];
  // A Python that cannot write the checkpoint (no torch, no GPU) would fail every measurement the same way.
  let hfBroken: string | null = null;
  if (!o.skipHf && !o.model) {
    const dir = join(o.work, 'model');
    hfBroken = saveHfModel(o.python, o.shape, o.seed, dir, o.device);
    if (hfBroken)
      notes.push(
        'the HF side did not run: it could not write the random checkpoint; sqlora used random weights made in JavaScript',
      );
    else {
      modelDir = dir;
      hfArgs = ['--device', o.device, '--model', dir];
    }
  }
  const config = modelDir ? loadModelConfig(modelDir) : shapeConfig(o.shape);
  const prompts = randomPrompts(o.prompts, o.promptLen, config.vocabSize, o.seed);
  const promptsFile = join(o.work, 'prompts.json');
  writeFileSync(promptsFile, JSON.stringify(prompts));

  const rows: Row[] = [];
  const train = o.mode !== 'generate',
    gen = o.mode !== 'train';
  if (train) {
    for (const [b, t] of o.cases) {
      rows.push({
        workload: `train ${b}x${t}`,
        unit: 'tokens/s',
        sqlora: { error: 'not run' },
        hf: null,
        settled: {},
        flopsPerToken: trainFlops(config, t, LORA.r, LORA.targets).perToken,
      });
    }
  }
  if (gen)
    rows.push({
      workload: `generate ${o.prompts}x~${o.promptLen}+${o.newTokens} b${o.genBatch}${o.quantize ? ` (sqlora ${o.quantize})` : ''}`,
      unit: 'new tokens/s',
      sqlora: { error: 'not run' },
      hf: null,
      settled: {},
      flopsPerToken: null,
    });

  // Only a GPU run with --settle reads temperatures (nvidia-smi) at all.
  const baseline = o.device === 'cuda' && o.settle > 0 ? gpuTemperature() : null;
  const cool = (): Settled | undefined => (baseline === null ? undefined : settle(baseline, o.settle));
  // HF first, each measurement in its own process that frees the GPU before sqlora starts.
  if (!o.skipHf) {
    const hf = (row: Row, args: string[], out: string): void => {
      row.settled.hf = cool();
      row.hf = hfBroken ? { ok: false, error: hfBroken } : runHf(o.python, [...hfArgs, ...args], join(o.work, out));
    };
    let i = 0;
    if (train) {
      for (const [b, t] of o.cases) {
        hf(
          rows[i++],
          [
            '--mode',
            'train',
            '--batch',
            String(b),
            '--seq',
            String(t),
            '--steps',
            String(o.steps),
            '--warmup',
            String(o.warmup),
          ],
          `hf-train-${b}x${t}.json`,
        );
      }
    }
    if (gen)
      hf(
        rows[i],
        [
          '--mode',
          'generate',
          '--prompts',
          promptsFile,
          '--new-tokens',
          String(o.newTokens),
          '--gen-batch',
          String(o.genBatch),
        ],
        'hf-generate.json',
      );
  }

  const be = createBackend(o.device);
  process.stderr.write(
    `bench: sqlora on ${be.name} (${be.computeDType}${o.quantize ? `, ${o.quantize} base` : ''}), ${modelDir ? `loading ${modelDir}` : 'random weights'}\n`,
  );
  const model = modelDir
    ? Qwen2Model.load(modelDir, be, { quantize: o.quantize })
    : randomModel(config, be, o.seed, o.quantize);
  let i = 0;
  if (train) {
    for (const [b, t] of o.cases) {
      process.stderr.write(`bench: sqlora train ${b}x${t}\n`);
      rows[i].settled.sqlora = cool();
      rows[i++].sqlora = await measureTrain(model, b, t, o.steps, o.warmup, LORA, o.seed);
    }
  }
  if (gen) {
    process.stderr.write('bench: sqlora generate\n');
    rows[i].settled.sqlora = cool();
    rows[i].sqlora = await measureGenerate(model, prompts, o.newTokens, o.genBatch);
  }
  model.free();

  const flops = trainFlops(config, o.cases[0][1], LORA.r, LORA.targets);
  const hfDevice = rows.map((r) => (r.hf?.ok ? r.hf.result : null)).find((r) => r);
  const header =
    `sqlora bench — ${modelDir ?? `random ${o.shape}`}: hidden ${config.hiddenSize}, ${config.numLayers} layers, vocab ${config.vocabSize}; ` +
    `${count(flops.matmulParams)} matmul weights, LoRA r=${LORA.r} on ${LORA.targets.join(',')} (${count(flops.loraParams)})\n` +
    `sqlora: ${be.name}${hfDevice ? `; HF: ${hfDevice.device}, torch ${hfDevice.versions.torch}, transformers ${hfDevice.versions.transformers}, peft ${hfDevice.versions.peft}` : ''}`;
  const footer = [
    'MFU = tokens/s x (4N + 6N_lora + 12*L*T*H*hd) / 989 TFLOP/s (H100 SXM dense bf16); N = matmul weights incl. lm_head, T = sequence length.',
    `peak: sqlora ${rows.some((r) => 'peak_kind' in r.sqlora && r.sqlora.peak_kind === 'process-rss') ? 'process peak RSS' : 'device allocator peak (live tensors)'}, HF torch.cuda.max_memory_allocated.`,
    ...(baseline !== null
      ? [
          `GPU temperature at the start: ${baseline} C; at each measurement's start (after waiting up to ${o.settle} s to come within 3 C): ${rows.map((r) => `${r.workload} ${temps(r)}`).join('; ')}.`,
        ]
      : []),
    ...rows.flatMap((r) => (r.hf && !r.hf.ok ? [`HF ${r.workload}: ${r.hf.error}`] : [])),
    ...notes,
  ];
  process.stdout.write(`\n${header}\n\n${table(rows)}\n\n${footer.join('\n')}\n`);

  const json = {
    shape: o.shape,
    model: modelDir ?? `random ${o.shape} (JavaScript)`,
    device: o.device,
    backend: be.name,
    quantize: o.quantize,
    seed: o.seed,
    lora: LORA,
    settings: {
      steps: o.steps,
      warmup: o.warmup,
      prompts: o.prompts,
      prompt_len: o.promptLen,
      new_tokens: o.newTokens,
      gen_batch: o.genBatch,
    },
    peak_flops: PEAK_FLOPS,
    hf_script: HF_SCRIPT,
    notes,
    gpu_start_c: baseline,
    settle_s: o.settle,
    rows: rows.map((r) => ({
      workload: r.workload,
      unit: r.unit,
      flops_per_token: r.flopsPerToken,
      settled: r.settled,
      sqlora: r.sqlora,
      hf: r.hf ? (r.hf.ok ? r.hf.result : { error: r.hf.error }) : null,
    })),
  };
  mkdirSync(dirname(resolve(o.out)), { recursive: true });
  writeFileSync(o.out, JSON.stringify(json, null, 1) + '\n');
  process.stderr.write(`bench: wrote ${o.out}\n`);
  if (rows.some((r) => r.hf && !r.hf.ok)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(
    err instanceof UserError
      ? `error: ${err.message}\n`
      : `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = err instanceof UserError ? err.exitCode : 70;
});
