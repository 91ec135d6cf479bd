/**
 * The two LoRA products that read or write a full activation matrix, with the dropout mask
 * computed inside instead of materialized (bf16 tensors, r a multiple of 8 up to 64):
 *
 *   lora_down_R      u [N, R] = dropout(x) a^T: 32-row blocks stage dropped-out tiles of x in
 *                    shared memory (the very values the dropout kernel would store) and multiply
 *                    them with a on tensor cores (mma.sync m16n8k16, f32 accumulation); blocks
 *                    also split D (grid.y) so that enough warps run to keep reads in flight,
 *                    their f32 partial sums added in order by lora_down_sum
 *   lora_up_grad_R   dx [N, D] += alpha * dropout(g a): one thread per 8 columns of 4 rows,
 *                    a's columns held in registers for the 4 rows
 *   lora_grad_a_R    gradA [R, D] += alpha * g^T dropout(x): partial products of row chunks on
 *                    tensor cores, then lora_grad_a_sum adds them in a fixed order
 *
 * The mask of element i = n * D + d is backend.ts's dropoutUniform(seed, i) >= p, as in the
 * elementwise dropout kernels, decided in integers (see loraDropoutArgs); kept values are scaled
 * in f32 (the elementwise kernel scales in doubles: a bf16 result differs at most on rare ties).
 * drop = 0 applies no dropout.
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';
import { TENSOR_CORE_CUDA } from './tensor-core.js';

/** Ranks with compiled lora_down, lora_up_grad and lora_grad_a variants. */
export const LORA_RANKS = [8, 16, 32, 64] as const;

/** r rounded up to whole 16-row tiles (the kernels pad a and g with zeros to it). */
const padded = (r: number): number => Math.ceil(r / 16) * 16;

/** Rows and columns (one tile) per lora_down step and the shared memory it needs for rank r (a's tiles double-buffered). */
export const LORA_DOWN = { rows: 32, cols: 128, threads: 64, sharedBytes: (r: number) => (32 + 2 * padded(r)) * (128 + 8) * 2 } as const;

/**
 * How lora_down splits D for N rows: 32-row blocks alone leave an H100 mostly idle (N = 8192
 * gives 256 blocks of 2 warps), so each block takes `perSplit` columns (whole tiles) of its rows,
 * aiming at `blocksPerSm` blocks per SM in all.
 */
export function loraDownSplit(N: number, D: number, smCount: number, blocksPerSm = 8): { splits: number; perSplit: number } {
  const tiles = Math.ceil(D / LORA_DOWN.cols), rowBlocks = Math.max(1, Math.ceil(N / LORA_DOWN.rows));
  const want = Math.min(tiles, Math.max(1, Math.ceil((smCount * blocksPerSm) / rowBlocks)));
  const tilesPer = Math.ceil(tiles / want);
  return { splits: Math.ceil(tiles / tilesPer), perSplit: tilesPer * LORA_DOWN.cols };
}

/** Threads per lora_up_grad block. */
export const LORA_UP_GRAD_THREADS = 128;

