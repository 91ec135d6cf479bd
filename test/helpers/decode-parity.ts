/**
 * Parity cases (see backend-parity.ts) for the kernels of the decoding loop: argmax, row
 * gathers and position updates must match the CPU exactly; projections sharing an input, the
 * fused add + RMSNorm, RoPE into the cache and one-query attention (bf16 storage: the vectorized
 * kernel; f32: the generic one) within the usual tolerances. Inputs are bf16-representable,
 * so both backends see identical values. Used by test/backend-cuda-decode.test.ts and
 * tools/gpu-check/generate-check.ts.
 */
import type { Backend, Tensor } from '../../src/backend/backend.js';
import { get, values, type ParityCase } from './backend-parity.js';
import { rng } from './random-qwen2.js';

function freeAll(be: Backend, ts: Tensor[]): void {
  for (const t of ts) be.free(t);
}

/** Rows of logits with planted ties (the first maximum must win) and rows of one repeated value. */
function argmaxCase(N: number, V: number): ParityCase {
  return {
    name: `argmaxRows ${N} x ${V} (ties, constant rows)`,
    bf16Tolerance: 0,
    f32Tolerance: 0,
    run(be, dt) {
      const rand = rng(V);
      const x = values(N * V, 4, rand);
      for (let n = 0; n < N; n++) {
        const row = x.subarray(n * V, (n + 1) * V);
        if (n % 3 === 2) row.fill(-1.5);
        else {
          const a = Math.floor(rand() * V),
            b = Math.floor(rand() * V);
          row[a] = row[b] = 8;
        }
      }
      const xt = be.upload(x, [N, V], dt),
        out = be.alloc([N], 'i32');
      be.argmaxRows(out, xt);
      const result = { index: get(be, out) };
      freeAll(be, [xt, out]);
      return result;
    },
  };
}

const gatherCase: ParityCase = {
  name: 'gatherRows and scatterRows (float rows of 16-byte units and of odd width, i32 rows), addI32',
  bf16Tolerance: 0,
  f32Tolerance: 0,
  run(be, dt) {
    const rand = rng(3);
    const result: Record<string, Float32Array> = {};
    const owned: Tensor[] = [];
    const index = be.upload(Int32Array.of(4, 0, 2, 2), [4], 'i32'),
      scatterIndex = be.upload(Int32Array.of(5, 1, 0, 3), [4], 'i32');
    for (const width of [64, 5]) {
      const src = be.upload(values(6 * width, 1, rand), [6, width], dt),
        out = be.alloc([4, width], dt);
      be.gatherRows(out, src, index);
      result[`float width ${width}`] = get(be, out);
      const back = be.upload(values(6 * width, 1, rand), [6, width], dt);
      be.scatterRows(back, out, scatterIndex);
      result[`scattered width ${width}`] = get(be, back);
      owned.push(src, out, back);
    }
    const ints = be.upload(
        Int32Array.from({ length: 6 * 3 }, (_, i) => i * 7 - 20),
        [6, 3],
        'i32',
      ),
      picked = be.alloc([4, 3], 'i32');
    be.gatherRows(picked, ints, index);
    be.addI32(picked, 3);
    result.ints = get(be, picked);
    freeAll(be, [...owned, index, scatterIndex, ints, picked]);
    return result;
  },
};

const addRmsNormCase: ParityCase = {
  name: 'addRmsNorm (sum written over a, rows of 2048 and 24)',
  run(be, dt) {
    const rand = rng(11);
    const result: Record<string, Float32Array> = {};
    for (const [N, D] of [
      [3, 2048],
      [5, 24],
    ]) {
      const a = be.upload(values(N * D, 2, rand), [N, D], dt),
        b = be.upload(values(N * D, 2, rand), [N, D], dt);
      const w = be.upload(values(D, 1, rand), [D], dt),
        out = be.alloc([N, D], dt),
        rstd = be.alloc([N]);
      be.addRmsNorm(a, out, rstd, a, b, w, 1e-6);
      Object.assign(result, { [`sum ${D}`]: get(be, a), [`out ${D}`]: get(be, out), [`rstd ${D}`]: get(be, rstd) });
      freeAll(be, [a, b, w, out, rstd]);
    }
    return result;
  },
};

