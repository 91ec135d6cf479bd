/**
 * The CUDA backend's row operations: embedding lookup, RMSNorm (alone and fused with the
 * residual add), cross-entropy and the two-pass reductions. Invalid token ids or targets set the
 * backend's device error word (kernels cannot throw), which download() reports.
 */
import { checkSameSize, expectShape, type Tensor } from '../backend.js';
import type { CudaBackend } from './cuda-backend.js';
import { floatArg, ptrOf } from './cuda-tensor.js';
import { DECODE } from './kernels/decode.js';
import { ELEMENTWISE } from './kernels/elementwise.js';
import { CE_CLUSTER, ROWS } from './kernels/rows.js';
import { bf16x8, normRows8, ptrArg, rowThreads, rowThreads8 } from './launch.js';

export function embedding(cb: CudaBackend, out: Tensor, table: Tensor, ids: Tensor): void {
  const [V, D] = table.shape;
  expectShape('embedding out', out, [ids.size, D]);
  if (ids.size === 0) return;
  const fn = cb.device.kernel(ELEMENTWISE, 'embedding');
  cb.device.launch(fn, [ids.size], Math.min(256, 32 * Math.ceil(D / 32)), 0, [
    ...floatArg(out, 'embedding out'),
    ...floatArg(table, 'embedding table'),
    ptrOf(ids, 'i32', 'embedding ids'),
    D,
    V,
    cb.errors.ptr,
  ]);
}

export function rmsNormForward(
  cb: CudaBackend,
  out: Tensor,
  rstd: Tensor,
  x: Tensor,
  weight: Tensor,
  eps: number,
): void {
  checkSameSize('rmsNormForward', out, x);
  if (rstd.size * weight.size !== x.size) throw new Error('rmsNormForward: rstd must have one entry per row of x');
  if (rstd.size === 0) return;
  const D = weight.size;
  if (normRows8(D) && bf16x8(out, x, weight)) {
    cb.device.launch(cb.device.kernel(ROWS, 'rmsnorm_fwd_bf16x8'), [rstd.size], rowThreads8(D / 8), 0, [
      ptrArg(out),
      ptrOf(rstd, 'f32', 'rmsNorm rstd'),
      ptrArg(x),
      ptrArg(weight),
      D / 8,
      eps,
    ]);
    return;
  }
  cb.device.launch(cb.device.kernel(ROWS, 'rmsnorm_fwd'), [rstd.size], rowThreads(D), 0, [
    ...floatArg(out, 'rmsNorm out'),
    ptrOf(rstd, 'f32', 'rmsNorm rstd'),
    ...floatArg(x, 'rmsNorm x'),
    ...floatArg(weight, 'rmsNorm weight'),
    D,
    eps,
  ]);
}

export function rmsNormBackward(
  cb: CudaBackend,
  dx: Tensor,
  dout: Tensor,
  x: Tensor,
  weight: Tensor,
  rstd: Tensor,
  accumulate = false,
): void {
  checkSameSize('rmsNormBackward', dx, dout, x);
  if (rstd.size * weight.size !== x.size) throw new Error('rmsNormBackward: rstd must have one entry per row of x');
  if (rstd.size === 0) return;
  const D = weight.size;
  if (D % 8 === 0 && bf16x8(dx, dout, x, weight)) {
    cb.device.launch(cb.device.kernel(ROWS, 'rmsnorm_bwd_bf16x8'), [rstd.size], rowThreads8(D / 8), 0, [
      ptrArg(dx),
      ptrArg(dout),
      ptrArg(x),
      ptrArg(weight),
      ptrOf(rstd, 'f32', 'rmsNorm rstd'),
      D / 8,
      accumulate ? 1 : 0,
    ]);
    return;
  }
  cb.device.launch(cb.device.kernel(ROWS, 'rmsnorm_bwd'), [rstd.size], rowThreads(D), 0, [
    ...floatArg(dx, 'rmsNorm dx'),
    ...floatArg(dout, 'rmsNorm dout'),
    ...floatArg(x, 'rmsNorm x'),
    ...floatArg(weight, 'rmsNorm weight'),
    ptrOf(rstd, 'f32', 'rmsNorm rstd'),
    D,
    accumulate ? 1 : 0,
  ]);
}

