/**
 * NF4 dequantization on the CUDA backend, for the products that need a dense weight: a kernel
 * of 16 elements per thread into bf16 where block size and alignment allow (three weights per
 * launch in dequantizeNf4Many), else the generic one into any float dtype.
 */
import type { CudaBackend } from './cuda-backend.js';
import { floatArg, type CudaTensor } from './cuda-tensor.js';
import { elementwise } from './launch.js';

/** The block shift of the 16-element bf16 dequantization kernels for dst = w, or -1 where they do not apply. */
function nf4Shift16(dst: CudaTensor, w: CudaTensor): number {
  const parts = w.nf4;
  if (!parts) throw new TypeError('dequantizeNf4: not an nf4 tensor');
  const shift = Number.isInteger(Math.log2(parts.blockSize)) ? Math.log2(parts.blockSize) : -1;
  return dst.dtype === 'bf16' && shift >= 4 && w.size % 16 === 0 && dst.ptr % 16 === 0 && w.ptr % 8 === 0 ? shift : -1;
}

/**
 * dsts[i] = the dequantized NF4 weight ws[i] (see dequantizeNf4), three weights a launch where
 * the 16-element kernel applies to all of them with one block size.
 */
export function dequantizeNf4Many(cb: CudaBackend, dsts: readonly CudaTensor[], ws: readonly CudaTensor[]): void {
  const shifts = ws.map((w, i) => nf4Shift16(dsts[i], w));
  if (ws.length < 2 || shifts.some((sh) => sh < 0 || sh !== shifts[0])) {
    ws.forEach((w, i) => cb.dequantizeNf4(dsts[i], w));
    return;
  }
  for (let i = 0; i < ws.length; i += 3) {
    const part = ws.slice(i, i + 3).map((w, j) => {
      const parts = w.nf4 as NonNullable<CudaTensor['nf4']>;
      return [dsts[i + j].ptr, w.ptr, parts.absmax, parts.code, w.size / 16];
    });
    const total = part.reduce((n, args) => n + args[4], 0);
    while (part.length < 3) part.push([0, 0, 0, 0, 0]);
    elementwise(cb.device, 'nf4_dequant_bf16x16_3', total, [...part.flat(), shifts[0]]);
  }
}

/** dst (float, w's size) = the dequantized NF4 weight w. */
export function dequantizeNf4(cb: CudaBackend, dst: CudaTensor, w: CudaTensor): void {
  const parts = w.nf4;
  if (!parts) throw new TypeError('dequantizeNf4: not an nf4 tensor');
  const shift = nf4Shift16(dst, w);
  if (shift >= 0) {
    elementwise(cb.device, 'nf4_dequant_bf16x16', w.size / 16, [
      dst.ptr,
      w.ptr,
      parts.absmax,
      parts.code,
      w.size / 16,
      shift,
    ]);
    return;
  }
  elementwise(cb.device, 'nf4_dequant', Math.ceil(w.size / 8), [
    ...floatArg(dst, 'dequantize dst'),
    w.ptr,
    parts.absmax,
    parts.code,
    w.size,
    parts.blockSize,
    shift,
  ]);
}
