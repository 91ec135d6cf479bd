/**
 * The decoding loop's small operations on the CUDA backend: gathering and scattering rows (KV
 * cache moves), the greedy pick (argmax per row) and adding to token ids or positions.
 */
import { copyRowsDims, type Tensor, type TensorDType } from '../backend.js';
import type { CudaBackend } from './cuda-backend.js';
import { asCuda, elementBytes, floatArg, ptrOf } from './cuda-tensor.js';
import { DECODE } from './kernels/decode.js';
import { gridFor } from './launch.js';

/** Rows index[i] of src to rows i of out (gather), or rows i of src to rows index[i] of out (scatter). */
export function copyRows(
  cb: CudaBackend,
  what: string,
  out: Tensor,
  src: Tensor,
  index: Tensor,
  scatter: boolean,
): void {
  const o = asCuda(out, `${what} out`),
    s = asCuda(src, `${what} src`);
  const { rows, width } = copyRowsDims(what, out, src, index, scatter);
  const N = index.size,
    listed = scatter ? s : o;
  if (N === 0 || width === 0) return;
  const rowBytes = width * elementBytes(o.dtype as Exclude<TensorDType, 'nf4'>);
  const unit = [16, 4, 2, 1].find((u) => rowBytes % u === 0 && o.ptr % u === 0 && s.ptr % u === 0) ?? 1;
  const words = rowBytes / unit;
  const idx = ptrOf(index, 'i32', `${what} index`);
  // A launch takes up to 65535 listed rows (the grid's y); more go in further launches.
  for (let r0 = 0; r0 < N; r0 += 65535) {
    const n = Math.min(65535, N - r0),
      listedPtr = listed.ptr + r0 * rowBytes;
    cb.device.launch(cb.device.kernel(DECODE, 'copy_rows'), [Math.min(Math.ceil(words / 256), 1024), n], 256, 0, [
      scatter ? o.ptr : listedPtr,
      scatter ? listedPtr : s.ptr,
      idx + 4 * r0,
      words,
      unit,
      rows,
      scatter ? 1 : 0,
      cb.errors.ptr,
    ]);
  }
}

export function argmaxRows(cb: CudaBackend, out: Tensor, x: Tensor): void {
  const o = ptrOf(out, 'i32', 'argmaxRows out');
  const N = out.size;
  if (N === 0) return;
  if (x.size % N !== 0) throw new Error(`argmaxRows: x [${x.shape.join(', ')}] is not ${N} rows`);
  if (N > 65535) throw new RangeError(`argmaxRows: at most 65535 rows at once, got ${N}`);
  const V = x.size / N;
  // Rows are split into chunks so that a few rows still fill the GPU; a second kernel picks per row.
  const chunk = 4096,
    chunks = Math.ceil(V / chunk);
  const values = cb.device.allocator.alloc(N * chunks * 4),
    indices = cb.device.allocator.alloc(N * chunks * 4);
  cb.device.launch(cb.device.kernel(DECODE, 'argmax_partial'), [chunks, N], 256, 0, [
    ...floatArg(x, 'argmaxRows x'),
    V,
    chunk,
    values.ptr,
    indices.ptr,
  ]);
  cb.device.launch(cb.device.kernel(DECODE, 'argmax_final'), [Math.ceil(N / 8)], 256, 0, [
    o,
    values.ptr,
    indices.ptr,
    chunks,
    N,
  ]);
  cb.device.allocator.release(values.ptr, values.size);
  cb.device.allocator.release(indices.ptr, indices.size);
}

export function addI32(cb: CudaBackend, x: Tensor, value: number): void {
  const p = ptrOf(x, 'i32', 'addI32 x');
  if (x.size > 0)
    cb.device.launch(cb.device.kernel(DECODE, 'add_i32'), [gridFor(cb.device, x.size)], 256, 0, [p, value | 0, x.size]);
}
