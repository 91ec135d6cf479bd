/**
 * Causal grouped-query attention on bf16 tensor cores (mma.sync m16n8k16, f32 accumulation),
 * flash-attention style: scores and probabilities live in registers, nothing of size T x S is
 * written to memory, and key tiles past a query tile's causal limit are skipped. Used for
 * training and prompt prefill with head dims 64 or 128 and bf16 tensors; the other cases take
 * the paths of ../attention.ts.
 *
 * Layouts as in the Backend interface: q, out [B, T, H, hd]; k, v [B, S, Hkv, hd]; lse f32
 * [B, T, H] (natural log of the scaled scores' sum of exponentials); key slot s is visible to
 * query t when s <= kvLen - T + t and keyMask[b, s] != 0. Shared-memory tiles have rows of
 * hd + 8 bf16, so the 32-bit fragment loads of a warp's 8 row groups hit distinct banks.
 *
 * A warp owns 16 rows of the M dimension of every product; in the m16n8k16 fragment layout a
 * lane (group g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1 of
 * each 8-column tile, which is also the A-operand layout of the next product, so probabilities
 * go from accumulators to operands without passing through shared memory.
 *
 *   flash_fwd_HD       block = 64 queries of one (b, h); loops over key tiles of 64
 *   flash_bwd_dkdv_HD  block = 64 keys of one (b, kv head); loops over the heads sharing it and
 *                      over query tiles of 32: S^T = K Q^T, dV += P^T dO, dK += dS^T Q, all
 *                      with keys as rows, so dK and dV are owned by one block (no atomics)
 *   flash_bwd_dq_HD    block = 64 queries of one (b, h); loops over key tiles of 64: dQ += dS K
 * delta (rowsum dout * out) comes from attn_bwd_delta in kernels/attention.ts.
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

/** Head dims with compiled variants. */
export const FLASH_HEAD_DIMS = [64, 128] as const;

/** Rows per block of each kernel, for the host's grids. */
export const FLASH_TILES = { fwdRows: 64, dkvKeys: 64, dqRows: 64 } as const;

/** Dynamic shared memory of each kernel (bytes). */
export function flashSharedBytes(kernel: 'fwd' | 'dkdv' | 'dq', hd: number): number {
  const row = (hd + 8) * 2;
  switch (kernel) {
    case 'fwd': return 3 * 64 * row + 64 * 4;
    case 'dkdv': return 2 * 64 * row + 2 * 32 * row + 2 * 32 * 4 + 64 * 4;
    case 'dq': return 4 * 64 * row + 2 * 64 * 4 + 64 * 4;
  }
}