/** The kernels' dropout arguments: keep element i when its hash is >= keepFrom = ceil(p 2^32), scale kept values by 1 / (1 - p). */
export function loraDropoutArgs(p: number, seed: number): { keepFrom: number; keepScale: number; seedMix: number; drop: number } {
  return { keepFrom: p > 0 ? Math.ceil(p * 4294967296) : 0, keepScale: p > 0 ? 1 / (1 - p) : 1, seedMix: fmix32(seed >>> 0), drop: p > 0 ? 1 : 0 };
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** lora_grad_a: 128-column tiles by chunks of 256 rows, and its shared memory for rank r. */
export const LORA_GRAD_A = { cols: 128, rows: 256, threads: 128, sharedBytes: (r: number) => 32 * (128 + 8) * 2 + 32 * (padded(r) + 8) * 2 } as const;

const SOURCE = String.raw`
__device__ __forceinline__ unsigned lora_fmix32(unsigned h) {
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}
/**
 * Whether element i is kept: dropoutUniform(seed, i) = hash / 2^32 >= p, decided in integers as
 * hash >= keepFrom = ceil(p 2^32) (the host's arithmetic, exact).
 */
__device__ __forceinline__ bool lora_keep(i64 i, unsigned seedMix, i64 keepFrom) {
  return (i64)lora_fmix32((unsigned)i * 0x9e3779b1u + seedMix) >= keepFrom;
}

/** 8 bf16 of x (elements i0..i0+7 of the tensor) with the dropout mask applied, as bf16. */
__device__ __forceinline__ uint4 lora_drop8(uint4 w4, i64 i0, unsigned seedMix, i64 keepFrom, float keepScale) {
  float v[8];
  unpack8(w4, v);
  #pragma unroll
  for (int k = 0; k < 8; k++) v[k] = lora_keep(i0 + k, seedMix, keepFrom) ? v[k] * keepScale : 0.f;
  return pack8(v);
}

/**
 * Requires D % 8 == 0 and 16-byte aligned rows. 64 threads stage a 32 x 128 tile of x: the
 * next tile's x (into registers) and a (cp.async, double-buffered) load while the tensor cores
 * work on the current one; x is masked on its way to shared memory. Block (i, s) covers
 * columns [s perSplit, (s + 1) perSplit) (perSplit a multiple of 128); with part, it writes its
 * f32 sums to part[s][N][R] instead of u.
 */
template <int R>
__device__ __forceinline__ void lora_down(u16* u, float* part, const u16* x, const u16* a, int N, int D, int perSplit, i64 keepFrom, float keepScale,
                                          unsigned seedMix, int drop) {
  // NT: 8-column tiles of u, rounded up to pairs (a's rows past R are zeros).
  constexpr int KT = 128, LD = KT + 8, NT = (R + 15) / 16 * 2, PER = 32 * (KT / 8) / 64;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sx = (u16*)smem_raw;     // [32][LD]
  u16* sa = sx + 32 * LD;       // [2][NT * 8][LD]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * 32;
  float acc[NT][4];
  #pragma unroll
  for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  uint4 v[PER];
  auto fetch = [&](int d0) {
    #pragma unroll
    for (int it = 0; it < PER; it++) {
      const int e = threadIdx.x + it * 64, r = e / (KT / 8), c = (e - r * (KT / 8)) * 8, n = n0 + r, d = d0 + c;
      v[it] = n < N && d < D ? *(const uint4*)(x + (i64)n * D + d) : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  auto fetchA = [&](int d0, int buf) {
    for (int e = threadIdx.x; e < NT * 8 * (KT / 8); e += 64) {
      const int r = e / (KT / 8), c = (e - r * (KT / 8)) * 8, d = d0 + c;
      const bool ok = r < R && d < D;
      cp_async16(sa + (buf * NT * 8 + r) * LD + c, a + (ok ? (i64)r * D + d : 0), ok ? 16 : 0);
    }
    cp_commit();
  };
  const int dBeg = blockIdx.y * perSplit, dEnd = min(D, dBeg + perSplit);
  fetch(dBeg);
  fetchA(dBeg, 0);
  for (int d0 = dBeg, it = 0; d0 < dEnd; d0 += KT, it++) {
    #pragma unroll
    for (int k = 0; k < PER; k++) {
      const int e = threadIdx.x + k * 64, r = e / (KT / 8), c = (e - r * (KT / 8)) * 8;
      *(uint4*)(sx + r * LD + c) = drop ? lora_drop8(v[k], (i64)(n0 + r) * D + d0 + c, seedMix, keepFrom, keepScale) : v[k];
    }
    cp_wait<0>();
    __syncthreads();
    if (d0 + KT < dEnd) {
      fetch(d0 + KT);
      fetchA(d0 + KT, (it + 1) & 1);
    }
    const u16* tA = sa + (it & 1) * NT * 8 * LD;
    #pragma unroll
    for (int kc = 0; kc < KT / 16; kc++) {
      unsigned fa[4];
      frag_a(fa, sx, LD, warp * 16, kc * 16, lane);
      #pragma unroll
      for (int j = 0; j < NT; j += 2) {
        unsigned fb[4];
        frag_b_nk(fb, tA, LD, j * 8, kc * 16, lane);
        mma_bf16(acc[j], fa, fb[0], fb[1]);
        mma_bf16(acc[j + 1], fa, fb[2], fb[3]);
      }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    const int n = n0 + warp * 16 + g + 8 * i;
    if (n >= N) continue;
    #pragma unroll
    for (int j = 0; j < R / 8; j++) {
      if (part) *(float2*)(part + ((i64)blockIdx.y * N + n) * R + j * 8 + 2 * t) = make_float2(acc[j][2 * i], acc[j][2 * i + 1]);
      else *(unsigned*)(u + (i64)n * R + j * 8 + 2 * t) = pack_bf16(acc[j][2 * i], acc[j][2 * i + 1]);
    }
  }
}

/** u[i] = bf16 of the sum over the splits, in order, of part[s][i] (lora_down's split columns). */
extern "C" __global__ void lora_down_sum(u16* u, const float* part, int splits, i64 n) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int c = 0; c < splits; c++) s += part[(i64)c * n + i];
    u[i] = f32_to_bf16(s);
  }
}

/** An A operand (16 x 16 at m0, k0) from a shared tile stored [k][m], through transposed loads. */
__device__ __forceinline__ void frag_a_km(unsigned (&a)[4], const u16* sm, int ld, int m0, int k0, int lane) {
  ldsm4t(a, sm + (k0 + (lane >> 4) * 8 + (lane & 7)) * ld + m0 + ((lane >> 3) & 1) * 8);
}

/**
 * gradA's partial sums g^T dropout(x) over one chunk of 256 rows and one tile of 128 columns:
 * 32-row steps stage x (masked as lora_down masks it) and g (R columns, zeros up to a whole
 * 16) in shared memory, the next step's rows loading into registers meanwhile; warp w
 * multiplies columns 32w..32w+31 on tensor cores. part[chunk][R][D] is summed over the chunks
 * in order by lora_grad_a_sum. Requires D % 8 == 0 and aligned rows.
 */
template <int R>
__device__ __forceinline__ void lora_grad_a(float* part, const u16* g, const u16* x, int N, int D, i64 keepFrom, float keepScale, unsigned seedMix, int drop) {
  constexpr int CT = 128, LDX = CT + 8, R16 = (R + 15) / 16 * 16, LDG = R16 + 8, MT = R16 / 16, GC = 32 * (R16 / 8);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sx = (u16*)smem_raw;     // [32][LDX]: rows of x
  u16* sg = sx + 32 * LDX;      // [32][LDG]: rows of g
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, t = lane & 3;
  const int c0 = blockIdx.x * CT, chunk = blockIdx.y, rEnd = min(N, (chunk + 1) * 256);
  float acc[MT][4][4];
  #pragma unroll
  for (int m = 0; m < MT; m++)
    #pragma unroll
    for (int j = 0; j < 4; j++) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.f;
  uint4 v[4], gv[(GC + 127) / 128];
  auto fetch = [&](int r0) {
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int e = threadIdx.x + it * 128, r = e >> 4, c = (e & 15) * 8, n = r0 + r, d = c0 + c;
      v[it] = n < rEnd && d < D ? *(const uint4*)(x + (i64)n * D + d) : make_uint4(0u, 0u, 0u, 0u);
    }
    #pragma unroll
    for (int it = 0; it < (GC + 127) / 128; it++) {
      const int e = threadIdx.x + it * 128, r = e / (R16 / 8), c = (e - r * (R16 / 8)) * 8, n = r0 + r;
      gv[it] = e < GC && n < rEnd && c < R ? *(const uint4*)(g + (i64)n * R + c) : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  fetch(chunk * 256);
  for (int r0 = chunk * 256; r0 < rEnd; r0 += 32) {
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int e = threadIdx.x + it * 128, r = e >> 4, c = (e & 15) * 8;
      *(uint4*)(sx + r * LDX + c) = drop ? lora_drop8(v[it], (i64)(r0 + r) * D + c0 + c, seedMix, keepFrom, keepScale) : v[it];
    }
    #pragma unroll
    for (int it = 0; it < (GC + 127) / 128; it++) {
      const int e = threadIdx.x + it * 128, r = e / (R16 / 8), c = (e - r * (R16 / 8)) * 8;
      if (e < GC) *(uint4*)(sg + r * LDG + c) = gv[it];
    }
    __syncthreads();
    if (r0 + 32 < rEnd) fetch(r0 + 32);
    #pragma unroll
    for (int kc = 0; kc < 2; kc++) {
      unsigned bx[2][4];
      frag_b_kn(bx[0], sx, LDX, warp * 32, kc * 16, lane);
      frag_b_kn(bx[1], sx, LDX, warp * 32 + 16, kc * 16, lane);
      #pragma unroll
      for (int m = 0; m < MT; m++) {
        unsigned ag[4];
        frag_a_km(ag, sg, LDG, m * 16, kc * 16, lane);
        mma_bf16(acc[m][0], ag, bx[0][0], bx[0][1]);
        mma_bf16(acc[m][1], ag, bx[0][2], bx[0][3]);
        mma_bf16(acc[m][2], ag, bx[1][0], bx[1][1]);
        mma_bf16(acc[m][3], ag, bx[1][2], bx[1][3]);
      }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int m = 0; m < MT; m++) {
    #pragma unroll
    for (int i = 0; i < 2; i++) {
      const int row = m * 16 + gq + 8 * i;
      if (row >= R) continue;
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        const int d = c0 + warp * 32 + j * 8 + 2 * t;
        if (d < D) {
          float* dst = part + ((i64)chunk * R + row) * D + d;
          dst[0] = acc[m][j][2 * i];
          dst[1] = acc[m][j][2 * i + 1];
        }
      }
    }
  }
}

/** gradA[i] += alpha * (sum over the chunks, in order, of part[c][i]). */
extern "C" __global__ void lora_grad_a_sum(float* gradA, const float* part, int chunks, i64 n, double alpha) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int c = 0; c < chunks; c++) s += part[(i64)c * n + i];
    gradA[i] = (float)((double)gradA[i] + alpha * (double)s);
  }
}

/**
 * One thread per 8 consecutive columns of 4 rows: a's 8 columns (all R rows of a) are read once
 * into registers and serve the 4 rows, whose g rows and dx chunks load together before any of
 * them is computed. Requires D % 8 == 0 and 16-byte aligned rows.
 */
template <int R>
__device__ __forceinline__ void lora_up_grad(u16* dx, const u16* g, const u16* a, int N, int D, float alpha, i64 keepFrom, float keepScale,
                                             unsigned seedMix, int drop) {
  const int C8 = D / 8;
  const i64 chunks = (i64)((N + 3) / 4) * C8;
  for (i64 cidx = (i64)blockIdx.x * blockDim.x + threadIdx.x; cidx < chunks; cidx += (i64)gridDim.x * blockDim.x) {
    const int n0 = (int)(cidx / C8) * 4, d = (int)(cidx % C8) * 8;
    uint4 av[R], gv[4][R / 8], dv[4];
    #pragma unroll
    for (int j = 0; j < R; j++) av[j] = *(const uint4*)(a + (i64)j * D + d);
    #pragma unroll
    for (int q = 0; q < 4; q++) {
      const bool ok = n0 + q < N;
      dv[q] = ok ? *(const uint4*)(dx + (i64)(n0 + q) * D + d) : make_uint4(0u, 0u, 0u, 0u);
      #pragma unroll
      for (int c = 0; c < R / 8; c++) gv[q][c] = ok ? *(const uint4*)(g + (i64)(n0 + q) * R + c * 8) : make_uint4(0u, 0u, 0u, 0u);
    }
    #pragma unroll
    for (int q = 0; q < 4; q++) {
      if (n0 + q >= N) break;
      float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      #pragma unroll
      for (int c = 0; c < R / 8; c++) {
        float gj[8];
        unpack8(gv[q][c], gj);
        #pragma unroll
        for (int jj = 0; jj < 8; jj++) {
          float aj[8];
          unpack8(av[c * 8 + jj], aj);
          #pragma unroll
          for (int k = 0; k < 8; k++) s[k] += gj[jj] * aj[k];
        }
      }
      float o[8];
      unpack8(dv[q], o);
      const i64 i0 = (i64)(n0 + q) * D + d;
      #pragma unroll
      for (int k = 0; k < 8; k++) o[k] += alpha * (drop ? (lora_keep(i0 + k, seedMix, keepFrom) ? s[k] * keepScale : 0.f) : s[k]);
      *(uint4*)(dx + i0) = pack8(o);
    }
  }
}
`;

function variant(r: number): string {
  return String.raw`
extern "C" __global__ void __launch_bounds__(64) lora_down_${r}(u16* u, float* part, const u16* x, const u16* a, int N, int D, int perSplit,
                                                               i64 keepFrom, float keepScale, unsigned seedMix, int drop) {
  lora_down<${r}>(u, part, x, a, N, D, perSplit, keepFrom, keepScale, seedMix, drop);
}
extern "C" __global__ void __launch_bounds__(128) lora_up_grad_${r}(u16* dx, const u16* g, const u16* a, int N, int D, float alpha, i64 keepFrom,
                                                                   float keepScale, unsigned seedMix, int drop) {
  lora_up_grad<${r}>(dx, g, a, N, D, alpha, keepFrom, keepScale, seedMix, drop);
}
extern "C" __global__ void __launch_bounds__(128) lora_grad_a_${r}(float* part, const u16* g, const u16* x, int N, int D, i64 keepFrom, float keepScale,
                                                                  unsigned seedMix, int drop) {
  lora_grad_a<${r}>(part, g, x, N, D, keepFrom, keepScale, seedMix, drop);
}
`;
}

export const LORA: KernelModule = kernelModule('lora', COMMON_CUDA + TENSOR_CORE_CUDA + SOURCE + LORA_RANKS.map(variant).join(''));
