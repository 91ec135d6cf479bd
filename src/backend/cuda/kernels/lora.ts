/**
 * The LoRA products that read or write a full activation matrix, for a group of up to three
 * adapters reading the same input (q, k and v; gate and up), each with its own dropout mask
 * computed inside instead of materialized (bf16 tensors, r a multiple of 8 up to 64):
 *
 *   lora_down_R_M    u_m [N, R] = dropout_m(x) a_m^T: 32-row blocks whose 8 warps split D,
 *                    multiplying fragments read straight from global memory on tensor cores
 *                    (mma.sync m16n8k16, f32 accumulation), their sums added in order at the end
 *   lora_grad_a_R_M  gradA_m [R, D] += alpha * g_m^T dropout_m(x): partial products of row chunks
 *                    on tensor cores, then lora_grad_a_sum adds them in a fixed order
 *   lora_grads_R_M   the same and, from the same tiles and masks, dx [N, D] = (dx +) alpha *
 *                    sum_m dropout_m(g_m a_m): each mask hashed once for both gradients
 *   lora_up_bwd      the B side of the backward pass, g_m = dy_m b_m and gradB_m += alpha *
 *                    dy_m^T u_m, from one read of each dy_m (R of 8 or 16): partial products of
 *                    256 x 512 blocks of dy, then lora_up_bwd_sum adds them in a fixed order
 *
 * x is read once per group: three separate calls would read it three times. The mask of
 * element i = n * D + d is backend.ts's dropoutUniform(seed_m, i) >= p, as in the elementwise
 * dropout kernels, decided in integers (see loraDropoutArgs). Dropped elements are zeroed with
 * bit masks on bf16 pairs (one hash per pair, no conversions), and the 1 / (1 - p) of the kept
 * ones scales the f32 sums instead (the same sum; the composed path rounds x * scale to bf16
 * first, so results differ within bf16 rounding). drop = 0 applies no dropout.
 */
import { fmix32 } from '../../backend.js';
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';
import { TENSOR_CORE_CUDA } from './tensor-core.js';

/** Ranks with compiled kernels. */
export const LORA_RANKS = [8, 16, 32, 64] as const;

/** Members one kernel call takes at rank r (more registers per member at higher ranks). */
export function loraGroupMax(r: number): number {
  return r <= 16 ? 3 : 1;
}

/** The compiled (rank, members) variants, as kernel name suffixes `${r}_${m}`. */
export const LORA_VARIANTS: readonly string[] = LORA_RANKS.flatMap((r) =>
  Array.from({ length: loraGroupMax(r) }, (_, i) => `${r}_${i + 1}`),
);

/** r rounded up to whole 16-row tiles (the kernels pad a and g with zeros to it). */
const padded = (r: number): number => Math.ceil(r / 16) * 16;

/** lora_down: rows per block, threads (8 warps splitting D), and its shared memory (the warps' sums) for rank r and m members. */
export const LORA_DOWN = { rows: 32, threads: 256, sharedBytes: (r: number, m: number) => 8 * m * 32 * r * 4 } as const;

/**
 * The kernels' dropout arguments: keep element i when its 16 bits (see backend.ts's
 * dropoutUniform) are >= keepFrom = ceil(p 2^16), scale kept values by 1 / (1 - p).
 */
export function loraDropoutArgs(p: number): { keepFrom: number; keepScale: number; drop: number } {
  return { keepFrom: p > 0 ? Math.ceil(p * 65536) : 0, keepScale: p > 0 ? 1 / (1 - p) : 1, drop: p > 0 ? 1 : 0 };
}

/** A member's seed as the kernels take it (the hash's additive term). */
export const loraSeedMix = (seed: number): number => fmix32(seed >>> 0);

/**
 * lora_grad_a and lora_grads: 128-column tiles by chunks of 256 rows, and their shared memory for
 * rank r and m members (lora_grads adds the members' mask bits and a's columns).
 */
