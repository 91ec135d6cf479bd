/**
 * Device helpers the flash-attention kernels share (CUDA C, after common.ts and tensor-core.ts):
 * the cp.async tile loader, the key-mask copies and votes, accumulator-to-operand repacking, the
 * [k][n] product, and RoPE's backward applied to accumulator rows before they are stored.
 */

export const FLASH_HELPERS_CUDA = String.raw`
/**
 * A thread's part of copying tiles of ROWS rows of a [*, stride]-strided bf16 matrix into shared
 * rows of HD + 8 elements by cp.async (16 bytes a piece, 128 threads; a warp's pieces of one
 * step cover whole rows). Its pieces lie RS rows apart in one column: the offsets are set up
 * once per stride, and a tile then costs a 64-bit add per piece (no tests when all its rows
 * are in range).
 */
template <int HD, int ROWS>
struct TileLoader {
  static constexpr int C8 = HD / 8, LD = HD + 8, RS = 128 / C8, PER = ROWS / RS;
  static_assert(128 % C8 == 0 && ROWS % RS == 0, "whole rows per step");
  // Elements, in 32 bits (a tile spans ROWS * stride < 2^31 of them): this thread's first piece
  // from the tile's first row, and from one piece to the next.
  int first, step;
  unsigned dst;  // bytes: this thread's first piece within the shared tile
  int row;       // its first piece's row
  __device__ __forceinline__ explicit TileLoader(i64 stride) {
    row = threadIdx.x / C8;
    const int c = (threadIdx.x - row * C8) * 8;
    first = row * (int)stride + c;
    step = RS * (int)stride;
    dst = tile_at(LD, row, c);
  }
  /** Starts copying the tile whose first row is at src to shared address sm; rows at or past valid (of the tile) become zeros. */
  __device__ __forceinline__ void load(unsigned sm, const u16* src, int valid) const {
    const u16* p = src + first;
    if (valid >= ROWS) {
      #pragma unroll
      for (int it = 0; it < PER; it++, p += step) cp_async16(sm + dst + tile_at(LD, it * RS, 0), p, 16);
    } else {
      #pragma unroll
      for (int it = 0; it < PER; it++, p += step) {
        const bool ok = it * RS + row < valid;  // a row past the end reads nothing: src stands in as the address
        cp_async16(sm + dst + tile_at(LD, it * RS, 0), ok ? p : src, ok ? 16 : 0);
      }
    }
  }
};

/**
 * Starts copying mask[b, s0 + i] for i < n (0 past kvLen) into shared memory by cp.async, with
 * the tile it belongs to (a plain load would hold the thread for a global round trip first).
 * Thread i copies entry i (and i + blockDim.x, ...), which mask_vote reads back.
 */
__device__ __forceinline__ void load_mask(int* sm, const int* mask, int b, int S, int s0, int n, int kvLen) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const bool ok = s0 + i < kvLen;
    cp_async4(sm + i, mask + (ok ? (i64)b * S + s0 + i : 0), ok ? 4 : 0);
  }
}

/** Once this thread's copies by load_mask have landed: true when its entries of the tile are all on. */
__device__ __forceinline__ bool mask_vote(const int* sm, int n) {
  bool on = true;
  for (int i = threadIdx.x; i < n; i += blockDim.x) on = on && sm[i] != 0;
  return on;
}

/** The A operand (16 x 16) of two adjacent accumulator tiles (16 x 8 each), rounded to bf16. */
__device__ __forceinline__ void acc_to_a(unsigned (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);
  a[1] = pack_bf16(lo[2], lo[3]);
  a[2] = pack_bf16(hi[0], hi[1]);
  a[3] = pack_bf16(hi[2], hi[3]);
}

/**
 * acc (16 rows x 8 NT columns) += a (16 x 16) times 16 rows of a shared tile stored [k][n]:
 * addr = the first row's shared address plus the lane's ldsm_lane_rows.
 */
template <int NT>
__device__ __forceinline__ void mma_a_kn(float (&acc)[NT][4], const unsigned (&a)[4], unsigned addr) {
  #pragma unroll
  for (int j = 0; j < NT; j += 2) {
    unsigned b[4];
    ldsm4t(b, addr + 16u * j);
    mma_bf16(acc[j], a, b[0], b[1]);
    mma_bf16(acc[j + 1], a, b[2], b[3]);
  }
}

/** The (cosine, sine) of a position past rope_table's (a call apart from the hot code). */
__device__ __noinline__ float2 rope_cos_sin_far(int pos, float invFreq) { return rope_cos_sin(pos, invFreq); }

/**
 * RoPE's backward (rotation by -angle, as ropeBackward) of a lane's accumulator row i (acc[.][2i
 * + u]) of position pos before it is stored, for Backend.attentionBackward's rope option: its
 * columns 8j + 2t + u (j < NT / 2) pair with the same + HD / 2. cs: rope_table's (cosine, sine)
 * for positions [0, P); a position past them computes its own.
 */
template <int NT>
__device__ __forceinline__ void rope_back(float (&acc)[NT][4], int i, int pos, const float2* cs, int P, const float* invFreq, int t) {
  constexpr int HALF = NT * 4;
  float2 r[NT / 2][2];
  if ((unsigned)pos < (unsigned)P) {
    #pragma unroll
    for (int j = 0; j < NT / 2; j++)
      #pragma unroll
      for (int u = 0; u < 2; u++) r[j][u] = cs[(i64)pos * HALF + j * 8 + 2 * t + u];
  } else {
    #pragma unroll
    for (int j = 0; j < NT / 2; j++)
      #pragma unroll
      for (int u = 0; u < 2; u++) r[j][u] = rope_cos_sin_far(pos, invFreq[j * 8 + 2 * t + u]);
  }
  #pragma unroll
  for (int j = 0; j < NT / 2; j++)
    #pragma unroll
    for (int u = 0; u < 2; u++) {
      const float x1 = acc[j][2 * i + u], x2 = acc[j + NT / 2][2 * i + u];
      acc[j][2 * i + u] = x1 * r[j][u].x + x2 * r[j][u].y;
      acc[j + NT / 2][2 * i + u] = x2 * r[j][u].x - x1 * r[j][u].y;
    }
}
`;
