/**
 * The base products of a training step at Qwen1.5-1.8B's shapes (8192 tokens, dense bf16
 * weights), timed alone on the CUDA backend: forward x W^T and input gradient dy W for each
 * projection shape, written and accumulated, and q/k/v as one matmulMany. Compare with
 * tools/reference/gemm_shapes.py (torch) run in the same command.
 *
 *   node gemm-shapes.mjs OUT_DIR
 */
import type { Tensor } from '../../src/backend/backend.js';
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import { SHAPE_1_8B, timeMs } from './timing.js';
import { openLog } from './log.js';

const log = openLog(process.argv[2] ?? 'gemm-shapes-out', 'gemm-shapes.log');
const be = new CudaBackend();
const { D, I } = SHAPE_1_8B;
const M = 8192;
const time = (fn: () => void): number => timeMs(be, 20, fn, 5);
/** Random operands: products of zeros draw less power and run faster than real ones. */
const rand = (shape: number[]): Tensor =>
  be.upload(
    Float32Array.from({ length: shape[0] * shape[1] }, () => Math.random() - 0.5),
    shape,
    'bf16',
  );
const report = (name: string, ms: number, flops: number): void =>
  log(`${name.padEnd(44)} ${ms.toFixed(3).padStart(8)} ms ${(flops / ms / 1e9).toFixed(0).padStart(5)} TFLOP/s`);
log(`${be.name}: products of ${M} tokens, bf16`);
for (const [out, inp] of [
  [D, D],
  [I, D],
  [D, I],
]) {
  const w = rand([out, inp]),
    x = rand([M, inp]),
    y = rand([M, out]);
  const fl = 2 * M * out * inp;
  for (const accumulate of [false, true]) {
    report(
      `forward  [${out}, ${inp}]${accumulate ? ' accumulate' : ''}`,
      time(() => be.matmul(y, x, w, { transB: true, accumulate })),
      fl,
    );
    report(
      `gradient [${out}, ${inp}]${accumulate ? ' accumulate' : ''}`,
      time(() => be.matmul(x, y, w, { accumulate })),
      fl,
    );
  }
  for (const t of [w, x, y]) be.free(t);
}
const x = rand([M, D]);
const ws = [0, 1, 2].map(() => rand([D, D])),
  ys = [0, 1, 2].map(() => rand([M, D]));
for (const accumulate of [false, true]) {
  report(
    `q, k, v forward as one matmulMany${accumulate ? ' accumulate' : ''}`,
    time(() => be.matmulMany(ys, x, ws, [], accumulate)),
    3 * 2 * M * D * D,
  );
}
report(
  'q, k, v gradients, three accumulated',
  time(() => ws.forEach((w, i) => be.matmul(x, ys[i], w, { accumulate: true }))),
  3 * 2 * M * D * D,
);
const gws = [0, 1].map(() => rand([I, D])),
  gys = [0, 1].map(() => rand([M, I]));
report(
  'gate, up forward as one matmulMany',
  time(() => be.matmulMany(gys, x, gws)),
  2 * 2 * M * I * D,
);
report(
  'gate, up gradients, two accumulated',
  time(() => gws.forEach((w, i) => be.matmul(x, gys[i], w, { accumulate: true }))),
  2 * 2 * M * I * D,
);
// The same products on concatenated weights: one product each.
for (const n of [3 * D, 2 * I]) {
  const w = rand([n, D]),
    y = rand([M, n]);
  for (const accumulate of [false, true]) {
    report(
      `concatenated [${n}, ${D}] forward${accumulate ? ' accumulate' : ''}`,
      time(() => be.matmul(y, x, w, { transB: true, accumulate })),
      2 * M * n * D,
    );
    report(
      `concatenated [${n}, ${D}] gradient${accumulate ? ' accumulate' : ''}`,
      time(() => be.matmul(x, y, w, { accumulate })),
      2 * M * n * D,
    );
  }
  be.free(w);
  be.free(y);
}
// Sustained: the same products for about a second, as in a training step (power and clocks settle).
{
  const w = rand([D, D]),
    y = rand([M, D]);
  const fl = 2 * M * D * D;
  for (const iters of [20, 200, 2000])
    report(
      `forward [${D}, ${D}] x${iters} in a row`,
      timeMs(be, iters, () => be.matmul(y, x, w, { transB: true }), 0),
      fl,
    );
}
be.synchronize();
