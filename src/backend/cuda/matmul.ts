/**
 * The backend's matmul on cuBLAS. Operands of different float dtypes are brought to one: the
 * output's dtype when it is 16-bit, else the 16-bit operand's (as torch autocast does), else
 * f32. In the model the converted operand is always a small LoRA factor or its [N, r] product,
 * so conversions cost little. An NF4 b is dequantized into a scratch matrix of the operand dtype
 * right before the product (the scratch block is reused through the allocator's cache).
 */
import { expectShape, type MatmulOptions, type Tensor, type TensorDType } from '../backend.js';
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
  const A = asCuda(a, 'matmul a'), B = asCuda(b, 'matmul b'), O = asCuda(out, 'matmul out');
  const batched = b.shape.length === 3;
  if (batched && (a.shape.length !== 3 || out.shape.length !== 3)) throw new Error('matmul: a 3-D b needs 3-D a and out');
  const batch = a.shape.length === 3 ? a.shape[0] : 1;
  const a2 = a.shape.slice(-2), b2 = b.shape.slice(-2);
  const [M, K] = transA ? [a2[1], a2[0]] : a2;
  const [Kb, N] = transB ? [b2[1], b2[0]] : b2;
  if (K !== Kb) throw new Error(`matmul: inner dimensions differ (a [${a.shape.join(', ')}]${transA ? 'ᵀ' : ''}, b [${b.shape.join(', ')}]${transB ? 'ᵀ' : ''})`);
  expectShape('matmul out', out, a.shape.length === 3 ? [batch, M, N] : [M, N]);
  if (batched && b.shape[0] !== batch) throw new Error('matmul: batch sizes of a and b differ');
  if (B.dtype === 'nf4' && batched) throw new Error('matmul: an nf4 b must be 2-D');
  for (const [t, what] of [[A, 'a'], [O, 'out']] as const) {
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
  const Aop = operand(A), Bop = operand(B);

  // A 3-D a without transpose times a shared 2-D b is one tall product.
  const flat = !batched && batch > 1 && !transA;
  host.gemm.gemm({
    M: flat ? batch * M : M, N, K,
    a: { ptr: Aop.ptr, dtype: op, trans: transA, stride: M * K },
    b: { ptr: Bop.ptr, dtype: op, trans: transB, stride: batched ? K * N : 0 },
    out: { ptr: O.ptr, dtype: O.dtype as GemmDType, stride: M * N },
    alpha, beta: accumulate ? 1 : 0,
    batch: flat ? 1 : batch,
  });
  for (const t of temps) host.releaseScratch(t);
}