export function addRmsNorm(
  cb: CudaBackend,
  sum: Tensor,
  out: Tensor,
  rstd: Tensor,
  a: Tensor,
  b: Tensor,
  weight: Tensor,
  eps: number,
): void {
  checkSameSize('addRmsNorm', sum, out, a, b);
  if (rstd.size * weight.size !== sum.size) throw new Error('addRmsNorm: rstd must have one entry per row');
  if (rstd.size === 0) return;
  const D = weight.size;
  if (normRows8(D) && bf16x8(sum, out, a, b, weight)) {
    cb.device.launch(cb.device.kernel(ROWS, 'add_rmsnorm_bf16x8'), [rstd.size], rowThreads8(D / 8), 0, [
      ptrArg(sum),
      ptrArg(out),
      ptrOf(rstd, 'f32', 'addRmsNorm rstd'),
      ptrArg(a),
      ptrArg(b),
      ptrArg(weight),
      D / 8,
      eps,
    ]);
    return;
  }
  cb.device.launch(cb.device.kernel(DECODE, 'add_rmsnorm'), [rstd.size], rowThreads(D), 0, [
    ...floatArg(sum, 'addRmsNorm sum'),
    ...floatArg(out, 'addRmsNorm out'),
    ptrOf(rstd, 'f32', 'addRmsNorm rstd'),
    ...floatArg(a, 'addRmsNorm a'),
    ...floatArg(b, 'addRmsNorm b'),
    ...floatArg(weight, 'addRmsNorm weight'),
    D,
    eps,
  ]);
}

export function crossEntropy(
  cb: CudaBackend,
  losses: Tensor,
  logits: Tensor,
  targets: Tensor,
  dlogits?: Tensor,
  gradScale = 1,
): void {
  const N = targets.size;
  if (logits.size % N !== 0 || losses.size !== N)
    throw new Error('crossEntropy: logits must be [N, V] with N targets and N losses');
  if (dlogits) checkSameSize('crossEntropy dlogits', dlogits, logits);
  if (N === 0) return;
  const V = logits.size / N;
  if (V % 8 === 0 && bf16x8(logits, ...(dlogits ? [dlogits] : []))) {
    // One read of the logits where a cluster of blocks (sm_90) can hold the row in registers.
    const threads = 32 * Math.ceil(V / 8 / CE_CLUSTER.blocks / CE_CLUSTER.perThread / 32);
    if (cb.device.cc >= 90 && threads <= 1024) {
      cb.device.launch(cb.device.kernel(ROWS, 'cross_entropy_bf16x8_cluster'), [N * CE_CLUSTER.blocks], threads, 0, [
        ptrOf(losses, 'f32', 'crossEntropy losses'),
        ptrArg(logits),
        ptrOf(targets, 'i32', 'crossEntropy targets'),
        dlogits ? ptrArg(dlogits) : 0,
        dlogits ? 1 : 0,
        gradScale,
        V / 8,
        cb.errors.ptr,
      ]);
      return;
    }
    cb.device.launch(cb.device.kernel(ROWS, 'cross_entropy_bf16x8'), [N], Math.min(1024, 32 * Math.ceil(V / 256)), 0, [
      ptrOf(losses, 'f32', 'crossEntropy losses'),
      ptrArg(logits),
      ptrOf(targets, 'i32', 'crossEntropy targets'),
      dlogits ? ptrArg(dlogits) : 0,
      dlogits ? 1 : 0,
      gradScale,
      V / 8,
      cb.errors.ptr,
    ]);
    return;
  }
  const [dPtr, dCode] = dlogits ? floatArg(dlogits, 'crossEntropy dlogits') : [0, 0];
  cb.device.launch(cb.device.kernel(ROWS, 'cross_entropy'), [N], Math.min(1024, 32 * Math.ceil(V / 64)), 0, [
    ptrOf(losses, 'f32', 'crossEntropy losses'),
    ...floatArg(logits, 'crossEntropy logits'),
    ptrOf(targets, 'i32', 'crossEntropy targets'),
    dPtr,
    dCode,
    dlogits ? 1 : 0,
    gradScale,
    V,
    cb.errors.ptr,
  ]);
}

export function reduce(cb: CudaBackend, out: Tensor, x: Tensor, squares: boolean, accumulate: boolean): void {
  const o = ptrOf(out, 'f32', squares ? 'sumSquares out' : 'sum out');
  const blocks = Math.max(1, Math.min(256, Math.ceil(x.size / 1024)));
  const partial = cb.device.allocator.alloc(blocks * 8);
  cb.device.launch(cb.device.kernel(ROWS, 'reduce_partial'), [blocks], 256, 0, [
    ...floatArg(x, 'sum x'),
    x.size,
    squares ? 1 : 0,
    partial.ptr,
  ]);
  cb.device.launch(cb.device.kernel(ROWS, 'reduce_final'), [1], 256, 0, [partial.ptr, blocks, o, accumulate ? 1 : 0]);
  cb.device.allocator.release(partial.ptr, partial.size);
}
