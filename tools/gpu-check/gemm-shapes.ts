/**
 * The base products of a training step at Qwen1.5-1.8B's shapes (8192 tokens, dense bf16
 * weights), timed alone on the CUDA backend: forward x W^T and input gradient dy W for each
 * projection shape, written and accumulated, and q/k/v as one matmulMany. Compare with
 * tools/reference/gemm_shapes.py (torch) run in the same command.
 *
 *   node gemm-shapes.mjs OUT_DIR
 */
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import { SHAPE_1_8B, timeMs } from './timing.js';
import { openLog } from './log.js';

const log = openLog(process.argv[2] ?? 'gemm-shapes-out', 'gemm-shapes.log');
const be = new CudaBackend();
const { D, I } = SHAPE_1_8B;
const M = 8192;
const time = (fn: () => void): number => timeMs(be, 20, fn, 5);
const report = (name: string, ms: number, flops: number): void => log(`${name.padEnd(44)} ${ms.toFixed(3).padStart(8)} ms ${(flops / ms / 1e9).toFixed(0).padStart(5)} TFLOP/s`);
log(`${be.name}: products of ${M} tokens, bf16`);
for (const [out, inp] of [[D, D], [I, D], [D, I]]) {
  const w = be.alloc([out, inp], 'bf16'), x = be.alloc([M, inp], 'bf16'), y = be.alloc([M, out], 'bf16');
  const fl = 2 * M * out * inp;
  for (const accumulate of [false, true]) {
    report(`forward  [${out}, ${inp}]${accumulate ? ' accumulate' : ''}`, time(() => be.matmul(y, x, w, { transB: true, accumulate })), fl);
    report(`gradient [${out}, ${inp}]${accumulate ? ' accumulate' : ''}`, time(() => be.matmul(x, y, w, { accumulate })), fl);
  }
  for (const t of [w, x, y]) be.free(t);
}
const x = be.alloc([M, D], 'bf16');
const ws = [0, 1, 2].map(() => be.alloc([D, D], 'bf16')), ys = [0, 1, 2].map(() => be.alloc([M, D], 'bf16'));
report('q, k, v forward as one matmulMany', time(() => be.matmulMany(ys, x, ws)), 3 * 2 * M * D * D);
be.synchronize();
