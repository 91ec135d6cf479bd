/**
 * Kernel-by-kernel comparison of a backend against the CPU reference: each case builds random
 * inputs (rounded to bf16, so both backends see identical values even when one stores bf16),
 * runs one or a few kernels, and returns its outputs. Used by test/backend-cuda-kernels.test.ts
 * and by tools/gpu-check (which prints the errors), so the same cases decide both.
 */
import type { Backend, MatmulOptions, FloatDType, Tensor } from '../../src/backend/backend.js';
import { nf4Quantizer } from '../../src/model/qwen2-weights.js';
import { bf16ToF32, f32ToBf16 } from '../../src/tensor/dtype.js';
import { rng } from './random-qwen2.js';

export interface ParityCase {
  name: string;
  /** Runs the case on `be`, storing float activations as `dt`; returns named outputs. */
  run(be: Backend, dt: FloatDType): Record<string, Float32Array>;
  /** Allowed max |diff| / max |reference| per output with bf16 storage (default BF16_TOLERANCE). */
  bf16Tolerance?: number;
  /** The same with f32 storage (default F32_TOLERANCE). */
  f32Tolerance?: number;
}

/** One bf16 rounding of the largest output is 2^-9 = 0.2%; accumulated roundings stay below 1%. */
const BF16_TOLERANCE = 1e-2;
const F32_TOLERANCE = 2e-5;

/** The tolerance of case c for activations stored as dt. */
export function toleranceFor(c: Pick<ParityCase, 'f32Tolerance' | 'bf16Tolerance'>, dt: string): number {
  return dt === 'f32' ? (c.f32Tolerance ?? F32_TOLERANCE) : (c.bf16Tolerance ?? BF16_TOLERANCE);
}

/** n values uniform in [-scale, scale) (+ offset), exactly representable in bf16. */
export function values(n: number, scale: number, rand: () => number, offset = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = offset + (2 * rand() - 1) * scale;
  return bf16ToF32(f32ToBf16(a));
}

function ints(data: number[] | Int32Array): Int32Array {
  return Int32Array.from(data);
}

/** Downloads into f32 (copies, so the case can free its tensors). */
export function get(be: Backend, t: Tensor): Float32Array {
  return Float32Array.from(be.download(t));
}

function matmulCase(
  name: string,
  aShape: number[],
  bShape: number[],
  outShape: number[],
  opts: { transA?: boolean; transB?: boolean; alpha?: number; accumulate?: boolean },
  dtypes: { a?: 'f32'; b?: 'f32' | 'nf4'; out?: 'f32' } = {},
): ParityCase {
  return {
    name,
    // NF4 scales and LoRA-style f32 operands are converted to the activation dtype: bf16 rounding.
    run(be, dt) {
      const rand = rng(name.length * 7919 + aShape[0]);
      const n = (s: number[]): number => s.reduce((x, y) => x * y, 1);
      const a = be.upload(values(n(aShape), 1, rand), aShape, dtypes.a ?? dt);
      let b: Tensor;
      if (dtypes.b === 'nf4') b = nf4Quantizer(be, values(n(bShape), 1, rand), bShape as [number, number]);
      else b = be.upload(values(n(bShape), 1, rand), bShape, dtypes.b ?? dt);
      const out = be.upload(values(n(outShape), 1, rand), outShape, dtypes.out ?? dt);
      be.matmul(out, a, b, opts);
      const result = { out: get(be, out) };
      for (const t of [a, b, out]) be.free(t);
      return result;
    },
  };
}

