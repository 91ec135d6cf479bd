/**
 * The two LoRA products that read or write a full activation matrix, with the dropout mask
 * computed inside instead of materialized (bf16 tensors, r a multiple of 8 up to 64):
 *
 *   lora_down_R      u [N, R] = dropout(x) a^T: 32-row blocks stage dropped-out tiles of x in
 *                    shared memory (the very values the dropout kernel would store) and multiply
 *                    them with a on tensor cores (mma.sync m16n8k16, f32 accumulation)
 *   lora_up_grad_R   dx [N, D] += alpha * dropout(g a): one thread per 8 columns of 4 rows,
 *                    a's columns held in registers for the 4 rows
 *   lora_grad_a_R    gradA [R, D] += alpha * g^T dropout(x): partial products of row chunks on
 *                    tensor cores, then lora_grad_a_sum adds them in a fixed order
 *
 * The mask of element i = n * D + d is backend.ts's dropoutUniform(seed, i) >= p, as in the
 * elementwise dropout kernels (seedMix = fmix32(seed)); drop = 0 applies no dropout.
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';
import { TENSOR_CORE_CUDA } from './tensor-core.js';

/** Ranks with compiled lora_down, lora_up_grad and lora_grad_a variants. */
export const LORA_RANKS = [8, 16, 32, 64] as const;

/** r rounded up to whole 16-row tiles (the kernels pad a and g with zeros to it). */
const padded = (r: number): number => Math.ceil(r / 16) * 16;

/** Rows per lora_down block and the shared memory it needs for rank r. */
export const LORA_DOWN = { rows: 32, threads: 64, sharedBytes: (r: number) => (32 + padded(r)) * (128 + 8) * 2 } as const;

/** lora_grad_a: 128-column tiles by chunks of 256 rows, and its shared memory for rank r. */
export const LORA_GRAD_A = { cols: 128, rows: 256, threads: 128, sharedBytes: (r: number) => 32 * (128 + 8) * 2 + 32 * (padded(r) + 8) * 2 } as const;