export const LORA_GRAD_A = {
  cols: 128,
  rows: 256,
  threads: 128,
  sharedBytes: (r: number, m: number, dx: boolean) =>
    m * 32 * (128 + 8) * 2 + m * 32 * (padded(r) + 8) * 2 + (dx ? m * 32 * 16 + m * padded(r) * (128 + 8) * 2 : 0),
} as const;

const SOURCE = String.raw`
/**
 * x's 8 bf16 at element pairs p0..p0+3 with dropout's zeros, and in bits the 8 keep bits (bit
 * k: element k; callers that ignore them leave the compiler nothing to compute). The kept values
 * are not scaled here (callers scale the products by 1 / (1 - p), which is the same sum).
 */
__device__ __forceinline__ uint4 lora_mask8(uint4 w, unsigned p0, unsigned seedMix, unsigned keepFrom, unsigned& bits) {
  const unsigned m0 = dropout_mask2(dropout_pair_hash(p0, seedMix), keepFrom), m1 = dropout_mask2(dropout_pair_hash(p0 + 1, seedMix), keepFrom);
  const unsigned m2 = dropout_mask2(dropout_pair_hash(p0 + 2, seedMix), keepFrom), m3 = dropout_mask2(dropout_pair_hash(p0 + 3, seedMix), keepFrom);
  w.x &= m0; w.y &= m1; w.z &= m2; w.w &= m3;
  // A pair's mask is 0xffff per kept half: bit 0 and bit 16 become bits 2i and 2i + 1.
  bits = (m0 & 1u) | ((m0 >> 15) & 2u) | ((m1 & 1u) << 2) | ((m1 >> 13) & 8u) | ((m2 & 1u) << 4) | ((m2 >> 11) & 32u) | ((m3 & 1u) << 6) | ((m3 >> 9) & 128u);
  return w;
}

/** Member m's pointer among three (m is uniform; a select, not a local array). */
template <typename T>
__device__ __forceinline__ T pick3(int m, T p0, T p1, T p2) { return m == 0 ? p0 : m == 1 ? p1 : p2; }

/**
 * u_m for 32 rows: the 8 warps of a block split D (warp w takes 16-column steps w, w + 8, ...)
 * and read their fragments of x and a_m straight from global memory (a lane's 4-byte words of
 * a 16-column step fill whole 32-byte sectors of each row), so loads of later steps overlap the
 * products of earlier ones with no block-wide waits. Each member's mask is applied to the A
 * fragments in registers (a pair of bf16 per register, one hash each); at the end the warps'
 * f32 sums meet in shared memory and are added in warp order, times 1 / (1 - p). Requires D even.
 */
template <int R, int M, bool DROP>
__device__ __forceinline__ void lora_down(u16* u0, u16* u1, u16* u2, const u16* x, const u16* a0, const u16* a1, const u16* a2,
                                          int N, int D, int keepFrom, float keepScale, unsigned s0, unsigned s1, unsigned s2) {
  constexpr int R16 = (R + 15) / 16 * 16, NT = R16 / 8, W = 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* red = (float*)smem_raw;  // [W][M][32][R]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * 32;
  const unsigned seeds[3] = {s0, s1, s2}, hD = (unsigned)(D >> 1);
  float acc[M][2][NT][4];
  zero_acc(acc);
  // This lane's rows: n0 + 16 mt + g + 8 h (register h + 2 c of the A fragment, c = column half).
  const u16* xr[2][2];
  bool rok[2][2];
  #pragma unroll
  for (int mt = 0; mt < 2; mt++)
    #pragma unroll
    for (int h = 0; h < 2; h++) {
      const int row = n0 + mt * 16 + g + 8 * h;
      rok[mt][h] = row < N;
      xr[mt][h] = x + (i64)(rok[mt][h] ? row : 0) * D + 2 * t;
    }
  #pragma unroll 2
  for (int k0 = warp * 16; k0 < D; k0 += W * 16) {
    unsigned fa[2][4];
    #pragma unroll
    for (int mt = 0; mt < 2; mt++)
      #pragma unroll
      for (int c = 0; c < 2; c++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
          const bool ok = rok[mt][h] && k0 + 8 * c + 2 * t < D;
          fa[mt][h + 2 * c] = ok ? *(const unsigned*)(xr[mt][h] + k0 + 8 * c) : 0u;
        }
    #pragma unroll
    for (int m = 0; m < M; m++) {
      const u16* am = pick3(m, a0, a1, a2);
      unsigned fb[NT][2];
      #pragma unroll
      for (int j = 0; j < NT; j++)
        #pragma unroll
        for (int c = 0; c < 2; c++) {
          const int r = j * 8 + g, col = k0 + 8 * c + 2 * t;
          fb[j][c] = r < R && col < D ? *(const unsigned*)(am + (i64)r * D + col) : 0u;
        }
      #pragma unroll
      for (int mt = 0; mt < 2; mt++) {
        unsigned fm[4] = {fa[mt][0], fa[mt][1], fa[mt][2], fa[mt][3]};
        if constexpr (DROP) {
          const unsigned p0 = (unsigned)(n0 + mt * 16 + g) * hD + (unsigned)(k0 >> 1) + t, p8 = 4u * (unsigned)D;
          fm[0] &= dropout_mask2(dropout_pair_hash(p0, seeds[m]), keepFrom);
          fm[1] &= dropout_mask2(dropout_pair_hash(p0 + p8, seeds[m]), keepFrom);
          fm[2] &= dropout_mask2(dropout_pair_hash(p0 + 4, seeds[m]), keepFrom);
          fm[3] &= dropout_mask2(dropout_pair_hash(p0 + p8 + 4, seeds[m]), keepFrom);
        }
        #pragma unroll
        for (int j = 0; j < NT; j++) mma_bf16(acc[m][mt][j], fm, fb[j][0], fb[j][1]);
      }
    }
  }
  #pragma unroll
  for (int m = 0; m < M; m++)
    #pragma unroll
    for (int mt = 0; mt < 2; mt++)
      #pragma unroll
      for (int j = 0; j < R / 8; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) red[((warp * M + m) * 32 + mt * 16 + g + 8 * (e >> 1)) * R + j * 8 + 2 * t + (e & 1)] = acc[m][mt][j][e];
  __syncthreads();
  const float scale = DROP ? keepScale : 1.f;
  for (int i = threadIdx.x; i < M * 32 * R; i += W * 32) {
    const int m = i / (32 * R), rem = i - m * 32 * R, row = rem / R, col = rem - row * R;
    if (n0 + row >= N) continue;
    float sum = 0.f;
    #pragma unroll
    for (int w = 0; w < W; w++) sum += red[w * M * 32 * R + i];
    pick3(m, u0, u1, u2)[(i64)(n0 + row) * R + col] = f32_to_bf16(sum * scale);
  }
}

/**
 * gradA_m's partial sums g_m^T mask_m(x) over one chunk of 256 rows and one tile of 128
 * columns (lora_grad_a_sum applies 1 / (1 - p)): 32-row steps stage x (zeros where member m's
 * mask drops; one copy without dropout) and the g_m (R columns, zeros up to a whole 16) in
 * shared memory, the next step's rows loading into registers meanwhile; warp w multiplies
 * columns 32w..32w+31 on tensor cores. part[chunk][m][R][D] is summed over the chunks in order
 * by lora_grad_a_sum. Requires D % 8 == 0 and aligned rows.
 *
 * With DX (lora_grads) each step also writes dx's 32 x 128 tile, (dx +) dxScale * sum_m
 * mask_m(g_m a_m): the staging threads keep the masks they computed as bits in shared memory,
 * where the warps multiplying g_m by a_m's columns (held in registers for the whole chunk) read
 * them back for their own fragments, so each element's hash is computed once for both products.
 */
template <int R, int M, bool DX, bool DROP>
__device__ __forceinline__ void lora_grad_a(float* part, u16* dx, const u16* g0, const u16* g1, const u16* g2, const u16* x,
                                            const u16* a0, const u16* a1, const u16* a2, int N, int D, int keepFrom, float dxScale,
                                            unsigned s0, unsigned s1, unsigned s2, int accumulate) {
  constexpr int CT = 128, LDX = CT + 8, R16 = (R + 15) / 16 * 16, LDG = R16 + 8, MT = R16 / 16, GC = 32 * (R16 / 8), GP = (GC + 127) / 128;
  constexpr int LDA = CT + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sx = (u16*)smem_raw;         // [M][32][LDX]: rows of x
  u16* sg = sx + M * 32 * LDX;      // [M][32][LDG]: rows of g_m
  unsigned char* sbits = (unsigned char*)(sg + M * 32 * LDG);  // DX: [M][32][CT / 8] keep bits
  u16* sa = (u16*)(sbits + M * 32 * (CT / 8));                  // DX: [M][R16][LDA]: a_m's columns of the tile
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, t = lane & 3;
  const int c0 = blockIdx.x * CT, chunk = blockIdx.y, rEnd = min(N, (chunk + 1) * 256);
  const unsigned seeds[3] = {s0, s1, s2};
  unsigned ab[DX ? M : 1][MT][2][4];  // DX: B fragments of a_m's columns 32w.. (k = the rank)
  if constexpr (DX) {
    for (int e = threadIdx.x; e < M * R16 * (CT / 8); e += 128) {
      const int m = e / (R16 * (CT / 8)), rem = e - m * (R16 * (CT / 8)), r = rem / (CT / 8), c = (rem - r * (CT / 8)) * 8, d = c0 + c;
      const bool ok = r < R && d < D;
      cp_async16(sa + (m * R16 + r) * LDA + c, pick3(m, a0, a1, a2) + (ok ? (i64)r * D + d : 0), ok ? 16 : 0);
    }
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    #pragma unroll
    for (int m = 0; m < M; m++)
      #pragma unroll
      for (int kc = 0; kc < MT; kc++)
        #pragma unroll
        for (int h = 0; h < 2; h++) frag_b_kn(ab[m][kc][h], sa + m * R16 * LDA, LDA, warp * 32 + h * 16, kc * 16, lane);
  }
  float acc[M][MT][4][4];
  zero_acc(acc);
  uint4 v[4], gv[M][GP];
  auto fetch = [&](int r0) {
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int e = threadIdx.x + it * 128, r = e >> 4, c = (e & 15) * 8, n = r0 + r, d = c0 + c;
      v[it] = n < rEnd && d < D ? *(const uint4*)(x + (i64)n * D + d) : make_uint4(0u, 0u, 0u, 0u);
    }
    #pragma unroll
    for (int m = 0; m < M; m++) {
      const u16* gm = pick3(m, g0, g1, g2);
      #pragma unroll
      for (int it = 0; it < GP; it++) {
        const int e = threadIdx.x + it * 128, r = e / (R16 / 8), c = (e - r * (R16 / 8)) * 8, n = r0 + r;
        gv[m][it] = e < GC && n < rEnd && c < R ? *(const uint4*)(gm + (i64)n * R + c) : make_uint4(0u, 0u, 0u, 0u);
      }
    }
  };
  fetch(chunk * 256);
  for (int r0 = chunk * 256; r0 < rEnd; r0 += 32) {
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int e = threadIdx.x + it * 128, r = e >> 4, c = (e & 15) * 8;
      if constexpr (DROP) {
        #pragma unroll
        for (int m = 0; m < M; m++) {
          unsigned bits;
          *(uint4*)(sx + (m * 32 + r) * LDX + c) = lora_mask8(v[it], (unsigned)(r0 + r) * (unsigned)(D >> 1) + ((c0 + c) >> 1), seeds[m], keepFrom, bits);
          if constexpr (DX) sbits[(m * 32 + r) * (CT / 8) + (c >> 3)] = (unsigned char)bits;
        }
      } else {
        *(uint4*)(sx + r * LDX + c) = v[it];
      }
    }
    #pragma unroll
    for (int m = 0; m < M; m++) {
      #pragma unroll
      for (int it = 0; it < GP; it++) {
        const int e = threadIdx.x + it * 128, r = e / (R16 / 8), c = (e - r * (R16 / 8)) * 8;
        if (e < GC) *(uint4*)(sg + (m * 32 + r) * LDG + c) = gv[m][it];
      }
    }
    __syncthreads();
    if (r0 + 32 < rEnd) fetch(r0 + 32);
    #pragma unroll
    for (int m = 0; m < M; m++) {
      const u16* tX = sx + (DROP ? m : 0) * 32 * LDX;
      const u16* tG = sg + m * 32 * LDG;
      #pragma unroll
      for (int kc = 0; kc < 2; kc++) {
        unsigned bx[2][4];
        frag_b_kn(bx[0], tX, LDX, warp * 32, kc * 16, lane);
        frag_b_kn(bx[1], tX, LDX, warp * 32 + 16, kc * 16, lane);
        #pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          unsigned ag[4];
          frag_a_km(ag, tG, LDG, mt * 16, kc * 16, lane);
          mma_bf16(acc[m][mt][0], ag, bx[0][0], bx[0][1]);
          mma_bf16(acc[m][mt][1], ag, bx[0][2], bx[0][3]);
          mma_bf16(acc[m][mt][2], ag, bx[1][0], bx[1][1]);
          mma_bf16(acc[m][mt][3], ag, bx[1][2], bx[1][3]);
        }
      }
    }
    if constexpr (DX) {
      // dx rows r0.. (two 16-row tiles) x columns c0 + 32w.. (four 8-column tiles).
      float tot[2][4][4];
      zero_acc(tot);
      #pragma unroll
      for (int m = 0; m < M; m++) {
        #pragma unroll
        for (int mt = 0; mt < 2; mt++) {
          float c[4][4];
          zero_acc(c);
          #pragma unroll
          for (int kc = 0; kc < MT; kc++) {
            unsigned ga[4];
            frag_a(ga, sg + m * 32 * LDG, LDG, mt * 16, kc * 16, lane);
            #pragma unroll
            for (int j = 0; j < 4; j++) mma_bf16(c[j], ga, ab[m][kc][j >> 1][(j & 1) * 2], ab[m][kc][j >> 1][(j & 1) * 2 + 1]);
          }
          #pragma unroll
          for (int h = 0; h < 2; h++) {
            // Byte j of this row's 4 (columns 32w + 8j..) holds bits 2t, 2t + 1 for this lane's pair.
            const unsigned bits = DROP ? *(const unsigned*)(sbits + (m * 32 + mt * 16 + gq + 8 * h) * (CT / 8) + warp * 4) >> (2 * t) : 0xffffffffu;
            #pragma unroll
            for (int j = 0; j < 4; j++) {
              if ((bits >> (8 * j)) & 1u) tot[mt][j][2 * h] += c[j][2 * h];
              if ((bits >> (8 * j + 1)) & 1u) tot[mt][j][2 * h + 1] += c[j][2 * h + 1];
            }
          }
        }
      }
      #pragma unroll
      for (int mt = 0; mt < 2; mt++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
          const int n = r0 + mt * 16 + gq + 8 * h;
          if (n >= rEnd) continue;
          #pragma unroll
          for (int j = 0; j < 4; j++) {
            const int d = c0 + warp * 32 + j * 8 + 2 * t;
            if (d >= D) continue;
            unsigned* dst = (unsigned*)(dx + (i64)n * D + d);
            float o0 = dxScale * tot[mt][j][2 * h], o1 = dxScale * tot[mt][j][2 * h + 1];
            if (accumulate) {
              const unsigned prev = *dst;
              o0 += bf16_to_f32((u16)(prev & 0xffffu));
              o1 += bf16_to_f32((u16)(prev >> 16));
            }
            *dst = pack_bf16(o0, o1);
          }
        }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int m = 0; m < M; m++) {
    #pragma unroll
    for (int mt = 0; mt < MT; mt++) {
      #pragma unroll
      for (int i = 0; i < 2; i++) {
        const int row = mt * 16 + gq + 8 * i;
        if (row >= R) continue;
        #pragma unroll
        for (int j = 0; j < 4; j++) {
          const int d = c0 + warp * 32 + j * 8 + 2 * t;
          if (d < D) *(float2*)(part + (((i64)chunk * M + m) * R + row) * D + d) = make_float2(acc[m][mt][j][2 * i], acc[m][mt][j][2 * i + 1]);
        }
      }
    }
  }
}

/** gradA_m[i] += alpha * (sum over the chunks, in order, of part[c][m][i]) (n = R D; alpha includes dropout's scale). */
extern "C" __global__ void lora_grad_a_sum(float* gA0, float* gA1, float* gA2, const float* part, int chunks, int members, i64 n, double alpha) {
  const i64 total = (i64)members * n;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
    float s = 0.f;
    #pragma unroll 8
    for (int c = 0; c < chunks; c++) s += part[(i64)c * total + i];  // unrolled: the loads overlap, the adds keep their order
    const int m = (int)(i / n);
    float* gA = pick3(m, gA0, gA1, gA2) + (i - m * n);
    *gA = (float)((double)*gA + alpha * (double)s);
  }
}
`;