/** Three products of one shape in one call: matmulBatch (own operands) or matmulMany (shared a, nf4 weights), accumulating. */
function manyCase(
  kind: 'batch' | 'many nf4',
  aShape: number[],
  bShape: number[],
  outShape: number[],
  opts: MatmulOptions,
  outF32 = false,
): ParityCase {
  return {
    name: `${kind === 'batch' ? 'matmulBatch' : 'matmulMany'} x3 ${JSON.stringify(opts)}${outF32 ? ' into f32' : ''}`,
    run(be, dt) {
      const rand = rng(aShape[0] * 31 + bShape[0]);
      const n = (s: number[]): number => s.reduce((x, y) => x * y, 1);
      const as = [0, 1, 2].map(() => be.upload(values(n(aShape), 1, rand), aShape, dt));
      const bs = [0, 1, 2].map(() =>
        kind === 'batch'
          ? be.upload(values(n(bShape), 1, rand), bShape, dt)
          : nf4Quantizer(be, values(n(bShape), 1, rand), bShape as [number, number]),
      );
      const outs = [0, 1, 2].map(() => be.upload(values(n(outShape), 1, rand), outShape, outF32 ? 'f32' : dt));
      if (kind === 'batch') be.matmulBatch(outs, as, bs, opts);
      else be.matmulMany(outs, as[0], bs, [], opts.accumulate);
      const result = Object.fromEntries(outs.map((o, i) => [`out${i}`, get(be, o)]));
      for (const t of [...as, ...bs, ...outs]) be.free(t);
      return result;
    },
  };
}

/**
 * matmulBatch as LoRA's up projection (outs[m] = alpha us[m] bs[m]^T, the inner dimension a
 * rank): ranks 8, 16 and 64, outputs of different widths (past a 128-column tile) for 70 rows
 * (past a 64-row tile), and four members (more than one kernel call takes).
 */
function loraUpCase(): ParityCase {
  return {
    name: "matmulBatch as LoRA's up projection (ranks 8, 16, 64; widths 32 to 264; 70 rows; 1 to 4 members)",
    run(be, dt) {
      const rand = rng(91),
        N = 70;
      const result: Record<string, Float32Array> = {};
      for (const [rank, widths] of [
        [16, [136, 136, 136]],
        [8, [64, 32, 32, 264]],
        [64, [72]],
      ] as [number, number[]][]) {
        const us = widths.map(() => be.upload(values(N * rank, 1, rand), [N, rank], dt));
        const bs = widths.map((w) => be.upload(values(w * rank, 1, rand), [w, rank], dt));
        const outs = widths.map((w) => be.alloc([N, w], dt));
        be.matmulBatch(outs, us, bs, { transB: true, alpha: 2 });
        outs.forEach((o, i) => {
          result[`r${rank} out${i}`] = get(be, o);
        });
        for (const t of [...us, ...bs, ...outs]) be.free(t);
      }
      return result;
    },
  };
}

/**
 * matmulSum: the input gradient of three nf4 projections (q/k/v-like, one narrower), onto an
 * output of random values (accumulate) or written.
 */
function sumCase(accumulate: boolean): ParityCase {
  return {
    name: `matmulSum x3 nf4${accumulate ? ' accumulate' : ''}`,
    run(be, dt) {
      const rand = rng(accumulate ? 71 : 72);
      const widths = [64, 32, 64],
        M = 20,
        K = 128;
      const dys = widths.map((w) => be.upload(values(M * w, 1, rand), [M, w], dt));
      const ws = widths.map((w) => nf4Quantizer(be, values(w * K, 1, rand), [w, K]));
      const out = be.upload(values(M * K, 1, rand), [M, K], dt);
      be.matmulSum(out, dys, ws, accumulate);
      const result = { out: get(be, out) };
      for (const t of [...dys, ...ws, out]) be.free(t);
      return result;
    },
  };
}

interface AttnConfig {
  B: number;
  T: number;
  S: number;
  H: number;
  Hkv: number;
  hd: number;
  kvLen: number;
  /** keyMask [B, S]. */
  mask: number[];
  /** attentionBackward's rope option: each row's position ([B * T]). */
  rope?: { theta: number; positions: number[] };
}

/**
 * Attention forward (and backward) on random inputs. With 16 or more queries and one dtype the
 * CUDA backend multiplies matrices; `outputsF32` (mixed dtypes) sends it to the flash kernels.
 */