const SOURCE = String.raw`
__device__ __forceinline__ unsigned lora_fmix32(unsigned h) {
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}
__device__ __forceinline__ bool lora_keep(i64 i, unsigned seedMix, double p) {
  return (double)lora_fmix32((unsigned)i * 0x9e3779b1u + seedMix) * (1.0 / 4294967296.0) >= p;
}

/**
 * Requires D % 8 == 0 and 16-byte aligned rows. 64 threads stage a 32 x 128 tile of x: each
 * loads its 8 chunks of 8 elements for the next tile into registers while the tensor cores work
 * on the current one, then masks and stores them (a's tile comes by cp.async).
 */
template <int R>
__device__ __forceinline__ void lora_down(u16* u, const u16* x, const u16* a, int N, int D, double p, double keepScale, unsigned seedMix, int drop) {
  // NT: 8-column tiles of u, rounded up to pairs (a's rows past R are zeros).
  constexpr int KT = 128, LD = KT + 8, NT = (R + 15) / 16 * 2, PER = 32 * (KT / 8) / 64;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sx = (u16*)smem_raw;
  u16* sa = sx + 32 * LD;
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
  fetch(0);
  for (int d0 = 0; d0 < D; d0 += KT) {
    #pragma unroll
    for (int it = 0; it < PER; it++) {
      const int e = threadIdx.x + it * 64, r = e / (KT / 8), c = (e - r * (KT / 8)) * 8;
      uint4 w4 = v[it];
      if (drop) {
        unsigned w[4] = {w4.x, w4.y, w4.z, w4.w};
        #pragma unroll
        for (int k = 0; k < 8; k++) {
          const u16 h = (u16)(w[k >> 1] >> (16 * (k & 1)));
          const i64 i = (i64)(n0 + r) * D + d0 + c + k;
          const float f = lora_keep(i, seedMix, p) ? (float)((double)bf16_to_f32(h) * keepScale) : 0.f;
          w[k >> 1] = (w[k >> 1] & (0xffffu << (16 * (1 - (k & 1))))) | ((unsigned)f32_to_bf16(f) << (16 * (k & 1)));
        }
        w4 = make_uint4(w[0], w[1], w[2], w[3]);
      }
      *(uint4*)(sx + r * LD + c) = w4;
    }
    for (int e = threadIdx.x; e < NT * 8 * (KT / 8); e += 64) {
      const int r = e / (KT / 8), c = (e - r * (KT / 8)) * 8, d = d0 + c;
      const bool ok = r < R && d < D;
      cp_async16(sa + r * LD + c, a + (ok ? (i64)r * D + d : 0), ok ? 16 : 0);
    }
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    if (d0 + KT < D) fetch(d0 + KT);
    #pragma unroll
    for (int kc = 0; kc < KT / 16; kc++) {
      unsigned fa[4];
      frag_a(fa, sx, LD, warp * 16, kc * 16, lane);
      #pragma unroll
      for (int j = 0; j < NT; j += 2) {
        unsigned fb[4];
        frag_b_nk(fb, sa, LD, j * 8, kc * 16, lane);
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
    for (int j = 0; j < R / 8; j++) *(unsigned*)(u + (i64)n * R + j * 8 + 2 * t) = pack_bf16(acc[j][2 * i], acc[j][2 * i + 1]);
  }
}

/** An A operand (16 x 16 at m0, k0) from a shared tile stored [k][m], through transposed loads. */
__device__ __forceinline__ void frag_a_km(unsigned (&a)[4], const u16* sm, int ld, int m0, int k0, int lane) {
  ldsm4t(a, sm + (k0 + (lane >> 4) * 8 + (lane & 7)) * ld + m0 + ((lane >> 3) & 1) * 8);
}

/**
 * gradA's partial sums g^T dropout(x) over one chunk of 256 rows and one tile of 128 columns:
 * 32-row steps stage x (masked as lora_down masks it) and g (R columns, zeros up to a whole
 * 16) in shared memory; warp w multiplies columns 32w..32w+31 on tensor cores. part[chunk][R][D]
 * is summed over the chunks in order by lora_grad_a_sum. Requires D % 8 == 0, aligned rows.
 */
template <int R>
__device__ __forceinline__ void lora_grad_a(float* part, const u16* g, const u16* x, int N, int D, double p, double keepScale, unsigned seedMix, int drop) {
  constexpr int CT = 128, LDX = CT + 8, R16 = (R + 15) / 16 * 16, LDG = R16 + 8, MT = R16 / 16;
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
  for (int r0 = chunk * 256; r0 < rEnd; r0 += 32) {
    uint4 v[4];
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int e = threadIdx.x + it * 128, r = e >> 4, c = (e & 15) * 8, n = r0 + r, d = c0 + c;
      v[it] = n < rEnd && d < D ? *(const uint4*)(x + (i64)n * D + d) : make_uint4(0u, 0u, 0u, 0u);
    }
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int e = threadIdx.x + it * 128, r = e >> 4, c = (e & 15) * 8;
      uint4 w4 = v[it];
      if (drop) {
        unsigned w[4] = {w4.x, w4.y, w4.z, w4.w};
        #pragma unroll
        for (int k = 0; k < 8; k++) {
          const u16 h = (u16)(w[k >> 1] >> (16 * (k & 1)));
          const i64 i = (i64)(r0 + r) * D + c0 + c + k;
          const float f = lora_keep(i, seedMix, p) ? (float)((double)bf16_to_f32(h) * keepScale) : 0.f;
          w[k >> 1] = (w[k >> 1] & (0xffffu << (16 * (1 - (k & 1))))) | ((unsigned)f32_to_bf16(f) << (16 * (k & 1)));
        }
        w4 = make_uint4(w[0], w[1], w[2], w[3]);
      }
      *(uint4*)(sx + r * LDX + c) = w4;
    }
    for (int e = threadIdx.x; e < 32 * (R16 / 8); e += 128) {
      const int r = e / (R16 / 8), c = (e - r * (R16 / 8)) * 8, n = r0 + r;
      *(uint4*)(sg + r * LDG + c) = n < rEnd && c < R ? *(const uint4*)(g + (i64)n * R + c) : make_uint4(0u, 0u, 0u, 0u);
    }
    __syncthreads();
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
 * into registers and serve the 4 rows. Requires D % 8 == 0 and 16-byte aligned rows.
 */
template <int R>
__device__ __forceinline__ void lora_up_grad(u16* dx, const u16* g, const u16* a, int N, int D, double alpha, double p, double keepScale,
                                             unsigned seedMix, int drop) {
  const int C8 = D / 8;
  const i64 chunks = (i64)((N + 3) / 4) * C8;
  for (i64 cidx = (i64)blockIdx.x * blockDim.x + threadIdx.x; cidx < chunks; cidx += (i64)gridDim.x * blockDim.x) {
    const int n0 = (int)(cidx / C8) * 4, d = (int)(cidx % C8) * 8;
    uint4 av[R];
    #pragma unroll
    for (int j = 0; j < R; j++) av[j] = *(const uint4*)(a + (i64)j * D + d);
    for (int n = n0; n < n0 + 4 && n < N; n++) {
      float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      #pragma unroll
      for (int j = 0; j < R; j++) {
        const float gj = bf16_to_f32(g[(i64)n * R + j]);
        const unsigned ws[4] = {av[j].x, av[j].y, av[j].z, av[j].w};
        #pragma unroll
        for (int k = 0; k < 4; k++) {
          s[2 * k] += gj * bf16_to_f32((u16)(ws[k] & 0xffffu));
          s[2 * k + 1] += gj * bf16_to_f32((u16)(ws[k] >> 16));
        }
      }
      uint4* px = (uint4*)(dx + (i64)n * D + d);
      const uint4 old = *px;
      unsigned o[4] = {old.x, old.y, old.z, old.w};
      #pragma unroll
      for (int k = 0; k < 8; k++) {
        const i64 i = (i64)n * D + d + k;
        const double v = drop ? (lora_keep(i, seedMix, p) ? (double)s[k] * keepScale : 0.0) : (double)s[k];
        const u16 h = (u16)(o[k >> 1] >> (16 * (k & 1)));
        const float r = (float)((double)bf16_to_f32(h) + alpha * v);
        o[k >> 1] = (o[k >> 1] & (0xffffu << (16 * (1 - (k & 1))))) | ((unsigned)f32_to_bf16(r) << (16 * (k & 1)));
      }
      *px = make_uint4(o[0], o[1], o[2], o[3]);
    }
  }
}
`;

function variant(r: number): string {
  return String.raw`
extern "C" __global__ void __launch_bounds__(64) lora_down_${r}(u16* u, const u16* x, const u16* a, int N, int D, double p, double keepScale,
                                                               unsigned seedMix, int drop) {
  lora_down<${r}>(u, x, a, N, D, p, keepScale, seedMix, drop);
}
extern "C" __global__ void lora_up_grad_${r}(u16* dx, const u16* g, const u16* a, int N, int D, double alpha, double p, double keepScale,
                                            unsigned seedMix, int drop) {
  lora_up_grad<${r}>(dx, g, a, N, D, alpha, p, keepScale, seedMix, drop);
}
extern "C" __global__ void __launch_bounds__(128) lora_grad_a_${r}(float* part, const u16* g, const u16* x, int N, int D, double p, double keepScale,
                                                                  unsigned seedMix, int drop) {
  lora_grad_a<${r}>(part, g, x, N, D, p, keepScale, seedMix, drop);
}
`;
}

export const LORA: KernelModule = kernelModule('lora', COMMON_CUDA + TENSOR_CORE_CUDA + SOURCE + LORA_RANKS.map(variant).join(''));