function ropeAppendCase(
  B: number,
  T: number,
  H: number,
  Hkv: number,
  hd: number,
  S: number,
  offset: number,
): ParityCase {
  return {
    name: `ropeAppendKv B ${B}, T ${T}, heads ${H}/${Hkv}, hd ${hd}, slots ${offset}..${offset + T} of ${S}`,
    run(be, dt) {
      const rand = rng(B * 100 + T);
      const q = be.upload(values(B * T * H * hd, 1, rand), [B, T, H, hd], dt);
      const k = be.upload(values(B * T * Hkv * hd, 1, rand), [B, T, Hkv, hd], dt),
        v = be.upload(values(B * T * Hkv * hd, 1, rand), [B, T, Hkv, hd], dt);
      const kc = be.upload(values(B * S * Hkv * hd, 1, rand), [B, S, Hkv, hd], dt),
        vc = be.upload(values(B * S * Hkv * hd, 1, rand), [B, S, Hkv, hd], dt);
      const pos = be.upload(
        Int32Array.from({ length: B * T }, (_, i) => 3 * i + 100 * (i % 2)),
        [B * T],
        'i32',
      );
      be.ropeAppendKv(kc, vc, q, k, v, pos, offset, 1e6);
      const result = { q: get(be, q), kCache: get(be, kc), vCache: get(be, vc) };
      freeAll(be, [q, k, v, kc, vc, pos]);
      return result;
    },
  };
}

interface DecodeAttention {
  B: number;
  S: number;
  H: number;
  Hkv: number;
  hd: number;
  kvLen: number;
  /** Padding slots at the start of each row (a row padded past kvLen sees no key). */
  pad: number[];
}

function decodeAttentionCase(c: DecodeAttention): ParityCase {
  return {
    name: `attention, one query per sequence: B ${c.B}, heads ${c.H}/${c.Hkv}, hd ${c.hd}, kvLen ${c.kvLen} of ${c.S}, left padding ${c.pad.join('/')}`,
    run(be, dt) {
      const rand = rng(c.kvLen * 7 + c.hd);
      const q = be.upload(values(c.B * c.H * c.hd, 1.5, rand), [c.B, 1, c.H, c.hd], dt);
      const k = be.upload(values(c.B * c.S * c.Hkv * c.hd, 1.5, rand), [c.B, c.S, c.Hkv, c.hd], dt);
      const v = be.upload(values(c.B * c.S * c.Hkv * c.hd, 1, rand), [c.B, c.S, c.Hkv, c.hd], dt);
      const mask = be.upload(
        Int32Array.from({ length: c.B * c.S }, (_, i) => (i % c.S >= c.pad[Math.floor(i / c.S)] ? 1 : 0)),
        [c.B, c.S],
        'i32',
      );
      const out = be.alloc([c.B, 1, c.H, c.hd], dt),
        lse = be.alloc([c.B, 1, c.H]);
      be.attentionForward(out, lse, q, k, v, mask, { kvLen: c.kvLen });
      const result = { out: get(be, out), lse: get(be, lse) };
      freeAll(be, [q, k, v, mask, out, lse]);
      return result;
    },
  };
}

/** Projections sharing one input: two groups of equal shapes and a lone weight, with and without biases. */
const matmulManyCase: ParityCase = {
  name: 'matmulMany (q/k/v-like: 2 x [48, 64] and [16, 64], biases on two; gate/up-like: 2 x [96, 64]; 37 rows)',
  run(be, dt) {
    const rand = rng(29);
    const a = be.upload(values(37 * 64, 1, rand), [37, 64], dt);
    const result: Record<string, Float32Array> = {};
    const owned: Tensor[] = [a];
    for (const [rows, biased] of [
      [
        [48, 16, 48],
        [true, false, true],
      ],
      [
        [96, 96],
        [false, false],
      ],
    ] as const) {
      const bs = rows.map((n) => be.upload(values(n * 64, 1, rand), [n, 64], dt));
      const biases = rows.map((n, i) => (biased[i] ? be.upload(values(n, 1, rand), [n], dt) : null));
      const outs = rows.map((n) => be.alloc([37, n], dt));
      be.matmulMany(outs, a, bs, biases);
      owned.push(...biases.filter((b): b is Tensor => b !== null));
      outs.forEach((o, i) => (result[`${rows.join('/')} out ${i}`] = get(be, o)));
      owned.push(...bs, ...outs);
    }
    freeAll(be, owned);
    return result;
  },
};

export const DECODE_PARITY_CASES: ParityCase[] = [
  matmulManyCase,
  argmaxCase(7, 10007),
  argmaxCase(2, 151936),
  gatherCase,
  addRmsNormCase,
  ropeAppendCase(3, 1, 4, 2, 128, 9, 6),
  ropeAppendCase(2, 5, 2, 2, 16, 8, 3),
  decodeAttentionCase({ B: 3, S: 300, H: 4, Hkv: 4, hd: 128, kvLen: 290, pad: [0, 7, 100] }),
  decodeAttentionCase({ B: 2, S: 20, H: 6, Hkv: 2, hd: 64, kvLen: 13, pad: [3, 15] }),
  decodeAttentionCase({ B: 1, S: 9, H: 2, Hkv: 1, hd: 3, kvLen: 9, pad: [2] }),
  decodeAttentionCase({ B: 2, S: 40, H: 4, Hkv: 1, hd: 32, kvLen: 37, pad: [0, 36] }),
];
