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

/** Four 8x8 bf16 matrices at shared address a (lanes 8m..8m+7 give the row addresses of matrix m, register m receives it). */
__device__ __forceinline__ void ldsm4(unsigned (&r)[4], unsigned a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
/** The same, each matrix transposed. */
__device__ __forceinline__ void ldsm4t(unsigned (&r)[4], unsigned a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

/** 16 bytes global -> shared address dst, asynchronously; bytes = 0 writes zeros instead (src is not read). */
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(bytes));
}
/** The same to a shared pointer. */
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) { cp_async16(smem_u32(dst), src, bytes); }
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

/*
 * Fragment loads take 32-bit shared addresses: offsets added to a generic 64-bit pointer cost a
 * 64-bit add (and register moves) per load, which made integer arithmetic the bulk of the flash
 * kernels' instructions (ncu, H200). A lane's part of an address depends only on the lane and
 * the tile's row length, so hot loops compute it once (ldsm_lane_*) and add tile positions as
 * constants, which fold into the ldmatrix instructions' immediate offsets.
 */
/**
 * The lane's byte offset for four 8 x 8 matrices ordered (rows 0-7, columns 0-7), (rows 8-15,
 * columns 0-7), (rows 0-7, columns 8-15), (rows 8-15, columns 8-15) of a tile with rows of ld
 * elements: an A operand (frag_a) or, transposed, two B operands stored [k][n] (frag_b_kn).
 */
__device__ __forceinline__ unsigned ldsm_lane_rows(int ld, int lane) {
  return 2u * (unsigned)(((lane & 7) + ((lane >> 3) & 1) * 8) * ld + (lane >> 4) * 8);
}
/**
 * The same for the order (rows 0-7, columns 0-7), (rows 0-7, columns 8-15), (rows 8-15, columns
 * 0-7), (rows 8-15, columns 8-15): two B operands stored [n][k] (frag_b_nk) or, transposed, an A
 * operand stored [k][m] (frag_a_km).
 */
__device__ __forceinline__ unsigned ldsm_lane_cols(int ld, int lane) {
  return 2u * (unsigned)(((lane >> 4) * 8 + (lane & 7)) * ld + ((lane >> 3) & 1) * 8);
}
/** Byte offset of element (row, col) in a tile with rows of ld elements. */
__device__ __forceinline__ constexpr unsigned tile_at(int ld, int row, int col) { return 2u * (unsigned)(row * ld + col); }

/** A 16 x 16 A operand at (row0, k0) of a row-major shared tile with rows of ld elements. */
__device__ __forceinline__ void frag_a(unsigned (&a)[4], const u16* sm, int ld, int row0, int k0, int lane) {
  ldsm4(a, smem_u32(sm) + ldsm_lane_rows(ld, lane) + tile_at(ld, row0, k0));
}
/** An A operand (16 x 16 at m0, k0) from a shared tile stored [k][m], through transposed loads. */
__device__ __forceinline__ void frag_a_km(unsigned (&a)[4], const u16* sm, int ld, int m0, int k0, int lane) {
  ldsm4t(a, smem_u32(sm) + ldsm_lane_cols(ld, lane) + tile_at(ld, k0, m0));
}
/**
 * B operands of two adjacent 8-column tiles (columns n0..n0+15) at k0, from a tile stored
 * [n][k] (row n holds column n of B): b[0], b[1] for columns n0.., b[2], b[3] for n0 + 8..
 */
__device__ __forceinline__ void frag_b_nk(unsigned (&b)[4], const u16* sm, int ld, int n0, int k0, int lane) {
  ldsm4(b, smem_u32(sm) + ldsm_lane_cols(ld, lane) + tile_at(ld, n0, k0));
}
/** The same from a tile stored [k][n] (row k holds row k of B), through transposed loads. */
__device__ __forceinline__ void frag_b_kn(unsigned (&b)[4], const u16* sm, int ld, int n0, int k0, int lane) {
  ldsm4t(b, smem_u32(sm) + ldsm_lane_rows(ld, lane) + tile_at(ld, k0, n0));
}
`;
