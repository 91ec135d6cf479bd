/**
 * Row-major matrix products through cuBLAS (column-major): out[M,N] = op(a) op(b) is computed as
 * out^T = op(b)^T op(a)^T, which is the same memory read column-major, so no operand is ever
 * transposed in memory. f32 accumulation (CUBLAS_COMPUTE_32F) for every dtype; bf16 and f16
 * operands run on tensor cores.
 */
import { checkCublas, cublasApi, type CublasApi } from './ffi.js';

/** cudaDataType values. */
export const CUDA_DATA_TYPE = { f32: 0, f16: 2, bf16: 14 } as const;
export type GemmDType = keyof typeof CUDA_DATA_TYPE;

const CUBLAS_OP_N = 0;
const CUBLAS_OP_T = 1;
const CUBLAS_COMPUTE_32F = 68;
const CUBLAS_GEMM_DEFAULT = -1;

export interface GemmOperand {
  ptr: number;
  dtype: GemmDType;
  /** Stored transposed (a: [K, M], b: [N, K]). */
  trans: boolean;
  /** Elements between consecutive batch matrices (0 = the same matrix for every batch). */
  stride: number;
}

export interface Gemm {
  M: number;
  N: number;
  K: number;
  a: GemmOperand;
  b: GemmOperand;
  out: { ptr: number; dtype: GemmDType; stride: number };
  alpha: number;
  beta: number;
  batch: number;
}

/**
 * A batch of row-major products with explicit row strides (lda, ldb, ldc in elements), each
 * matrix located by a device array of addresses (aArray, bArray, cArray: `batch` uint64 each).
 */
export interface GemmArrays {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  dtype: GemmDType;
  outDtype: GemmDType;
  aArray: number;
  lda: number;
  bArray: number;
  ldb: number;
  cArray: number;
  ldc: number;
  alpha: number;
  beta: number;
  batch: number;
}

export class Cublas {
  private readonly api: CublasApi;
  private readonly handle: unknown;
  private readonly alpha = new Float32Array(1);
  private readonly beta = new Float32Array(1);

  constructor(stream: unknown) {
    this.api = cublasApi();
    const h: unknown[] = [null];
    checkCublas(this.api.cublasCreate(h), 'cublasCreate');
    this.handle = h[0];
    checkCublas(this.api.cublasSetStream(this.handle, stream), 'cublasSetStream');
  }

  gemm(g: Gemm): void {
    const { M, N, K, a, b, out } = g;
    if (M === 0 || N === 0) return;
    this.alpha[0] = g.alpha;
    this.beta[0] = g.beta;
    const opB = b.trans ? CUBLAS_OP_T : CUBLAS_OP_N,
      ldb = b.trans ? K : N;
    const opA = a.trans ? CUBLAS_OP_T : CUBLAS_OP_N,
      lda = a.trans ? M : K;
    const bt = CUDA_DATA_TYPE[b.dtype],
      at = CUDA_DATA_TYPE[a.dtype],
      ct = CUDA_DATA_TYPE[out.dtype];
    const rc =
      g.batch === 1
        ? this.api.cublasGemmEx(
            this.handle,
            opB,
            opA,
            N,
            M,
            K,
            this.alpha,
            b.ptr,
            bt,
            ldb,
            a.ptr,
            at,
            lda,
            this.beta,
            out.ptr,
            ct,
            N,
            CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT,
          )
        : this.api.cublasGemmStridedBatchedEx(
            this.handle,
            opB,
            opA,
            N,
            M,
            K,
            this.alpha,
            b.ptr,
            bt,
            ldb,
            b.stride,
            a.ptr,
            at,
            lda,
            a.stride,
            this.beta,
            out.ptr,
            ct,
            N,
            out.stride,
            g.batch,
            CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT,
          );
    checkCublas(rc, `gemm ${M}x${N}x${K} (${a.dtype} x ${b.dtype} -> ${out.dtype})`);
  }

  gemmArrays(g: GemmArrays): void {
    if (g.M === 0 || g.N === 0 || g.batch === 0) return;
    this.alpha[0] = g.alpha;
    this.beta[0] = g.beta;
    const t = CUDA_DATA_TYPE[g.dtype];
    const rc = this.api.cublasGemmBatchedEx(
      this.handle,
      g.transB ? CUBLAS_OP_T : CUBLAS_OP_N,
      g.transA ? CUBLAS_OP_T : CUBLAS_OP_N,
      g.N,
      g.M,
      g.K,
      this.alpha,
      g.bArray,
      t,
      g.ldb,
      g.aArray,
      t,
      g.lda,
      this.beta,
      g.cArray,
      CUDA_DATA_TYPE[g.outDtype],
      g.ldc,
      g.batch,
      CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT,
    );
    checkCublas(rc, `batched gemm ${g.batch} x ${g.M}x${g.N}x${g.K} (${g.dtype} -> ${g.outDtype})`);
  }
}