/**
 * `if (drop) f<.., true>(..); else f<.., false>(..);` for a call written once: the dropout test
 * outside the kernels' loops (inside them, each member's hashing was a separate block of code).
 */
const byDrop = (call: (drop: boolean) => string): string => `if (drop) ${call(true)};\n  else ${call(false)};`;

function variant(suffix: string): string {
  const [r, m] = suffix.split('_');
  return String.raw`
extern "C" __global__ void __launch_bounds__(256) lora_down_${suffix}(u16* u0, u16* u1, u16* u2, const u16* x, const u16* a0, const u16* a1,
    const u16* a2, int N, int D, int keepFrom, float keepScale, unsigned s0, unsigned s1, unsigned s2, int drop) {
  ${byDrop((d) => `lora_down<${r}, ${m}, ${d}>(u0, u1, u2, x, a0, a1, a2, N, D, keepFrom, keepScale, s0, s1, s2)`)}
}
extern "C" __global__ void __launch_bounds__(128, 4) lora_grad_a_${suffix}(float* part, const u16* g0, const u16* g1, const u16* g2, const u16* x,
    int N, int D, int keepFrom, unsigned s0, unsigned s1, unsigned s2, int drop) {
  ${byDrop((d) => `lora_grad_a<${r}, ${m}, false, ${d}>(part, nullptr, g0, g1, g2, x, nullptr, nullptr, nullptr, N, D, keepFrom, 0.f, s0, s1, s2, 0)`)}
}
extern "C" __global__ void __launch_bounds__(128, ${Number(r) >= 64 ? 2 : 3}) lora_grads_${suffix}(float* part, u16* dx, const u16* g0, const u16* g1, const u16* g2,
    const u16* x, const u16* a0, const u16* a1, const u16* a2, int N, int D, int keepFrom, float dxScale, unsigned s0, unsigned s1, unsigned s2,
    int drop, int accumulate) {
  ${byDrop((d) => `lora_grad_a<${r}, ${m}, true, ${d}>(part, dx, g0, g1, g2, x, a0, a1, a2, N, D, keepFrom, dxScale, s0, s1, s2, accumulate)`)}
}
`;
}

