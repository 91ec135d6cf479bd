/**
 * Generation on a GPU machine, without vitest: the decoding kernels against the CPU backend,
 * generate() on CUDA against the CPU (tiny random models, greedy on the device, the host
 * sampling path, rows leaving the batch), greedy decoding of the HF tiny fixtures, then at
 * Qwen1.5-1.8B's shape (random weights): device argmax against host argmax, a decoding step's
 * host and device time, its kernels one by one, and generate() throughput by batch size.
 * Prints a report and writes it (plus JSON) to the folder given as the first argument.
 *
 *   npx tsx tools/gpu-check/generate-check.ts out/ [--no-timing]
 *
 * In a bundle (no Node tooling on the GPU machine), compile it next to the app's packages:
 *   npx esbuild tools/gpu-check/generate-check.ts --bundle --platform=node --format=esm \
 *     --packages=external --outfile=BUNDLE/app/check/generate-check.mjs
 *   cp -r test/fixtures/tiny BUNDLE/app/fixtures/tiny     # read as ../fixtures/tiny
 *   BUNDLE/node BUNDLE/app/check/generate-check.mjs out/
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FloatDType, Tensor } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import type { CudaTensor } from '../../src/backend/cuda/cuda-tensor.js';
import { checkCu } from '../../src/backend/cuda/ffi.js';
import { probeCuda } from '../../src/backend/select.js';
import { generate, type GenerateOptions } from '../../src/model/generate.js';
import { decodeLogits, InferenceBuffers, prefillLogits } from '../../src/model/qwen2-inference.js';
import type { Qwen2Model } from '../../src/model/qwen2.js';
import { argmax } from '../../src/model/sampling.js';
import { randomModel as randomModel18, randomPrompts, shapeConfig } from '../../bench/measure.js';
import { compareOutputs, toleranceFor, PARITY_CASES, type ParityCase } from '../../test/helpers/backend-parity.js';
import { DECODE_PARITY_CASES } from '../../test/helpers/decode-parity.js';
import { hfFixtureErrors } from '../../test/helpers/model-parity.js';
import { randomModel, rng, tinyConfig } from '../../test/helpers/random-qwen2.js';
import { haveTinyFixtures, VARIANTS } from '../../test/helpers/tiny-fixture.js';
import { openLog } from './log.js';
import { randomNf4, timeMs } from './timing.js';

const outDir = process.argv[2] ?? 'generate-check-out';
const timing = !process.argv.includes('--no-timing');
const log = openLog(outDir, 'generate-check.log');
const report: Record<string, unknown> = {};
let failures = 0;
const fail = (msg: string): void => {
  failures++;
  log(`  FAILED: ${msg}`);
};

async function section(name: string, fn: () => void | Promise<void>): Promise<void> {
  log(`\n== ${name}`);
  const t0 = performance.now();
  try {
    await fn();
  } catch (err) {
    fail((err as Error).stack ?? String(err));
  }
  log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

const probe = probeCuda();
if (!probe.available) {
  log(`no CUDA GPU: ${probe.reason}`);
  process.exit(1);
}
const backends: Partial<Record<FloatDType, CudaBackend>> = {};
const cuda = (dt: FloatDType): CudaBackend => (backends[dt] ??= new CudaBackend({ computeDType: dt }));
const cpu = new CpuBackend();

await section('decoding kernels against the CPU backend (max |diff| / max |ref|)', () => {
  const cases: ParityCase[] = [...DECODE_PARITY_CASES, ...PARITY_CASES.filter((c) => c.name.includes('decode step'))];
  const rows: unknown[] = [];
  for (const c of cases) {
    const ref = c.run(cpu, 'f32');
    for (const dt of ['f32', 'bf16'] as const) {
      const tol = toleranceFor(c, dt);
      try {
        for (const r of compareOutputs(c.run(cuda(dt), dt), ref)) {
          const ok = r.rel <= tol;
          if (!ok) failures++;
          rows.push({ case: c.name, dt, output: r.output, rel: r.rel, ok });
          log(
            `  ${ok ? 'ok  ' : 'FAIL'} ${dt.padEnd(4)} ${c.name} / ${r.output}: ${r.rel.toExponential(2)} (tolerance ${tol})`,
          );
        }
      } catch (err) {
        fail(`${dt} ${c.name}: ${(err as Error).stack ?? String(err)}`);
      }
    }
  }
  report.kernels = rows;
});

await section('downloadAsync: values as of the call, later work keeps running', () => {
  const be = cuda('bf16');
  const t = be.upload(Float32Array.of(1.5, -2, 3), [3], 'bf16'),
    ids = be.upload(Int32Array.of(7, 9), [2], 'i32');
  const first = be.downloadAsync(t),
    firstIds = be.downloadAsync(ids);
  be.scale(t, 2);
  be.addI32(ids, 1);
  const second = be.downloadAsync(t);
  const got = {
    firstIds: [...firstIds.wait()],
    second: [...second.wait()],
    first: [...first.wait()],
    ids: [...be.download(ids)],
  };
  log(`  ${JSON.stringify(got)}`);
  if (
    JSON.stringify(got) !== JSON.stringify({ firstIds: [7, 9], second: [3, -4, 6], first: [1.5, -2, 3], ids: [8, 10] })
  )
    fail('unexpected values');
  for (const x of [t, ids]) be.free(x);
});

/** Same tokens, prompt by prompt: how many rows agree entirely, and new tokens in total. */
function agreement(a: number[][], b: number[][]): { rows: number; same: number; tokens: number } {
  return {
    rows: a.length,
    same: a.filter((x, i) => JSON.stringify(x) === JSON.stringify(b[i])).length,
    tokens: a.reduce((s, x) => s + x.length, 0),
  };
}

