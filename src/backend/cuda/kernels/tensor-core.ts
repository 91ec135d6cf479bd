/**
 * CUDA C helpers of the tensor-core kernels (flash-attention.ts, lora.ts), in inline PTX so
 * NVRTC needs no headers: bf16 mma.sync m16n8k16 with f32 accumulation, ldmatrix fragment
 * loads from shared memory, and cp.async copies from global to shared memory.
 *
 * Fragments (lane = 4 g + t): an A operand (16 x 16, row-major) holds rows g and g + 8 at
 * columns 2t, 2t + 1 and 2t + 8, 2t + 9; a B operand (16 x 8) holds k = 2t, 2t + 1 and
 * 2t + 8, 2t + 9 of column g; an accumulator (16 x 8) rows g and g + 8 at columns 2t, 2t + 1.
 */
export const TENSOR_CORE_CUDA = String.raw`
#ifndef SQLORA_EMULATOR  // tools/cuda-emulator/device-runtime.h has these for the CPU
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  unsigned r;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
  return r;
}

/** Four 8x8 bf16 matrices; lanes 8m..8m+7 give the row addresses of matrix m, register m receives it. */
__device__ __forceinline__ void ldsm4(unsigned (&r)[4], const u16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
/** The same, each matrix transposed. */
__device__ __forceinline__ void ldsm4t(unsigned (&r)[4], const u16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

/** 16 bytes global -> shared, asynchronously; bytes = 0 writes zeros instead (src is not read). */
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(smem_u32(dst)), "l"(src), "r"(bytes));
}
/** 4 bytes global -> shared, asynchronously; bytes = 0 writes zeros instead (src is not read). */
__device__ __forceinline__ void cp_async4(void* dst, const void* src, int bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" :: "r"(smem_u32(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/** Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }
#endif

/** Zeroes accumulator tiles: a float [4] fragment, or an array (of any depth) of them. */
__device__ __forceinline__ void zero_acc(float (&a)[4]) { a[0] = a[1] = a[2] = a[3] = 0.f; }
template <typename T, int N>
__device__ __forceinline__ void zero_acc(T (&a)[N]) {
  #pragma unroll
  for (int i = 0; i < N; i++) zero_acc(a[i]);
}

/**
 * A 16 x 16 A operand at (row0, k0) of a row-major shared tile with rows of ld elements:
 * matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
 */
__device__ __forceinline__ void frag_a(unsigned (&a)[4], const u16* sm, int ld, int row0, int k0, int lane) {
  ldsm4(a, sm + (row0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + k0 + (lane >> 4) * 8);
}
/** An A operand (16 x 16 at m0, k0) from a shared tile stored [k][m], through transposed loads. */
__device__ __forceinline__ void frag_a_km(unsigned (&a)[4], const u16* sm, int ld, int m0, int k0, int lane) {
  ldsm4t(a, sm + (k0 + (lane >> 4) * 8 + (lane & 7)) * ld + m0 + ((lane >> 3) & 1) * 8);
}

/**
 * B operands of two adjacent 8-column tiles (columns n0..n0+15) at k0, from a tile stored
 * [n][k] (row n holds column n of B): b[0], b[1] for columns n0.., b[2], b[3] for n0 + 8..
 */
__device__ __forceinline__ void frag_b_nk(unsigned (&b)[4], const u16* sm, int ld, int n0, int k0, int lane) {
  ldsm4(b, sm + (n0 + (lane >> 4) * 8 + (lane & 7)) * ld + k0 + ((lane >> 3) & 1) * 8);
}
/** The same from a tile stored [k][n] (row k holds row k of B), through transposed loads. */
__device__ __forceinline__ void frag_b_kn(unsigned (&b)[4], const u16* sm, int ld, int n0, int k0, int lane) {
  ldsm4t(b, sm + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * ld + n0 + (lane >> 4) * 8);
}
`;
