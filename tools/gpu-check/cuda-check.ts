/**
 * The CUDA backend's whole check on a GPU machine, without vitest: every kernel against the CPU
 * backend (f32 and bf16 storage), the HF tiny-model fixtures, short training runs against the
 * CPU, then timings at Qwen1.5-1.8B's shapes. Prints a report and writes it (plus JSON) to the
 * folder given as the first argument. Each section catches its own failure and goes on.
 *
 *   npx tsx tools/gpu-check/cuda-check.ts out/ [--no-timing] [--only=TEXT]
 *
 * --only=TEXT runs only the kernel cases whose name contains TEXT (and nothing else): a kernel
 * that crashes the device then takes no other case down with it.
 *
 * For a machine without Node tooling, bundle it (koffi stays external):
 *   npx esbuild tools/gpu-check/cuda-check.ts --bundle --platform=node --format=esm \
 *     --external:koffi --outfile=.gpu/cuda-test/bundle/run.mjs
 * and run it next to node_modules/koffi and a copy of test/fixtures/tiny as ../fixtures/tiny.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FloatDType } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import { probeCuda } from '../../src/backend/select.js';
import { compareOutputs, toleranceFor, PARITY_CASES } from '../../test/helpers/backend-parity.js';
import { hfFixtureErrors, recomputeGradients, trainingErrors } from '../../test/helpers/model-parity.js';
import { haveTinyFixtures, VARIANTS } from '../../test/helpers/tiny-fixture.js';
import { generationTiming, kernelTimings, SHAPE_1_8B, trainStepTiming } from './timing.js';
import { openLog } from './log.js';

const outDir = process.argv[2] ?? 'gpu-check-out';
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? null;
const timing = !process.argv.includes('--no-timing') && only === null;
const log = openLog(outDir, 'cuda-check.log');
const report: Record<string, unknown> = {};
let failures = 0;

function section(name: string, fn: () => void): void {
  log(`\n== ${name}`);
  const t0 = performance.now();
  try {
    fn();
  } catch (err) {
    failures++;
    log(`  FAILED: ${(err as Error).stack ?? String(err)}`);
  }
  log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

const probe = probeCuda();
if (!probe.available) {
  log(`no CUDA GPU: ${probe.reason}`);
  process.exit(1);
}
const backends: Record<FloatDType, CudaBackend | null> = { f32: null, bf16: null, f16: null };
const cuda = (dt: FloatDType): CudaBackend => (backends[dt] ??= new CudaBackend({ computeDType: dt }));
const cpu = new CpuBackend();

section('device', () => {
  const be = cuda('bf16');
  const d = be.device;
  report.device = { name: d.name, cc: d.cc, sms: d.smCount, memoryGiB: d.totalMemory / 2 ** 30 };
  log(
    `  ${be.name}: compute capability ${(d.cc / 10).toFixed(1)}, ${d.smCount} SMs, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB`,
  );
});

section('kernels against the CPU backend (max |diff| / max |ref|)', () => {
  const rows: unknown[] = [];
  for (const c of PARITY_CASES.filter((k) => only === null || k.name.includes(only))) {
    let ref: Record<string, Float32Array>;
    try {
      ref = c.run(cpu, 'f32');
    } catch (err) {
      failures++;
      log(`  ${c.name}: CPU reference failed: ${(err as Error).message}`);
      continue;
    }
    for (const dt of ['f32', 'bf16'] as const) {
      const tol = toleranceFor(c, dt);
      const t0 = performance.now();
      try {
        const results = compareOutputs(c.run(cuda(dt), dt), ref);
        const ms = performance.now() - t0;
        for (const r of results) {
          const ok = r.rel <= tol;
          if (!ok) failures++;
          rows.push({ case: c.name, dtype: dt, ...r, tol, ok });
          log(
            `  ${ok ? 'ok  ' : 'FAIL'} ${dt.padEnd(4)} ${c.name} :: ${r.output}  rel ${r.rel.toExponential(2)}  abs ${r.maxAbs.toExponential(2)}  (tol ${tol}, ${ms.toFixed(0)} ms)`,
          );
        }
      } catch (err) {
        failures++;
        rows.push({ case: c.name, dtype: dt, error: (err as Error).message });
        log(`  FAIL ${dt} ${c.name}: ${(err as Error).stack}`);
      }
    }
  }
  report.kernels = rows;
});

if (only !== null) {
  log(`\n${failures === 0 ? 'ALL CHECKS PASSED' : `${failures} FAILURES`} (cases matching ${JSON.stringify(only)})`);
  process.exit(failures === 0 ? 0 : 1);
}

section('invalid ids are reported at the next download', () => {
  const be = cuda('bf16');
  const table = be.upload(new Float32Array(40), [10, 4], 'bf16'),
    ids = be.upload(Int32Array.of(3, 10), [2], 'i32'),
    out = be.alloc([2, 4], 'bf16');
  be.embedding(out, table, ids);
  let message = 'no error';
  try {
    be.download(out);
  } catch (err) {
    message = (err as Error).message;
  }
  const ok = /outside the vocabulary/.test(message);
  if (!ok) failures++;
  log(
    `  ${ok ? 'ok  ' : 'FAIL'} embedding id 10 of 10: ${message}; next download ${be.download(out).length === 8 ? 'works' : 'broken'}`,
  );
  for (const t of [table, ids, out]) be.free(t);
});

section('HF transformers + PEFT tiny fixtures', () => {
  if (!haveTinyFixtures) throw new Error('test/fixtures/tiny is missing');
  const all: Record<string, unknown> = {};
  for (const [dt, quantize] of [
    ['f32', null],
    ['bf16', null],
    ['bf16', 'nf4'],
  ] as const) {
    for (const v of VARIANTS) {
      const e = hfFixtureErrors(cuda(dt), v, quantize);
      all[`${v}/${dt}${quantize ? '/nf4' : ''}`] = e;
      const worst = Object.entries(e.logits).reduce((w, [k, x]) => (x.rel > w.rel ? { k, ...x } : w), {
        k: '',
        rel: 0,
        rms: 0,
      });
      log(
        `  ${v} ${dt}${quantize ? ' nf4' : ''}: logits worst ${worst.k} rel ${worst.rel.toExponential(2)} rms ${worst.rms.toExponential(2)}; ` +
          `loss rel ${Math.max(...Object.values(e.loss)).toExponential(2)}; grad worst rel ${e.gradWorst.rel.toExponential(2)} rms ${e.gradWorst.rms.toExponential(2)} (${e.gradWorst.name}); ` +
          `greedy tokens ${e.tokensMatching}/${e.tokensTotal}, step logits rel ${e.stepLogits.rel.toExponential(2)} rms ${e.stepLogits.rms.toExponential(2)}`,
      );
    }
  }
  report.fixtures = all;
});

section('training against the CPU backend (3 steps, NF4 base, LoRA with dropout, accumulation, clipping)', () => {
  const all: Record<string, unknown> = {};
  for (const dt of ['f32', 'bf16'] as const) {
    const e = trainingErrors(cuda(dt));
    all[dt] = e;
    log(
      `  ${dt}: losses ${e.losses.map((l) => `${l.got.toFixed(5)}/${l.ref.toFixed(5)}`).join(' ')}; grad norms ${e.gradNorms.map((l) => `${l.got.toFixed(4)}/${l.ref.toFixed(4)}`).join(' ')}`,
    );
    log(
      `      LoRA updates worst rel ${e.paramsWorst.rel.toExponential(2)} rms ${e.paramsWorst.rms.toExponential(2)} (${e.paramsWorst.name}); NF4 logits rel ${e.nf4Logits.rel.toExponential(2)} rms ${e.nf4Logits.rms.toExponential(2)}`,
    );
  }
  report.training = all;
});

section('activation checkpointing: recomputed layers give the same LoRA gradients', () => {
  for (const dt of ['f32', 'bf16'] as const) {
    const { kept, recomputed } = recomputeGradients(cuda(dt));
    const differ = Object.keys(kept).filter((k) => kept[k].some((v, i) => v !== recomputed[k][i]));
    if (differ.length > 0) failures++;
    log(
      `  ${differ.length === 0 ? 'ok  ' : 'FAIL'} ${dt}: ${Object.keys(kept).length - differ.length}/${Object.keys(kept).length} gradients bit-identical${differ.length ? ` (differ: ${differ.slice(0, 3).join(', ')})` : ''}`,
    );
  }
});

if (timing) {
  section('kernel timings at the 1.8B shapes (batch 8 x 512)', () => {
    report.kernelTimings = kernelTimings(cuda('bf16'), log);
  });
  section('training step timings (1.8B layer shapes, NF4, LoRA r16 q,k,v,o)', () => {
    const be = cuda('bf16');
    const two = trainStepTiming(be, 2, log),
      four = trainStepTiming(be, 4, log);
    const perLayer = (four.msPerStep - two.msPerStep) / 2;
    const fixed = two.msPerStep - 2 * perLayer;
    const full = fixed + SHAPE_1_8B.layers * perLayer;
    log(`  per layer ${perLayer.toFixed(1)} ms, embedding + lm_head + loss + optimizer ${fixed.toFixed(1)} ms`);
    log(
      `  estimated 24-layer step (Qwen1.5-1.8B): ${full.toFixed(0)} ms = ${(((8 * 512) / full) * 1000).toFixed(0)} tokens/s`,
    );
    const bigChunks = trainStepTiming(be, 2, log, 1 << 26);
    const fullBig = bigChunks.msPerStep - 2 * perLayer + SHAPE_1_8B.layers * perLayer;
    log(
      `  with logits chunks of 2^26 elements: estimated 24-layer step ${fullBig.toFixed(0)} ms = ${(((8 * 512) / fullBig) * 1000).toFixed(0)} tokens/s`,
    );
    report.stepTimings = {
      two,
      four,
      perLayer,
      fixed,
      estimated24: full,
      twoWithChunks2e26: bigChunks,
      estimated24WithChunks2e26: fullBig,
    };
    report.generation = generationTiming(be, 4, log);
    log(`  memory: ${JSON.stringify(be.memoryStats())}`);
  });
}

report.failures = failures;
writeFileSync(
  join(outDir, 'cuda-check.json'),
  JSON.stringify(report, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1),
);
log(`\n${failures === 0 ? 'ALL CHECKS PASSED' : `${failures} FAILURES`}`);
process.exit(failures === 0 ? 0 : 1);