await section('generate() on CUDA against the CPU backend (tiny random models)', async () => {
  const cfg = tinyConfig({ vocab_size: 300, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 3 });
  const rand = rng(4);
  const prompts = Array.from({ length: 23 }, (_, i) =>
    Array.from({ length: 3 + ((i * 7) % 19) }, () => 1 + Math.floor(rand() * 299)),
  );
  const ref = randomModel(cpu, cfg, 3);
  const free = await generate(ref, prompts, { maxNewTokens: 12, stopIds: [], padId: 0, batchSize: 23 });
  // A stop id several rows produce, so rows leave the batch at different steps (and it compacts).
  const counts = new Map<number, number>();
  for (const g of free) for (const id of new Set(g.newIds.slice(0, 10))) counts.set(id, (counts.get(id) ?? 0) + 1);
  const stopId = [...counts].sort((x, y) => y[1] - x[1] || x[0] - y[0])[0][0];
  const settings: [string, Omit<GenerateOptions, 'maxNewTokens' | 'padId'>][] = [
    ['greedy, batch 8', { stopIds: [], batchSize: 8 }],
    [`greedy, stop id ${stopId}, batch 23`, { stopIds: [stopId], batchSize: 23 }],
    [
      'greedy + repetition penalty 1.3 (host path), stop id, batch 5',
      { stopIds: [stopId], batchSize: 5, sampling: { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1.3 } },
    ],
  ];
  const rows: unknown[] = [];
  for (const [name, s] of settings) {
    const want = (await generate(ref, prompts, { ...s, maxNewTokens: 12, padId: 0 })).map((g) => g.newIds);
    for (const dt of ['f32', 'bf16'] as const) {
      const model = randomModel(cuda(dt), cfg, 3);
      const got = (await generate(model, prompts, { ...s, maxNewTokens: 12, padId: 0 })).map((g) => g.newIds);
      model.free();
      const a = agreement(got, want);
      rows.push({ name, dt, ...a });
      log(`  ${dt.padEnd(4)} ${name}: ${a.same}/${a.rows} prompts identical (${a.tokens} tokens)`);
      if (dt === 'f32' && a.same !== a.rows) fail(`f32 ${name}: tokens differ from the CPU's`);
    }
  }
  ref.free();
  report.tinyGenerate = rows;
});