const SOURCE = String.raw`
#define LOG2E 1.4426950408889634f

__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** Two floats as bf16x2, lo in the low half (round to nearest even). */
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ unsigned ld32(const u16* p) { return *(const unsigned*)p; }
/** Two bf16 from different rows (p and p + stride) packed as one operand register. */
__device__ __forceinline__ unsigned ld2rows(const u16* p, int stride) { return (unsigned)p[0] | ((unsigned)p[stride] << 16); }

/**
 * Rows [r0, r0 + n) of a [*, rowStride]-strided bf16 matrix (row i at src + i * rowStride)
 * into shared memory rows of ld elements; rows at or past limit are zeros. 16-byte accesses.
 */
template <int HD>
__device__ __forceinline__ void load_tile(u16* sm, int ld, const u16* src, i64 rowStride, int r0, int n, int limit) {
  constexpr int C8 = HD / 8;
  for (int e = threadIdx.x; e < n * C8; e += blockDim.x) {
    const int r = e / C8, c = e - r * C8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r0 + r < limit) v = *(const uint4*)(src + (i64)(r0 + r) * rowStride + c * 8);
    *(uint4*)(sm + r * ld + c * 8) = v;
  }
}

/** A-operand fragment (16 rows x 16 columns at k0) of a row-major shared tile. */
__device__ __forceinline__ void frag_a(unsigned (&a)[4], const u16* sm, int ld, int row0, int k0, int g, int t) {
  const u16* p = sm + (row0 + g) * ld + k0 + 2 * t;
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * ld);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * ld + 8);
}

/** P (two adjacent 16 x 8 accumulator tiles) as an A operand over their 16 columns. */
__device__ __forceinline__ void acc_to_a(unsigned (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

template <int HD>
__device__ __forceinline__ void flash_fwd(u16* O, float* lse, const u16* Q, const u16* K, const u16* V, const int* mask,
                                          int T, int S, int H, int Hkv, int kvLen, float scale) {
  constexpr int LD = HD + 8, NT = HD / 8, KC = HD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sQ = (u16*)smem_raw;
  u16* sK = sQ + 64 * LD;
  u16* sV = sK + 64 * LD;
  int* sMask = (int*)(sV + 64 * LD);
  const int b = blockIdx.y / H, h = blockIdx.y - b * H, kh = h / (H / Hkv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q0 = blockIdx.x * 64, offset = kvLen - T;
  const i64 qStride = (i64)H * HD, kvStride = (i64)Hkv * HD;
  load_tile<HD>(sQ, LD, Q + ((i64)b * T * H + h) * HD, qStride, q0, 64, T);
  __syncthreads();
  unsigned qf[KC][4];
  #pragma unroll
  for (int kc = 0; kc < KC; kc++) frag_a(qf[kc], sQ, LD, warp * 16, kc * 16, g, t);

  const float sl = scale * LOG2E;
  float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
  float o[NT][4];
  #pragma unroll
  for (int j = 0; j < NT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  const int qr[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
  const int kEnd = min(kvLen, offset + min(q0 + 64, T));
  const u16* Kb = K + ((i64)b * S * Hkv + kh) * HD;
  const u16* Vb = V + ((i64)b * S * Hkv + kh) * HD;
  for (int s0 = 0; s0 < kEnd; s0 += 64) {
    __syncthreads();
    load_tile<HD>(sK, LD, Kb, kvStride, s0, 64, kvLen);
    load_tile<HD>(sV, LD, Vb, kvStride, s0, 64, kvLen);
    if (threadIdx.x < 64) sMask[threadIdx.x] = (s0 + threadIdx.x < kvLen) ? mask[(i64)b * S + s0 + threadIdx.x] : 0;
    __syncthreads();
    float s[8][4];
    #pragma unroll
    for (int j = 0; j < 8; j++) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      #pragma unroll
      for (int kc = 0; kc < KC; kc++) {
        const u16* p = sK + (j * 8 + g) * LD + kc * 16 + 2 * t;
        mma_bf16(s[j], qf[kc], ld32(p), ld32(p + 8));
      }
    }
    #pragma unroll
    for (int i = 0; i < 2; i++) {
      float mx = NEG_INF;
      #pragma unroll
      for (int j = 0; j < 8; j++) {
        #pragma unroll
        for (int u = 0; u < 2; u++) {
          const int key = j * 8 + 2 * t + u;
          const bool vis = qr[i] < T && sMask[key] != 0 && s0 + key <= offset + qr[i];
          const float v = vis ? s[j][2 * i + u] * sl : NEG_INF;
          s[j][2 * i + u] = v;
          mx = fmaxf(mx, v);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mNew = fmaxf(m[i], mx);
      const float alpha = mNew == NEG_INF ? 1.f : exp2f(m[i] - mNew);
      float sum = 0.f;
      #pragma unroll
      for (int j = 0; j < 8; j++) {
        #pragma unroll
        for (int u = 0; u < 2; u++) {
          const float v = s[j][2 * i + u];
          const float p = v == NEG_INF ? 0.f : exp2f(v - mNew);
          s[j][2 * i + u] = p;
          sum += p;
        }
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      l[i] = l[i] * alpha + sum;
      m[i] = mNew;
      #pragma unroll
      for (int j = 0; j < NT; j++) { o[j][2 * i] *= alpha; o[j][2 * i + 1] *= alpha; }
    }
    #pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      unsigned a[4];
      acc_to_a(a, s[2 * kk], s[2 * kk + 1]);
      #pragma unroll
      for (int j = 0; j < NT; j++) {
        const u16* p = sV + (kk * 16 + 2 * t) * LD + j * 8 + g;
        mma_bf16(o[j], a, ld2rows(p, LD), ld2rows(p + 8 * LD, LD));
      }
    }
  }
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    if (qr[i] >= T) continue;
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    u16* dst = O + (((i64)b * T + qr[i]) * H + h) * HD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) *(unsigned*)(dst + j * 8) = pack_bf16(o[j][2 * i] * inv, o[j][2 * i + 1] * inv);
    if (t == 0) lse[((i64)b * T + qr[i]) * H + h] = l[i] > 0.f ? (m[i] + log2f(l[i])) / LOG2E : NEG_INF;
  }
}

template <int HD>
__device__ __forceinline__ void flash_bwd_dkdv(u16* dK, u16* dV, const u16* dO, const float* delta, const float* lse,
                                               const u16* Q, const u16* K, const u16* V, const int* mask,
                                               int T, int S, int H, int Hkv, int kvLen, float scale) {
  constexpr int LD = HD + 8, NT = HD / 8, KC = HD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sK = (u16*)smem_raw;
  u16* sV = sK + 64 * LD;
  u16* sQ = sV + 64 * LD;
  u16* sO = sQ + 32 * LD;
  float* sL = (float*)(sO + 32 * LD);
  float* sD = sL + 32;
  int* sMask = (int*)(sD + 32);
  const int G = H / Hkv, b = blockIdx.y / Hkv, kh = blockIdx.y - b * Hkv;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int k0 = blockIdx.x * 64, offset = kvLen - T;
  const i64 qStride = (i64)H * HD, kvStride = (i64)Hkv * HD;
  load_tile<HD>(sK, LD, K + ((i64)b * S * Hkv + kh) * HD, kvStride, k0, 64, kvLen);
  load_tile<HD>(sV, LD, V + ((i64)b * S * Hkv + kh) * HD, kvStride, k0, 64, kvLen);
  if (threadIdx.x < 64) sMask[threadIdx.x] = (k0 + threadIdx.x < kvLen) ? mask[(i64)b * S + k0 + threadIdx.x] : 0;
  const float sl = scale * LOG2E;
  float dk[NT][4], dv[NT][4];
  #pragma unroll
  for (int j = 0; j < NT; j++) {
    dk[j][0] = dk[j][1] = dk[j][2] = dk[j][3] = 0.f;
    dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.f;
  }
  const int kr[2] = {warp * 16 + g, warp * 16 + g + 8};  // key rows of this lane within the tile
  // Queries that can see key k0 start at k0 - offset.
  const int qStart = max(0, k0 - offset) & ~31;
  for (int gi = 0; gi < G; gi++) {
    const int h = kh * G + gi;
    const u16* Qh = Q + ((i64)b * T * H + h) * HD;
    const u16* dOh = dO + ((i64)b * T * H + h) * HD;
    for (int q0 = qStart; q0 < T; q0 += 32) {
      __syncthreads();
      load_tile<HD>(sQ, LD, Qh, qStride, q0, 32, T);
      load_tile<HD>(sO, LD, dOh, qStride, q0, 32, T);
      if (threadIdx.x < 32) {
        const bool ok = q0 + threadIdx.x < T;
        const i64 row = ((i64)b * T + q0 + threadIdx.x) * H + h;
        sL[threadIdx.x] = ok ? lse[row] : NEG_INF;
        sD[threadIdx.x] = ok ? delta[row] : 0.f;
      }
      __syncthreads();
      // S^T (16 keys x 32 queries) and dP^T = V dO^T.
      float st[4][4], dpt[4][4];
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        st[j][0] = st[j][1] = st[j][2] = st[j][3] = 0.f;
        dpt[j][0] = dpt[j][1] = dpt[j][2] = dpt[j][3] = 0.f;
      }
      #pragma unroll
      for (int kc = 0; kc < KC; kc++) {
        unsigned ak[4], av[4];
        frag_a(ak, sK, LD, warp * 16, kc * 16, g, t);
        frag_a(av, sV, LD, warp * 16, kc * 16, g, t);
        #pragma unroll
        for (int j = 0; j < 4; j++) {
          const u16* pq = sQ + (j * 8 + g) * LD + kc * 16 + 2 * t;
          mma_bf16(st[j], ak, ld32(pq), ld32(pq + 8));
          const u16* po = sO + (j * 8 + g) * LD + kc * 16 + 2 * t;
          mma_bf16(dpt[j], av, ld32(po), ld32(po + 8));
        }
      }
      // P^T and dS^T = P^T (dP^T - delta) scale, in place.
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        #pragma unroll
        for (int e = 0; e < 4; e++) {
          const int key = kr[e >> 1], qi = j * 8 + 2 * t + (e & 1), q = q0 + qi;
          const float L = sL[qi];
          const bool vis = q < T && L != NEG_INF && sMask[key] != 0 && k0 + key <= offset + q;
          const float p = vis ? exp2f(st[j][e] * sl - L * LOG2E) : 0.f;
          st[j][e] = p;
          dpt[j][e] = p * (dpt[j][e] - sD[qi]) * scale;
        }
      }
      // dV += P^T dO, dK += dS^T Q (k dimension = the 32 queries).
      #pragma unroll
      for (int kk = 0; kk < 2; kk++) {
        unsigned ap[4], ads[4];
        acc_to_a(ap, st[2 * kk], st[2 * kk + 1]);
        acc_to_a(ads, dpt[2 * kk], dpt[2 * kk + 1]);
        #pragma unroll
        for (int j = 0; j < NT; j++) {
          const u16* po = sO + (kk * 16 + 2 * t) * LD + j * 8 + g;
          mma_bf16(dv[j], ap, ld2rows(po, LD), ld2rows(po + 8 * LD, LD));
          const u16* pq = sQ + (kk * 16 + 2 * t) * LD + j * 8 + g;
          mma_bf16(dk[j], ads, ld2rows(pq, LD), ld2rows(pq + 8 * LD, LD));
        }
      }
    }
  }
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    const int s = k0 + kr[i];
    if (s >= S) continue;
    const i64 o = (((i64)b * S + s) * Hkv + kh) * HD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) {
      *(unsigned*)(dK + o + j * 8) = pack_bf16(dk[j][2 * i], dk[j][2 * i + 1]);
      *(unsigned*)(dV + o + j * 8) = pack_bf16(dv[j][2 * i], dv[j][2 * i + 1]);
    }
  }
}

template <int HD>
__device__ __forceinline__ void flash_bwd_dq(u16* dQ, const u16* dO, const float* delta, const float* lse,
                                             const u16* Q, const u16* K, const u16* V, const int* mask,
                                             int T, int S, int H, int Hkv, int kvLen, float scale) {
  constexpr int LD = HD + 8, NT = HD / 8, KC = HD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sQ = (u16*)smem_raw;
  u16* sO = sQ + 64 * LD;
  u16* sK = sO + 64 * LD;
  u16* sV = sK + 64 * LD;
  float* sL = (float*)(sV + 64 * LD);
  float* sD = sL + 64;
  int* sMask = (int*)(sD + 64);
  const int b = blockIdx.y / H, h = blockIdx.y - b * H, kh = h / (H / Hkv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q0 = blockIdx.x * 64, offset = kvLen - T;
  const i64 qStride = (i64)H * HD, kvStride = (i64)Hkv * HD;
  load_tile<HD>(sQ, LD, Q + ((i64)b * T * H + h) * HD, qStride, q0, 64, T);
  load_tile<HD>(sO, LD, dO + ((i64)b * T * H + h) * HD, qStride, q0, 64, T);
  if (threadIdx.x < 64) {
    const bool ok = q0 + threadIdx.x < T;
    const i64 row = ((i64)b * T + q0 + threadIdx.x) * H + h;
    sL[threadIdx.x] = ok ? lse[row] : NEG_INF;
    sD[threadIdx.x] = ok ? delta[row] : 0.f;
  }
  const float sl = scale * LOG2E;
  float dq[NT][4];
  #pragma unroll
  for (int j = 0; j < NT; j++) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.f;
  const int rr[2] = {warp * 16 + g, warp * 16 + g + 8};
  const int kEnd = min(kvLen, offset + min(q0 + 64, T));
  const u16* Kb = K + ((i64)b * S * Hkv + kh) * HD;
  const u16* Vb = V + ((i64)b * S * Hkv + kh) * HD;
  for (int s0 = 0; s0 < kEnd; s0 += 64) {
    __syncthreads();
    load_tile<HD>(sK, LD, Kb, kvStride, s0, 64, kvLen);
    load_tile<HD>(sV, LD, Vb, kvStride, s0, 64, kvLen);
    if (threadIdx.x < 64) sMask[threadIdx.x] = (s0 + threadIdx.x < kvLen) ? mask[(i64)b * S + s0 + threadIdx.x] : 0;
    __syncthreads();
    float s[8][4], dp[8][4];
    #pragma unroll
    for (int j = 0; j < 8; j++) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      dp[j][0] = dp[j][1] = dp[j][2] = dp[j][3] = 0.f;
    }
    #pragma unroll
    for (int kc = 0; kc < KC; kc++) {
      unsigned aq[4], ao[4];
      frag_a(aq, sQ, LD, warp * 16, kc * 16, g, t);
      frag_a(ao, sO, LD, warp * 16, kc * 16, g, t);
      #pragma unroll
      for (int j = 0; j < 8; j++) {
        const u16* pk = sK + (j * 8 + g) * LD + kc * 16 + 2 * t;
        mma_bf16(s[j], aq, ld32(pk), ld32(pk + 8));
        const u16* pv = sV + (j * 8 + g) * LD + kc * 16 + 2 * t;
        mma_bf16(dp[j], ao, ld32(pv), ld32(pv + 8));
      }
    }
    #pragma unroll
    for (int j = 0; j < 8; j++) {
      #pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = rr[e >> 1], q = q0 + r, key = j * 8 + 2 * t + (e & 1);
        const float L = sL[r];
        const bool vis = q < T && L != NEG_INF && sMask[key] != 0 && s0 + key <= offset + q;
        const float p = vis ? exp2f(s[j][e] * sl - L * LOG2E) : 0.f;
        s[j][e] = p * (dp[j][e] - sD[r]) * scale;
      }
    }
    #pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      unsigned a[4];
      acc_to_a(a, s[2 * kk], s[2 * kk + 1]);
      #pragma unroll
      for (int j = 0; j < NT; j++) {
        const u16* pk = sK + (kk * 16 + 2 * t) * LD + j * 8 + g;
        mma_bf16(dq[j], a, ld2rows(pk, LD), ld2rows(pk + 8 * LD, LD));
      }
    }
  }
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    const int q = q0 + rr[i];
    if (q >= T) continue;
    u16* dst = dQ + (((i64)b * T + q) * H + h) * HD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) *(unsigned*)(dst + j * 8) = pack_bf16(dq[j][2 * i], dq[j][2 * i + 1]);
  }
}

`;