/**
 * lora_up_bwd: a block's rows and columns of dy, threads, the rank its partial sums are padded
 * to, and its shared memory (two dy tiles, its u rows and b rows).
 */
export const LORA_UP_BWD = {
  rows: 256,
  cols: 512,
  threads: 128,
  rankPad: 16,
  sharedBytes: 2 * 64 * (128 + 8) * 2 + (256 + 512) * (16 + 8) * 2,
} as const;

const UP_BWD_SOURCE = String.raw`
#define UB_ROWS ${LORA_UP_BWD.rows}
#define UB_COLS ${LORA_UP_BWD.cols}
#define UB_R16 ${LORA_UP_BWD.rankPad}
/**
 * One member per blockIdx.z (dy_m [N, O_m], u_m [N, R], b_m [O_m, R], R = 8 or 16 padded to 16
 * with zeros): the block's UB_ROWS x UB_COLS part of dy streams through shared memory in 64 x 128
 * tiles (cp.async, double-buffered), column tiles outer. Warp w multiplies rows 16w.. of each
 * tile by b's rows (g) and columns 32w.. transposed by u's rows (dy^T u), on tensor cores. Partial
 * sums in f32: g's over the block's columns to gpart[m][blockIdx.y][N][16], dy^T u's over its
 * rows to bpart[m][blockIdx.x][Omax][16].
 */
extern "C" __global__ void __launch_bounds__(128, 3) lora_up_bwd(float* gpart, float* bpart, const u16* dy0, const u16* dy1, const u16* dy2,
                                                            const u16* u0, const u16* u1, const u16* u2, const u16* b0, const u16* b1, const u16* b2,
                                                            int O0, int O1, int O2, int N, int R) {
  constexpr int LD = 128 + 8, LDR = UB_R16 + 8, RS = UB_ROWS / 64, CS = UB_COLS / 128;
  extern __shared__ __align__(16) unsigned char up_bwd_smem[];
  u16* sDy = (u16*)up_bwd_smem;     // [2][64][LD]
  u16* sU = sDy + 2 * 64 * LD;      // [UB_ROWS][LDR]
  u16* sB = sU + UB_ROWS * LDR;     // [UB_COLS][LDR]
  const int m = blockIdx.z, O = pick3(m, O0, O1, O2), Omax = max(O0, max(O1, O2));
  const int n0 = blockIdx.x * UB_ROWS, c0 = blockIdx.y * UB_COLS;
  if (c0 >= O) return;  // a member with fewer outputs than the widest (lora_up_bwd_sum skips these blocks)
  const u16* dy = pick3(m, dy0, dy1, dy2);
  const u16* u = pick3(m, u0, u1, u2);
  const u16* b = pick3(m, b0, b1, b2);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  for (int e = threadIdx.x; e < UB_ROWS * 2; e += 128) {
    const int r = e >> 1, c = (e & 1) * 8, n = n0 + r;
    const bool ok = n < N && c < R;
    cp_async16(sU + r * LDR + c, u + (ok ? (i64)n * R + c : 0), ok ? 16 : 0);
  }
  for (int e = threadIdx.x; e < UB_COLS * 2; e += 128) {
    const int r = e >> 1, c = (e & 1) * 8, o = c0 + r;
    const bool ok = o < O && c < R;
    cp_async16(sB + r * LDR + c, b + (ok ? (i64)o * R + c : 0), ok ? 16 : 0);
  }
  auto load = [&](int it) {
    const int cs = it / RS, rs = it - cs * RS;
    u16* st = sDy + (it & 1) * 64 * LD;
    #pragma unroll
    for (int k = 0; k < 8; k++) {
      const int e = threadIdx.x + k * 128, r = e >> 4, c = (e & 15) * 8, n = n0 + rs * 64 + r, o = c0 + cs * 128 + c;
      const bool ok = n < N && o < O;
      cp_async16(st + r * LD + c, dy + (ok ? (i64)n * O + o : 0), ok ? 16 : 0);
    }
  };
  load(0);
  cp_commit();
  float ag[RS][2][4];
  zero_acc(ag);
  #pragma unroll 1
  for (int cs = 0; cs < CS; cs++) {
    float ab[2][2][4];
    zero_acc(ab);
    #pragma unroll
    for (int rs = 0; rs < RS; rs++) {
      const int it = cs * RS + rs;
      if (it + 1 < RS * CS) {
        load(it + 1);
        cp_commit();
        cp_wait<1>();
      } else {
        cp_wait<0>();
      }
      __syncthreads();
      const u16* tDy = sDy + (it & 1) * 64 * LD;
      #pragma unroll
      for (int kc = 0; kc < 8; kc++) {
        unsigned a[4], bb[4];
        frag_a(a, tDy, LD, warp * 16, kc * 16, lane);
        frag_b_kn(bb, sB + cs * 128 * LDR, LDR, 0, kc * 16, lane);
        mma_bf16(ag[rs][0], a, bb[0], bb[1]);
        mma_bf16(ag[rs][1], a, bb[2], bb[3]);
      }
      #pragma unroll
      for (int kk = 0; kk < 4; kk++) {
        unsigned bu[4];
        frag_b_kn(bu, sU + rs * 64 * LDR, LDR, 0, kk * 16, lane);
        #pragma unroll
        for (int mt = 0; mt < 2; mt++) {
          unsigned a[4];
          frag_a_km(a, tDy, LD, warp * 32 + mt * 16, kk * 16, lane);
          mma_bf16(ab[mt][0], a, bu[0], bu[1]);
          mma_bf16(ab[mt][1], a, bu[2], bu[3]);
        }
      }
      __syncthreads();
    }
    #pragma unroll
    for (int mt = 0; mt < 2; mt++) {
      #pragma unroll
      for (int i = 0; i < 2; i++) {
        const int o = c0 + cs * 128 + warp * 32 + mt * 16 + g + 8 * i;
        if (o >= O) continue;
        float* dst = bpart + (((i64)m * gridDim.x + blockIdx.x) * Omax + o) * UB_R16 + 2 * t;
        #pragma unroll
        for (int j = 0; j < 2; j++) *(float2*)(dst + j * 8) = make_float2(ab[mt][j][2 * i], ab[mt][j][2 * i + 1]);
      }
    }
  }
  #pragma unroll
  for (int rs = 0; rs < RS; rs++) {
    #pragma unroll
    for (int i = 0; i < 2; i++) {
      const int n = n0 + rs * 64 + warp * 16 + g + 8 * i;
      if (n >= N) continue;
      float* dst = gpart + (((i64)m * gridDim.y + blockIdx.y) * N + n) * UB_R16 + 2 * t;
      #pragma unroll
      for (int j = 0; j < 2; j++) *(float2*)(dst + j * 8) = make_float2(ag[rs][j][2 * i], ag[rs][j][2 * i + 1]);
    }
  }
}

/** g_m [N, R] (bf16) = the sum over the column blocks of gpart; gradB_m [O_m, R] += alpha * the sum over the row blocks of bpart; in order. */
extern "C" __global__ void lora_up_bwd_sum(u16* g0, u16* g1, u16* g2, float* gB0, float* gB1, float* gB2, const float* gpart, const float* bpart,
                                           int O0, int O1, int O2, int N, int R, int members, int colBlocks, int rowBlocks, float alpha) {
  const int Omax = max(O0, max(O1, O2));
  const i64 perG = (i64)N * R, per = perG + (i64)Omax * R, total = members * per;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
    const int m = (int)(i / per), O = pick3(m, O0, O1, O2);
    const i64 j = i - m * per;
    float s = 0.f;
    if (j < perG) {
      const i64 n = j / R;
      const int c = (int)(j - n * R), blocks = (O + UB_COLS - 1) / UB_COLS;
      #pragma unroll 4
      for (int cb = 0; cb < blocks; cb++) s += gpart[(((i64)m * colBlocks + cb) * N + n) * UB_R16 + c];
      pick3(m, g0, g1, g2)[j] = f32_to_bf16(s);
    } else {
      const i64 k = j - perG, o = k / R;
      if (o >= O) continue;
      const int c = (int)(k - o * R);
      #pragma unroll 8
      for (int rb = 0; rb < rowBlocks; rb++) s += bpart[(((i64)m * rowBlocks + rb) * Omax + o) * UB_R16 + c];  // the loads overlap, the adds keep their order
      float* gB = pick3(m, gB0, gB1, gB2) + k;
      *gB += alpha * s;
    }
  }
}
`;

export const LORA: KernelModule = kernelModule(
  'lora',
  COMMON_CUDA + TENSOR_CORE_CUDA + SOURCE + UP_BWD_SOURCE + LORA_VARIANTS.map(variant).join(''),
);