await section('HF tiny fixtures on CUDA: greedy decoding over the KV cache (prefill and decodeStep)', () => {
  if (!haveTinyFixtures) {
    log('  skipped: no fixtures/tiny next to this script');
    return;
  }
  const rows: unknown[] = [];
  for (const v of VARIANTS) {
    for (const dt of ['f32', 'bf16'] as const) {
      const e = hfFixtureErrors(cuda(dt), v);
      const tol = dt === 'f32' ? 1e-5 : 3e-2;
      log(
        `  ${v} ${dt}: step logits rel ${e.stepLogits.rel.toExponential(2)} (tolerance ${tol}), tokens ${e.tokensMatching}/${e.tokensTotal}, logits ${Object.entries(
          e.logits,
        )
          .map(([k, x]) => `${k} ${x.rel.toExponential(2)}`)
          .join(', ')}`,
      );
      if (e.stepLogits.rel > tol) fail(`${v} ${dt}: step logits`);
      if (dt === 'f32' && e.tokensMatching !== e.tokensTotal) fail(`${v} f32: greedy tokens differ from HF's`);
      rows.push({
        variant: v,
        dt,
        stepLogits: e.stepLogits,
        tokensMatching: e.tokensMatching,
        tokensTotal: e.tokensTotal,
      });
    }
  }
  report.hfFixtures = rows;
});

const PROMPT_LEN = 110,
  NEW_TOKENS = 64;