/** The exported entry points of one head-dim variant (written out: the host reads their signatures). */
function variant(hd: number): string {
  const tail = 'const int* mask, int T, int S, int H, int Hkv, int kvLen, float scale';
  const args = 'mask, T, S, H, Hkv, kvLen, scale';
  return String.raw`
extern "C" __global__ void __launch_bounds__(128) flash_fwd_${hd}(u16* O, float* lse, const u16* Q, const u16* K, const u16* V, ${tail}) {
  flash_fwd<${hd}>(O, lse, Q, K, V, ${args});
}
extern "C" __global__ void __launch_bounds__(128) flash_bwd_dkdv_${hd}(u16* dK, u16* dV, const u16* dO, const float* delta, const float* lse,
                                                                     const u16* Q, const u16* K, const u16* V, ${tail}) {
  flash_bwd_dkdv<${hd}>(dK, dV, dO, delta, lse, Q, K, V, ${args});
}
extern "C" __global__ void __launch_bounds__(128) flash_bwd_dq_${hd}(u16* dQ, const u16* dO, const float* delta, const float* lse,
                                                                   const u16* Q, const u16* K, const u16* V, ${tail}) {
  flash_bwd_dq<${hd}>(dQ, dO, delta, lse, Q, K, V, ${args});
}
`;
}

export const FLASH_ATTENTION: KernelModule = kernelModule('flash-attention', COMMON_CUDA + SOURCE + FLASH_HEAD_DIMS.map(variant).join(''));
