/**
 * The backend's matmul on cuBLAS. Operands of different float dtypes are brought to one: the
 * output's dtype when it is 16-bit, else the 16-bit operand's (as torch autocast does), else
 * f32. In the model the converted operand is always a small LoRA factor or its [N, r] product,
 * so conversions cost little. An NF4 b is dequantized into a scratch matrix of the operand dtype
 * right before the product (the scratch block is reused through the allocator's cache).
 */
import { matmulDims, type MatmulOptions, type Tensor, type TensorDType } from '../backend.js';
import type { Cublas, GemmDType } from './cublas.js';
import { asCuda, isFloat, type CudaTensor } from './cuda-tensor.js';

/** What matmul needs from the backend. */
export interface MatmulHost {
  gemm: Cublas;
  /** A scratch tensor (not zeroed) for internal use; hand it back with releaseScratch. */
  scratch(shape: readonly number[], dtype: GemmDType): CudaTensor;
  releaseScratch(t: CudaTensor): void;
  convert(dst: CudaTensor, src: CudaTensor): void;
  dequantizeNf4(dst: CudaTensor, w: CudaTensor): void;
  fill(t: Tensor, value: number): void;
}

function isHalf(d: TensorDType): d is 'bf16' | 'f16' {
  return d === 'bf16' || d === 'f16';
}

export function cudaMatmul(host: MatmulHost, out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions = {}): void {
  const { transA = false, transB = false, alpha = 1, accumulate = false } = opts;
  const A = asCuda(a, 'matmul a'),
    B = asCuda(b, 'matmul b'),
    O = asCuda(out, 'matmul out');
  const { batched, batch, M, K, N } = matmulDims(out, a, b, opts);
  for (const [t, what] of [
    [A, 'a'],
    [O, 'out'],
  ] as const) {
    if (!isFloat(t.dtype)) throw new TypeError(`matmul ${what}: expected a float tensor, got ${t.dtype}`);
  }
  if (B.dtype === 'i32') throw new TypeError('matmul b: expected a float or nf4 tensor, got i32');
  if (K === 0) {
    if (!accumulate) host.fill(out, 0);
    return;
  }

  const op: GemmDType = isHalf(O.dtype) ? O.dtype : isHalf(A.dtype) ? A.dtype : isHalf(B.dtype) ? B.dtype : 'f32';
  const temps: CudaTensor[] = [];
  const operand = (t: CudaTensor): CudaTensor => {
    if (t.dtype === op) return t;
    const s = host.scratch(t.shape, op);
    if (t.dtype === 'nf4') host.dequantizeNf4(s, t);
    else host.convert(s, t);
    temps.push(s);
    return s;
  };
  const Aop = operand(A),
    Bop = operand(B);

  // A 3-D a without transpose times a shared 2-D b is one tall product.
  const flat = !batched && batch > 1 && !transA;
  host.gemm.gemm({
    M: flat ? batch * M : M,
    N,
    K,
    a: { ptr: Aop.ptr, dtype: op, trans: transA, stride: M * K },
    b: { ptr: Bop.ptr, dtype: op, trans: transB, stride: batched ? K * N : 0 },
    out: { ptr: O.ptr, dtype: O.dtype as GemmDType, stride: M * N },
    alpha,
    beta: accumulate ? 1 : 0,
    batch: flat ? 1 : batch,
  });
  for (const t of temps) host.releaseScratch(t);
}