if (timing) {
  const be = cuda('bf16');
  const cfg = shapeConfig('1.8b');
  const V = cfg.vocabSize,
    D = cfg.hiddenSize,
    I = cfg.intermediateSize,
    H = cfg.numHeads,
    hd = cfg.headDim;
  let model: Qwen2Model | null = null;
  const times: Record<string, number> = {};
  const record = (name: string, ms: number): void => {
    times[name] = ms;
    log(`  ${name.padEnd(64)} ${ms.toFixed(4).padStart(9)} ms`);
  };

  await section('1.8B shape, bf16, batch 50: device argmax = host argmax; decoding step times', () => {
    const t0 = performance.now();
    model = randomModel18(cfg, be, 0);
    be.synchronize();
    log(`  random 1.8B model built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const B = 50;
    const prompts = randomPrompts(B, PROMPT_LEN, V, 0);
    const T = Math.max(...prompts.map((p) => p.length));
    const inputIds = new Int32Array(B * T),
      attentionMask = new Int32Array(B * T);
    prompts.forEach((p, b) => {
      inputIds.set(p, b * T + T - p.length);
      attentionMask.fill(1, b * T + T - p.length, (b + 1) * T);
    });
    const ws = new InferenceBuffers(be, cfg, B * T, B);
    const cache = model.createKvCache(B, T + NEW_TOKENS);
    const ids = be.alloc([B], 'i32');
    let mismatches = 0;
    const check = (logits: Tensor): void => {
      const host = be.download(logits),
        dev = be.download(ids);
      for (let b = 0; b < B; b++) if (argmax(host, b * V, V) !== dev[b]) mismatches++;
    };
    be.synchronize();
    let t = performance.now();
    const first = prefillLogits(model, cache, ws, { batchSize: B, seqLen: T, inputIds, attentionMask });
    be.argmaxRows(ids, first);
    be.synchronize();
    record(`prefill ${B} x ${T} + argmax`, performance.now() - t);
    check(first);
    let host = 0,
      step = 0,
      n = 0;
    for (let s = 0; s < NEW_TOKENS - 1; s++) {
      t = performance.now();
      const logits = decodeLogits(model, cache, ws, ids);
      be.argmaxRows(ids, logits);
      const queued = performance.now();
      be.synchronize();
      if (s >= 3) {
        host += queued - t;
        step += performance.now() - t;
        n++;
      }
      if (s % 10 === 0) check(logits);
    }
    record('decoding step: host time to queue (mean)', host / n);
    record('decoding step: queued to finished, synchronized (mean)', step / n);
    log(`  device argmax vs host argmax: ${mismatches} mismatches of ${B * 8} rows checked`);
    if (mismatches) fail('device argmax differs from host argmax');

    // Kernels of one step, at the cache length the last step had.
    const a = ws.views(B);
    const kvLen = cache.length,
      S = cache.capacity;
    const w = model.weights.layers[0];
    const mm = (name: string, out: Tensor, x: Tensor, wt: Tensor): void =>
      record(
        name,
        timeMs(be, 30, () => be.matmul(out, x, wt, { transB: true })),
      );
    mm('matmul q_proj [50x2048] x [2048x2048]^T', a.q, a.h, w.proj.q_proj.weight);
    mm('matmul gate_proj [50x2048] x [5504x2048]^T', a.gate, a.h, w.proj.gate_proj.weight);
    mm('matmul down_proj [50x5504] x [2048x5504]^T', a.o, a.act, w.proj.down_proj.weight);
    mm('matmul lm_head [50x2048] x [151936x2048]^T', ws.output(B).logits, a.h, model.weights.lmHead);
    record(
      'addBias [50x2048]',
      timeMs(be, 50, () => be.addBias(a.q, w.proj.q_proj.bias as Tensor)),
    );
    const pos = be.upload(
      Int32Array.from({ length: B }, (_, i) => 100 + i),
      [B],
      'i32',
    );
    const q4 = be.reshape(a.q, [B, 1, H, hd]),
      k4 = be.reshape(a.k, [B, 1, H, hd]),
      v4 = be.reshape(a.v, [B, 1, H, hd]);
    record(
      'ropeAppendKv [50 tokens, 16+16 heads]',
      timeMs(be, 50, () => be.ropeAppendKv(cache.k[0], cache.v[0], q4, k4, v4, pos, kvLen - 1, cfg.ropeTheta)),
    );
    const { keyMask } = cache.appendStep();
    const lse = be.alloc([B, 1, H]);
    record(
      `attention, one query, kvLen ${kvLen + 1} of ${S}`,
      timeMs(be, 50, () =>
        be.attentionForward(be.reshape(a.attn, [B, 1, H, hd]), lse, q4, cache.k[0], cache.v[0], keyMask, {
          kvLen: kvLen + 1,
        }),
      ),
    );
    record(
      'addRmsNorm [50x2048]',
      timeMs(be, 50, () => be.addRmsNorm(a.x, a.h, a.rstd, a.x, a.o, w.postAttentionLayernorm, 1e-6)),
    );
    record(
      'swiglu [50x5504]',
      timeMs(be, 50, () => be.swigluForward(a.act, a.gate, a.up)),
    );
    record(
      'embedding [50]',
      timeMs(be, 50, () => be.embedding(a.x, model!.weights.embedTokens, ids)),
    );
    record(
      'argmaxRows [50x151936]',
      timeMs(be, 50, () => be.argmaxRows(ids, ws.output(B).logits)),
    );
    const half = be.upload(
        Int32Array.from({ length: 25 }, (_, i) => 2 * i),
        [25],
        'i32',
      ),
      slab = be.alloc([25, S * D], 'bf16');
    record(
      `gatherRows: 25 of 50 cache rows of ${S} x 2048 (compaction, per tensor)`,
      timeMs(be, 20, () => be.gatherRows(slab, be.reshape(cache.k[0], [B, S * D]), half)),
    );
    const nf4 = be.uploadNf4(randomNf4([I, D]));
    mm('matmul nf4 gate_proj [50x2048] x nf4 [5504x2048]^T (dequant + GEMM)', a.gate, a.h, nf4);
    const deq = be.scratch([I, D], 'bf16');
    record(
      '  of which NF4 dequantize [5504x2048]',
      timeMs(be, 30, () => be.dequantizeNf4(deq, nf4 as CudaTensor)),
    );
    be.releaseScratch(deq);
    be.synchronize();
    const h0 = performance.now();
    for (let i = 0; i < 2000; i++) be.addI32(pos, 0);
    record('host time to queue one small kernel (addI32, mean of 2000)', (performance.now() - h0) / 2000);
    be.synchronize();
    const h1 = performance.now();
    for (let i = 0; i < 200; i++) be.matmul(a.q, a.h, w.proj.q_proj.weight, { transB: true });
    record('host time to queue one cuBLAS matmul (mean of 200)', (performance.now() - h1) / 200);
    be.synchronize();
    const p = w.proj;
    record(
      'matmulMany q/k/v [50x2048] x 3 x [2048x2048]^T',
      timeMs(be, 30, () => be.matmulMany([a.q, a.k, a.v], a.h, [p.q_proj.weight, p.k_proj.weight, p.v_proj.weight])),
    );
    record(
      'matmulMany gate/up [50x2048] x 2 x [5504x2048]^T',
      timeMs(be, 30, () => be.matmulMany([a.gate, a.up], a.h, [p.gate_proj.weight, p.up_proj.weight])),
    );
    for (const x of [pos, lse, half, slab, nf4, ids]) be.free(x);
    cache.free();
    ws.free();
    report.timesMs = times;
  });

  await section(
    '1.8B shape, bf16, batch 50: GPU time of decoding steps (queued behind a long product, so events time kernels, not the host)',
    () => {
      if (!model) throw new Error('no model (previous section failed)');
      const m = model as Qwen2Model;
      const B = 50,
        steps = 10;
      const prompts = randomPrompts(B, PROMPT_LEN, V, 2);
      const T = Math.max(...prompts.map((x) => x.length));
      const inputIds = new Int32Array(B * T),
        attentionMask = new Int32Array(B * T);
      prompts.forEach((x, b) => {
        inputIds.set(x, b * T + T - x.length);
        attentionMask.fill(1, b * T + T - x.length, (b + 1) * T);
      });
      const ws = new InferenceBuffers(be, cfg, B * T, B);
      const cache = m.createKvCache(B, T + 2 * steps + 2);
      const ids = be.empty([B], 'i32');
      be.argmaxRows(ids, prefillLogits(m, cache, ws, { batchSize: B, seqLen: T, inputIds, attentionMask }));
      const big = be.alloc([4096, D], 'bf16'),
        bigOut = be.empty([4096, V], 'bf16');
      const blocker = (): void => {
        for (let i = 0; i < 16; i++) be.matmul(bigOut, big, m.weights.lmHead, { transB: true });
      };
      const api = be.device.api,
        stream = be.device.stream;
      const event = (): unknown => {
        const e: unknown[] = [null];
        checkCu(api.cuEventCreate(e, 0), 'cuEventCreate');
        return e[0];
      };
      const elapsed = (a: unknown, b: unknown): number => {
        const ms = new Float32Array(1);
        checkCu(api.cuEventElapsedTime(ms, a, b), 'cuEventElapsedTime');
        return ms[0];
      };
      const step = (): void => {
        be.argmaxRows(ids, decodeLogits(m, cache, ws, ids));
      };
      // Whole steps.
      blocker();
      const e0 = event(),
        e1 = event();
      checkCu(api.cuEventRecord(e0, stream), 'cuEventRecord');
      const h0 = performance.now();
      for (let s = 0; s < steps; s++) step();
      const hostMs = (performance.now() - h0) / steps;
      checkCu(api.cuEventRecord(e1, stream), 'cuEventRecord');
      be.synchronize();
      record(`decoding step, GPU time (mean of ${steps}, kvLen ~${cache.length})`, elapsed(e0, e1) / steps);
      record('decoding step, host time to queue (same steps)', hostMs);
      // One step, call by call, and its launches.
      const target = be as unknown as Record<string, (...args: unknown[]) => unknown>;
      const names = [
        'matmul',
        'matmulMany',
        'addBias',
        'ropeAppendKv',
        'attentionForward',
        'addRmsNorm',
        'swigluForward',
        'embedding',
        'argmaxRows',
        'addI32',
        'rmsNormForward',
        'loraDown',
        'upload',
      ];
      const spans: { kind: string; start: unknown; end: unknown }[] = [];
      for (const name of names) {
        const original = target[name].bind(be);
        target[name] = (...args: unknown[]) => {
          const start = event(),
            end = event();
          checkCu(api.cuEventRecord(start, stream), 'cuEventRecord');
          const r = original(...args);
          checkCu(api.cuEventRecord(end, stream), 'cuEventRecord');
          const b0 = args[2] as Tensor | undefined;
          spans.push({ kind: name === 'matmul' && b0 && b0.shape[0] === V ? 'matmul lm_head' : name, start, end });
          return r;
        };
      }
      const launch = be.device.launch.bind(be.device),
        gemm = be.gemm.gemm.bind(be.gemm),
        gemmArrays = be.gemm.gemmArrays.bind(be.gemm);
      let launches = 0;
      be.device.launch = (...args: Parameters<typeof launch>) => {
        launches++;
        launch(...args);
      };
      be.gemm.gemm = (g) => {
        launches++;
        gemm(g);
      };
      be.gemm.gemmArrays = (g) => {
        launches++;
        gemmArrays(g);
      };
      blocker();
      step();
      be.synchronize();
      for (const name of names) delete target[name];
      delete (be.device as unknown as Record<string, unknown>).launch;
      delete (be.gemm as unknown as Record<string, unknown>).gemm;
      delete (be.gemm as unknown as Record<string, unknown>).gemmArrays;
      const byKind = new Map<string, { ms: number; calls: number }>();
      for (const sp of spans) {
        const e = byKind.get(sp.kind) ?? { ms: 0, calls: 0 };
        e.ms += elapsed(sp.start, sp.end);
        e.calls++;
        byKind.set(sp.kind, e);
      }
      log(`  one step: ${launches} kernel launches and cuBLAS calls`);
      for (const [kind, e] of [...byKind].sort((x, y) => y[1].ms - x[1].ms))
        record(`  GPU time in ${kind} (${e.calls} calls)`, e.ms);
      report.stepLaunches = launches;
      for (const x of [ids, big, bigOut]) be.free(x);
      cache.free();
      ws.free();
    },
  );

  await section(
    `1.8B shape, bf16: generate() new tokens/s (~${PROMPT_LEN}-token prompts, ${NEW_TOKENS} greedy new tokens, prefill included)`,
    async () => {
      if (!model) throw new Error('no model (previous section failed)');
      const rows: unknown[] = [];
      for (const [count, batch] of [
        [50, 50],
        [200, 50],
        [200, 100],
        [200, 200],
      ]) {
        const prompts = randomPrompts(count, PROMPT_LEN, V, 1);
        await generate(model, prompts.slice(0, batch), { maxNewTokens: 4, stopIds: [], padId: 0, batchSize: batch });
        be.synchronize();
        const t0 = performance.now();
        const out = await generate(model, prompts, {
          maxNewTokens: NEW_TOKENS,
          stopIds: [],
          padId: 0,
          batchSize: batch,
        });
        const s = (performance.now() - t0) / 1000;
        const made = out.reduce((n, g) => n + g.newIds.length, 0);
        rows.push({ prompts: count, batch, seconds: s, tokensPerS: made / s });
        log(
          `  ${count} prompts, batch ${batch}: ${made} tokens in ${s.toFixed(2)} s = ${(made / s).toFixed(0)} new tokens/s`,
        );
      }
      report.generate = rows;
      model.free();
    },
  );
}

log(`\n${failures === 0 ? 'all checks passed' : `${failures} check(s) FAILED`}`);
writeFileSync(join(outDir, 'generate-check.json'), JSON.stringify({ failures, ...report }, null, 1) + '\n');
process.exitCode = failures === 0 ? 0 : 1;
