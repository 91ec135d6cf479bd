/** The CPU matmul in every layout against a naive triple loop, and NF4 weights against dense. */
import { describe, expect, it } from 'vitest';
import type { Nf4Weight } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { randomArray, rng } from './helpers/random-qwen2.js';

const be = new CpuBackend();
const rand = rng(3);

/** (i, j) element of op(x) where x is stored [r, c] row-major. */
function at(x: ArrayLike<number>, cols: number, i: number, j: number, trans: boolean): number {
  return trans ? x[j * cols + i] : x[i * cols + j];
}

function naive(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += at(a, transA ? M : K, i, k, transA) * at(b, transB ? K : N, k, j, transB);
      out[i * N + j] = s;
    }
  return out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  expect(worst).toBeLessThan(tol);
}

describe('CPU matmul', () => {
  // Odd sizes exercise the 4-row blocks and their remainders.
  const M = 7,
    N = 5,
    K = 9;
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      it(`computes alpha * op(a) @ op(b) (+ out) with transA=${transA} transB=${transB}`, () => {
        const a = randomArray(M * K, 1, rand),
          b = randomArray(K * N, 1, rand),
          c0 = randomArray(M * N, 1, rand);
        const at_ = be.upload(a, transA ? [K, M] : [M, K]),
          bt = be.upload(b, transB ? [N, K] : [K, N]);
        const want = naive(a, b, M, N, K, transA, transB);
        const out = be.alloc([M, N]);
        be.matmul(out, at_, bt, { transA, transB });
        expectClose(be.download(out), want, 1e-5);
        const acc = be.upload(c0, [M, N]);
        be.matmul(acc, at_, bt, { transA, transB, alpha: -0.5, accumulate: true });
        expectClose(
          be.download(acc),
          want.map((w, i) => c0[i] - 0.5 * w),
          1e-5,
        );
      });
    }
  }

  it('multiplies batches, with a per-batch or a shared b', () => {
    const Bn = 3;
    const a = randomArray(Bn * M * K, 1, rand),
      b = randomArray(Bn * K * N, 1, rand);
    const out = be.alloc([Bn, M, N]);
    be.matmul(out, be.upload(a, [Bn, M, K]), be.upload(b, [Bn, K, N]));
    const shared = be.alloc([Bn, M, N]);
    be.matmul(shared, be.upload(a, [Bn, M, K]), be.upload(b.subarray(0, K * N), [K, N]));
    const got = be.download(out),
      gotShared = be.download(shared);
    for (let i = 0; i < Bn; i++) {
      const ai = a.subarray(i * M * K, (i + 1) * M * K);
      expectClose(
        got.subarray(i * M * N, (i + 1) * M * N),
        naive(ai, b.subarray(i * K * N, (i + 1) * K * N), M, N, K, false, false),
        1e-5,
      );
      expectClose(
        gotShared.subarray(i * M * N, (i + 1) * M * N),
        naive(ai, b.subarray(0, K * N), M, N, K, false, false),
        1e-5,
      );
    }
  });

  it('rejects mismatched inner dimensions', () => {
    expect(() => be.matmul(be.alloc([2, 2]), be.alloc([2, 3]), be.alloc([2, 2]))).toThrow(/inner dimensions/);
  });
});

describe('CPU matmul with an NF4 weight', () => {
  const code = Float32Array.from([
    -1, -0.696, -0.525, -0.395, -0.284, -0.185, -0.091, 0, 0.08, 0.161, 0.246, 0.338, 0.441, 0.563, 0.723, 1,
  ]);

  function randomNf4(rows: number, cols: number, blockSize: number): { w: Nf4Weight; dense: Float64Array } {
    const n = rows * cols;
    const codes = new Uint8Array(Math.ceil(n / 2));
    for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(rand() * 256);
    const absmax = Float32Array.from(randomArray(Math.ceil(n / blockSize), 1, rand, 1.5));
    const dense = new Float64Array(n);
    for (let e = 0; e < n; e++) {
      const nib = e % 2 === 0 ? codes[e >> 1] >> 4 : codes[e >> 1] & 15;
      dense[e] = code[nib] * absmax[Math.floor(e / blockSize)];
    }
    return { w: { shape: [rows, cols], blockSize, code, codes, absmax }, dense };
  }

  it('equals the dense product of the dequantized weight, as x W^T and as dy W', () => {
    // Rows of 300 with blocks of 64: blocks straddle rows, and several slabs are needed.
    const out = 260,
      inp = 300,
      M = 5;
    const { w, dense } = randomNf4(out, inp, 64);
    const wt = be.uploadNf4(w);
    const x = randomArray(M * inp, 1, rand),
      dy = randomArray(M * out, 1, rand);
    const y = be.alloc([M, out]);
    be.matmul(y, be.upload(x, [M, inp]), wt, { transB: true });
    expectClose(be.download(y), naive(x, dense, M, out, inp, false, true), 1e-4);
    const dx = be.upload(new Float32Array(M * inp).fill(1), [M, inp]);
    be.matmul(dx, be.upload(dy, [M, out]), wt, { accumulate: true });
    expectClose(
      be.download(dx),
      naive(dy, dense, M, inp, out, false, false).map((v) => v + 1),
      1e-4,
    );
  });

  it('sums the input gradients of projections sharing an input (matmulSum), and names a count mismatch', () => {
    const inp = 128,
      M = 3,
      outs = [64, 32];
    const ws = outs.map((o) => randomNf4(o, inp, 64));
    const dys = outs.map((o) => randomArray(M * o, 1, rand));
    const dx = be.upload(new Float32Array(M * inp).fill(2), [M, inp]);
    be.matmulSum(
      dx,
      dys.map((d, i) => be.upload(d, [M, outs[i]])),
      ws.map((w) => be.uploadNf4(w.w)),
      true,
    );
    const expected = naive(dys[0], ws[0].dense, M, inp, outs[0], false, false).map(
      (v, i) => v + naive(dys[1], ws[1].dense, M, inp, outs[1], false, false)[i] + 2,
    );
    expectClose(be.download(dx), expected, 1e-4);
    expect(() =>
      be.matmulSum(
        dx,
        [be.alloc([M, 64])],
        ws.map((w) => be.uploadNf4(w.w)),
      ),
    ).toThrow(/matmulSum: 1 inputs for 2 weights/);
  });
});