function attentionCase(name: string, c: AttnConfig, backward: boolean, outputsF32 = false): ParityCase {
  return {
    name,
    run(be, dtIn) {
      const dt = outputsF32 ? 'f32' : dtIn;
      const rand = rng(c.T * 1000 + c.S * 10 + c.hd);
      const qn = c.B * c.T * c.H * c.hd,
        kn = c.B * c.S * c.Hkv * c.hd;
      const q = be.upload(values(qn, 1.5, rand), [c.B, c.T, c.H, c.hd], dtIn);
      const k = be.upload(values(kn, 1.5, rand), [c.B, c.S, c.Hkv, c.hd], dtIn);
      const v = be.upload(values(kn, 1, rand), [c.B, c.S, c.Hkv, c.hd], dtIn);
      const mask = be.upload(ints(c.mask), [c.B, c.S], 'i32');
      const out = be.alloc([c.B, c.T, c.H, c.hd], dt),
        lse = be.alloc([c.B, c.T, c.H]);
      be.attentionForward(out, lse, q, k, v, mask, { kvLen: c.kvLen });
      const result: Record<string, Float32Array> = { out: get(be, out), lse: get(be, lse) };
      const owned = [q, k, v, mask, out, lse];
      if (backward) {
        const dout = be.upload(values(qn, 1, rand), [c.B, c.T, c.H, c.hd], dtIn);
        const dq = be.alloc(q.shape, dt),
          dk = be.alloc(k.shape, dt),
          dv = be.alloc(v.shape, dt);
        const positions = c.rope ? be.upload(ints(c.rope.positions), [c.B * c.T], 'i32') : null;
        const rope = c.rope && positions ? { positions, theta: c.rope.theta } : undefined;
        be.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, mask, { kvLen: c.kvLen, rope });
        Object.assign(result, { dq: get(be, dq), dk: get(be, dk), dv: get(be, dv) });
        owned.push(dout, dq, dk, dv, ...(positions ? [positions] : []));
      }
      for (const t of owned) be.free(t);
      return result;
    },
  };
}

interface LoraInputs {
  dt: FloatDType;
  rank: number;
  p: number;
  N: number;
  D: number;
  seeds: number[];
  x: Tensor;
  as: Tensor[];
  gs: Tensor[];
  dx: Tensor;
  gradAs: Tensor[];
}

/**
 * One of the fused LoRA group products on random inputs: three members with dropout at rank 16
 * (rows and columns past a tile), one member without dropout, two with it and one at p = 0.7
 * (keep thresholds past 2^15) at rank 8, four
 * members (more than one kernel call takes) over 600 rows (several row chunks), and two at
 * rank 32 (one per call).
 */
function loraCase(kernel: string, run: (be: Backend, c: LoraInputs) => Tensor[]): ParityCase {
  return {
    name: `${kernel} (groups of 1 to 4, dropout 0.1 to 0.7 and none, r 8, 16 and 32, rows and columns past a tile)`,
    run(be, dt) {
      const rand = rng(13);
      const r: Record<string, Float32Array> = {};
      for (const [rank, p, N, D, M] of [
        [16, 0.1, 70, 136, 3],
        [8, 0, 33, 64, 1],
        [8, 0.1, 50, 64, 2],
        [8, 0.7, 33, 64, 1],
        [16, 0.2, 600, 256, 4],
        [32, 0.1, 40, 72, 2],
      ]) {
        const members = Array.from({ length: M }, (_, m) => m);
        const c: LoraInputs = {
          dt,
          rank,
          p,
          N,
          D,
          seeds: members.map((m) => 777 + 1000 * m),
          x: be.upload(values(N * D, 1, rand), [N, D], dt),
          as: members.map(() => be.upload(values(rank * D, 0.5, rand), [rank, D], dt)),
          gs: members.map(() => be.upload(values(N * rank, 1, rand), [N, rank], dt)),
          dx: be.upload(values(N * D, 1, rand), [N, D], dt),
          gradAs: members.map(() => be.upload(values(rank * D, 1, rand), [rank, D])),
        };
        const outs = run(be, c);
        outs.forEach((o, m) => (r[`${rank}x${N}x${M}.${m}`] = get(be, o)));
        for (const t of new Set([c.x, ...c.as, ...c.gs, c.dx, ...c.gradAs, ...outs])) be.free(t);
      }
      return r;
    },
  };
}

/** Mask of B rows of S slots where row b has `pad[b]` padding slots on the `side`. */
function padMask(B: number, S: number, pad: number[], side: 'left' | 'right'): number[] {
  const m: number[] = [];
  for (let b = 0; b < B; b++)
    for (let s = 0; s < S; s++) m.push(side === 'left' ? (s >= pad[b] ? 1 : 0) : s < S - pad[b] ? 1 : 0);
  return m;
}

const ELEMENTWISE_N = 3000;

export const PARITY_CASES: ParityCase[] = [
  matmulCase('matmul NN, alpha 0.7, accumulate', [37, 53], [53, 29], [37, 29], { alpha: 0.7, accumulate: true }),
  matmulCase('matmul NT (Linear forward)', [64, 96], [80, 96], [64, 80], { transB: true }),
  matmulCase('matmul TN (weight gradient)', [96, 40], [96, 24], [40, 24], { transA: true }),
  matmulCase('matmul TT', [33, 20], [17, 33], [20, 17], { transA: true, transB: true }),
  matmulCase('matmul 3-D a x 2-D b', [3, 11, 24], [24, 19], [3, 11, 19], {}),
  matmulCase('matmul 3-D aT x 2-D b', [3, 24, 11], [24, 19], [3, 11, 19], { transA: true }),
  matmulCase('matmul batched 3-D', [3, 17, 19], [3, 19, 23], [3, 17, 23], { accumulate: true }),
  matmulCase(
    'matmul nf4 b transposed (Linear forward)',
    [20, 128],
    [48, 128],
    [20, 48],
    { transB: true },
    { b: 'nf4' },
  ),
  matmulCase('matmul nf4 b (input gradient)', [20, 48], [48, 128], [20, 128], {}, { b: 'nf4' }),
  manyCase('batch', [40, 24], [40, 16], [24, 16], { transA: true, alpha: 0.5, accumulate: true }, true),
  manyCase('batch', [40, 16], [24, 16], [40, 24], { transB: true, alpha: 2 }),
  loraUpCase(),
  manyCase('many nf4', [20, 128], [48, 128], [20, 48], { transB: true, accumulate: true }),
  sumCase(true),
  sumCase(false),
  matmulCase(
    'matmul a x f32 LoRA A^T -> f32 (u = x A^T)',
    [40, 64],
    [8, 64],
    [40, 8],
    { transB: true },
    { b: 'f32', out: 'f32' },
  ),
  matmulCase(
    'matmul f32 u x f32 B^T, accumulate into activations',
    [40, 8],
    [24, 8],
    [40, 24],
    { transB: true, alpha: 2, accumulate: true },
    { a: 'f32', b: 'f32' },
  ),
  matmulCase(
    'matmul dy^T x f32 u -> f32 grad',
    [40, 24],
    [40, 8],
    [24, 8],
    { transA: true, alpha: 2, accumulate: true },
    { b: 'f32', out: 'f32' },
  ),
  {
    name: 'addBias, add, axpy, scale',
    run(be, dt) {
      const rand = rng(3);
      const x = be.upload(values(12 * 50, 1, rand), [12, 50], dt),
        bias = be.upload(values(50, 1, rand), [50], dt);
      const y = be.upload(values(12 * 50, 1, rand), [12, 50], dt),
        z = be.alloc([12, 50], dt);
      be.addBias(x, bias);
      be.add(z, x, y);
      be.axpy(y, z, -0.3);
      be.scale(z, 1.7);
      const part = be.alloc([11, 50], dt);
      be.add(part, be.rows(x, 1, 11), be.rows(y, 0, 11));
      const wide = be.upload(values(6 * 64, 1, rand), [6, 64], dt),
        wideBias = be.upload(values(64, 1, rand), [64], dt);
      be.addBias(wide, wideBias);
      const r = { x: get(be, x), y: get(be, y), z: get(be, z), part: get(be, part), wide: get(be, wide) };
      for (const t of [x, bias, y, z, part, wide, wideBias]) be.free(t);
      return r;
    },
  },
  {
    name: 'sum, sumSquares (accumulate)',
    f32Tolerance: 1e-6,
    run(be, dt) {
      const rand = rng(4);
      const x = be.upload(values(100_003, 1, rand, 0.2), [100_003], dt),
        out = be.alloc([1]),
        acc = be.alloc([1]);
      be.sum(out, x);
      be.sumSquares(acc, x);
      be.sumSquares(acc, x, true);
      const r = { sum: get(be, out), sumSquares2: get(be, acc) };
      for (const t of [x, out, acc]) be.free(t);
      return r;
    },
  },
  {
    name: 'dropout (same mask), in place and p = 0',
    run(be, dt) {
      const rand = rng(5);
      const x = be.upload(values(ELEMENTWISE_N, 1, rand), [ELEMENTWISE_N], dt),
        out = be.alloc([ELEMENTWISE_N], dt);
      be.dropout(out, x, 0.3, 12345);
      const odd = be.alloc([999], dt);
      be.dropout(odd, be.rows(x, 1, 999), 0.2, 99);
      const copy = be.alloc([ELEMENTWISE_N], dt);
      be.dropout(copy, x, 0, 1);
      be.dropout(x, x, 0.5, 0xdeadbeef);
      const r = { out: get(be, out), odd: get(be, odd), copy: get(be, copy), inPlace: get(be, x) };
      for (const t of [x, out, copy, odd]) be.free(t);
      return r;
    },
  },
  loraCase('loraDown', (be, c) => {
    const us = c.gs.map(() => be.alloc([c.N, c.rank], c.dt));
    be.loraDown(us, c.x, c.as, c.p, c.seeds);
    return us;
  }),
  loraCase('loraDownGrads', (be, c) => {
    // Weights only; then both, dx added onto; then both again, dx written over a copy (accumulate false).
    const fresh = be.alloc(c.dx.shape, c.dt);
    be.loraDownGrads(c.gradAs, c.gs, c.x, c.p, c.seeds, 1.5, null);
    be.loraDownGrads(c.gradAs, c.gs, c.x, c.p, c.seeds, 0.5, { dx: c.dx, as: c.as, accumulate: true });
    be.loraDownGrads(c.gradAs, c.gs, c.x, c.p, c.seeds, 2, { dx: fresh, as: c.as, accumulate: false });
    return [...c.gradAs, c.dx, fresh];
  }),
  {
    name: 'loraUpBackward (q/k/v-like outputs of 136, 64 and 520 over 300 rows at r 16; four members of 64 at r 8)',
    run(be, dt) {
      const rand = rng(19);
      const r: Record<string, Float32Array> = {};
      for (const [rank, outs] of [
        [16, [136, 64, 520]],
        [8, [64, 64, 64, 64]],
      ] as const) {
        const N = 300;
        const dys = outs.map((o) => be.upload(values(N * o, 1, rand), [N, o], dt)),
          us = outs.map(() => be.upload(values(N * rank, 1, rand), [N, rank], dt));
        const bs = outs.map((o) => be.upload(values(o * rank, 0.5, rand), [o, rank], dt)),
          gradBs = outs.map((o) => be.upload(values(o * rank, 1, rand), [o, rank]));
        const gs = outs.map(() => be.alloc([N, rank], dt));
        be.loraUpBackward(gradBs, gs, dys, us, bs, 0.7);
        outs.forEach((_, m) =>
          Object.assign(r, { [`g${rank}.${m}`]: get(be, gs[m]), [`gradB${rank}.${m}`]: get(be, gradBs[m]) }),
        );
        for (const t of [...dys, ...us, ...bs, ...gradBs, ...gs]) be.free(t);
      }
      return r;
    },
  },
  {
    name: 'clipByNorm (clipped, below the limit, non-finite norm)',
    run(be, dt) {
      const rand = rng(14);
      const x = be.upload(values(1000, 1, rand), [1000], dt),
        y = be.upload(values(1000, 1, rand), [1000], dt),
        z = be.upload(values(1000, 1, rand), [1000], dt);
      const ss = be.alloc([1]),
        nan = be.upload(Float32Array.of(NaN), [1]);
      be.sumSquares(ss, x);
      be.clipByNorm(x, ss, 2);
      be.clipByNorm(y, ss, 1e6);
      be.clipByNorm(z, nan, 1);
      const out = { clipped: get(be, x), unchanged: get(be, y), nonFinite: get(be, z) };
      for (const t of [x, y, z, ss, nan]) be.free(t);
      return out;
    },
  },
  {
    name: 'copy across dtypes, fill, rows and reshape views',
    f32Tolerance: 0,
    run(be, dt) {
      const rand = rng(6);
      const src = be.upload(values(6 * 10, 1, rand), [6, 10]);
      const t = be.alloc([6, 10], dt);
      be.fill(t, 0.5);
      be.copy(be.rows(t, 2, 3), be.rows(src, 1, 3));
      const back = be.alloc([60]);
      be.copy(back, be.reshape(t, [60]));
      const ids = be.upload(ints([3, -1, 7]), [3], 'i32'),
        idsCopy = be.alloc([3], 'i32');
      be.copy(idsCopy, ids);
      const r = { t: get(be, t), back: get(be, back), ids: get(be, idsCopy) };
      for (const x of [src, t, back, ids, idsCopy]) be.free(x);
      return r;
    },
  },
  {
    name: 'embedding',
    f32Tolerance: 0,
    run(be, dt) {
      const rand = rng(7);
      const table = be.upload(values(30 * 20, 1, rand), [30, 20], dt),
        ids = be.upload(ints([0, 29, 5, 5, 17]), [5], 'i32');
      const out = be.alloc([5, 20], dt);
      be.embedding(out, table, ids);
      const r = { out: get(be, out) };
      for (const t of [table, ids, out]) be.free(t);
      return r;
    },
  },
  {
    name: 'rmsNorm forward and backward (accumulate)',
    run(be, dt) {
      const rand = rng(8);
      const N = 9,
        D = 2048;
      const x = be.upload(values(N * D, 2, rand), [N, D], dt),
        w = be.upload(values(D, 0.5, rand, 1), [D], dt);
      const out = be.alloc([N, D], dt),
        rstd = be.alloc([N]);
      be.rmsNormForward(out, rstd, x, w, 1e-6);
      const dout = be.upload(values(N * D, 1, rand), [N, D], dt),
        dx = be.upload(values(N * D, 1, rand), [N, D], dt);
      be.rmsNormBackward(dx, dout, x, w, rstd, true);
      const r = { out: get(be, out), rstd: get(be, rstd), dx: get(be, dx) };
      for (const t of [x, w, out, rstd, dout, dx]) be.free(t);
      return r;
    },
  },
  {
    name: 'rope forward (plain and with a bias) and backward (hd 16 and 128, positions up to 4000, in place)',
    run(be, dt) {
      const rand = rng(9);
      const r: Record<string, Float32Array> = {};
      for (const hd of [16, 128]) {
        const N = 5,
          H = 6; // H: a whole group of the bf16 kernel's ROPE_HEADS (4) and part of one
        const pos = be.upload(ints([0, 1, 17, 511, 4000]), [N], 'i32');
        const x = be.upload(values(N * H * hd, 1, rand), [N, H, hd], dt),
          out = be.alloc([N, H, hd], dt);
        be.ropeForward(out, x, pos, 1e6);
        // As a layer calls it: out is the projection's [N, H * hd] rows, x their [N, H, hd] view.
        const bias = be.upload(values(H * hd, 1, rand), [H * hd], dt),
          biased = be.alloc([N, H * hd], dt);
        be.copy(biased, x);
        be.ropeForward(biased, be.reshape(biased, [N, H, hd]), pos, 1e6, bias);
        be.ropeBackward(x, x, pos, 10000);
        r[`fwd${hd}`] = get(be, out);
        r[`biased${hd}`] = get(be, biased);
        r[`bwd${hd}`] = get(be, x);
        for (const t of [pos, x, out, bias, biased]) be.free(t);
      }
      return r;
    },
  },
  attentionCase(
    'attention fwd+bwd, GQA 4/2, hd 16, left padding',
    { B: 2, T: 5, S: 5, H: 4, Hkv: 2, hd: 16, kvLen: 5, mask: padMask(2, 5, [0, 2], 'left') },
    true,
  ),
  attentionCase(
    'attention fwd+bwd, hd 64, T 70, GQA 2/1, right padding',
    { B: 2, T: 70, S: 70, H: 2, Hkv: 1, hd: 64, kvLen: 70, mask: padMask(2, 70, [0, 9], 'right') },
    true,
  ),
  attentionCase(
    'attention fwd+bwd, flash kernels at T 70 (tile edges; f32 outputs of 16-bit inputs)',
    { B: 2, T: 70, S: 70, H: 2, Hkv: 1, hd: 64, kvLen: 70, mask: padMask(2, 70, [0, 9], 'right') },
    true,
    true,
  ),
  attentionCase(
    'attention fwd+bwd, hd 128, MHA, T 40',
    { B: 1, T: 40, S: 40, H: 3, Hkv: 3, hd: 128, kvLen: 40, mask: padMask(1, 40, [0], 'left') },
    true,
  ),
  attentionCase(
    'attention fwd+bwd, GQA 4/2, hd 32, T 20 of kvLen 50 (S 60), rows with no visible key',
    { B: 2, T: 20, S: 60, H: 4, Hkv: 2, hd: 32, kvLen: 50, mask: padMask(2, 60, [0, 40], 'left') },
    true,
  ),
  attentionCase(
    'attention fwd+bwd, hd 160 (matrix path only), T 17',
    { B: 1, T: 17, S: 17, H: 2, Hkv: 1, hd: 160, kvLen: 17, mask: padMask(1, 17, [3], 'left') },
    true,
  ),
  attentionCase(
    'attention fwd, KV cache prefill (T 3 of kvLen 75, S 80), hd 128',
    { B: 2, T: 3, S: 80, H: 4, Hkv: 2, hd: 128, kvLen: 75, mask: padMask(2, 80, [0, 30], 'left') },
    false,
  ),
  attentionCase(
    'attention fwd, decode step (T 1), GQA 8/2, hd 64',
    { B: 3, T: 1, S: 40, H: 8, Hkv: 2, hd: 64, kvLen: 33, mask: padMask(3, 40, [0, 5, 20], 'left') },
    false,
  ),
  attentionCase(
    'attention fwd+bwd, hd 128, T 200 (several 64-row tiles), GQA 4/2, left padding',
    { B: 2, T: 200, S: 200, H: 4, Hkv: 2, hd: 128, kvLen: 200, mask: padMask(2, 200, [0, 37], 'left') },
    true,
  ),
  // The flash forward scans a block's keys for masked ones before its tiles (each of 128 threads
  // several entries at this length); keys 384-399 are masked for the rows after them.
  attentionCase(
    'attention fwd, hd 64, T 420, keys 384-399 masked (past three entries per thread)',
    {
      B: 1,
      T: 420,
      S: 420,
      H: 1,
      Hkv: 1,
      hd: 64,
      kvLen: 420,
      mask: Array.from({ length: 420 }, (_, s) => (s >= 384 && s < 400 ? 0 : 1)),
    },
    false,
  ),
  attentionCase(
    "attention fwd+bwd with RoPE's backward, hd 128, T 200, GQA 4/2 (dQ from dS; positions in and past the cosine table)",
    {
      B: 2,
      T: 200,
      S: 200,
      H: 4,
      Hkv: 2,
      hd: 128,
      kvLen: 200,
      mask: padMask(2, 200, [0, 37], 'left'),
      rope: { theta: 10000, positions: Array.from({ length: 400 }, (_, i) => (i < 200 ? i : 4000 + i)) },
    },
    true,
  ),
  attentionCase(
    "attention fwd+bwd with RoPE's backward, hd 64, T 70 (dQ recomputed)",
    {
      B: 2,
      T: 70,
      S: 70,
      H: 2,
      Hkv: 1,
      hd: 64,
      kvLen: 70,
      mask: padMask(2, 70, [0, 9], 'right'),
      rope: { theta: 1000000, positions: Array.from({ length: 140 }, (_, i) => (i * 7) % 70) },
    },
    true,
  ),
  attentionCase(
    "attention fwd+bwd with RoPE's backward, hd 160 (matrix path)",
    {
      B: 1,
      T: 17,
      S: 17,
      H: 2,
      Hkv: 1,
      hd: 160,
      kvLen: 17,
      mask: padMask(1, 17, [3], 'left'),
      rope: { theta: 10000, positions: Array.from({ length: 17 }, (_, i) => i) },
    },
    true,
  ),
  attentionCase(
    'attention fwd+bwd, hd 64, T 90 of kvLen 150 (S 160), MHA',
    { B: 2, T: 90, S: 160, H: 2, Hkv: 2, hd: 64, kvLen: 150, mask: padMask(2, 160, [0, 50], 'left') },
    true,
  ),
  attentionCase(
    'attention fwd+bwd, hd 3, a row with no visible key',
    { B: 1, T: 4, S: 6, H: 2, Hkv: 1, hd: 3, kvLen: 6, mask: [0, 0, 0, 1, 1, 1] },
    true,
  ),
  {
    name: 'swiglu forward and backward (in place; sizes with and without 16-byte vectors)',
    run(be, dt) {
      const rand = rng(10);
      const r: Record<string, Float32Array> = {};
      for (const n of [ELEMENTWISE_N, 1001]) {
        const gate = be.upload(values(n, 4, rand), [n], dt),
          up = be.upload(values(n, 1, rand), [n], dt),
          out = be.alloc([n], dt);
        be.swigluForward(out, gate, up);
        const dout = be.upload(values(n, 1, rand), [n], dt);
        be.swigluBackward(gate, up, dout, gate, up);
        Object.assign(r, { [`out${n}`]: get(be, out), [`dgate${n}`]: get(be, gate), [`dup${n}`]: get(be, up) });
        for (const t of [gate, up, out, dout]) be.free(t);
      }
      return r;
    },
  },
  {
    name: 'crossEntropy (ignored rows, dlogits in place, loss only)',
    run(be, dt) {
      const rand = rng(11);
      const N = 7,
        V = 5000;
      const host = values(N * V, 6, rand);
      const targets = be.upload(ints([3, -100, 4999, 0, -100, 1234, 42]), [N], 'i32');
      const logits = be.upload(host, [N, V], dt),
        losses = be.alloc([N]);
      be.crossEntropy(losses, logits, targets, logits, 0.25);
      const plain = be.upload(host, [N, V], dt),
        losses2 = be.alloc([N]);
      be.crossEntropy(losses2, plain, targets);
      const r = { losses: get(be, losses), dlogits: get(be, logits), lossesNoGrad: get(be, losses2) };
      for (const t of [targets, logits, losses, plain, losses2]) be.free(t);
      return r;
    },
  },
  {
    name: 'adamw (f32, two steps, with and without decay)',
    bf16Tolerance: 1e-6,
    f32Tolerance: 1e-6,
    run(be) {
      const rand = rng(12);
      const n = 1000;
      const p = be.upload(values(n, 1, rand), [n]),
        m = be.alloc([n]),
        v = be.alloc([n]);
      for (let step = 1; step <= 2; step++) {
        const g = be.upload(values(n, 0.1, rand), [n]);
        be.adamw(p, g, m, v, {
          lr: 2e-4 * step,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: step === 1 ? 0.01 : 0,
          step,
        });
        be.free(g);
      }
      const r = { p: get(be, p), m: get(be, m), v: get(be, v) };
      for (const t of [p, m, v]) be.free(t);
      return r;
    },
  },
];

export interface ParityResult {
  output: string;
  maxAbs: number;
  /** maxAbs / max |reference|. */
  rel: number;
}

/** Errors of `got` against `ref` per output (equal infinities count as equal). */
export function compareOutputs(got: Record<string, Float32Array>, ref: Record<string, Float32Array>): ParityResult[] {
  return Object.keys(ref).map((output) => {
    const a = got[output],
      b = ref[output];
    if (!a || a.length !== b.length) return { output, maxAbs: Infinity, rel: Infinity };
    let maxAbs = 0,
      scale = 0;
    for (let i = 0; i < b.length; i++) {
      if (Number.isFinite(b[i])) scale = Math.max(scale, Math.abs(b[i]));
      if (a[i] === b[i]) continue;
      const d = Math.abs(a[i] - b[i]);
      maxAbs = Math.max(maxAbs, Number.isNaN(d) ? Infinity : d);
    }
    return { output, maxAbs, rel: maxAbs === 0 ? 0 : maxAbs / (scale || 1) };
  });
}
