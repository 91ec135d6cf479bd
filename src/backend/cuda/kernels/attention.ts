/**
 * Causal grouped-query attention with a key padding mask, flash-attention style: scores live
 * only in shared-memory tiles, the forward pass keeps a running max and sum per query row and
 * saves the row's log-sum-exp, and the backward pass recomputes probabilities from it. All
 * arithmetic is f32 on CUDA cores (tiles are converted to f32 in shared memory), so any float
 * dtype gives f32-accurate results.
 *
 * Query rows of one (batch, kv head) form a "virtual" matrix of T*G rows, row vr = t*G + g being
 * query head kh*G + g at time t, so the G heads sharing a key/value head share its tiles.
 * Key slot s is visible to time t when s <= kvLen - T + t and keyMask[b, s] != 0.
 *
 * Threads: 128 per block as a 16 x 8 grid (ty, tx). In a score tile a thread owns rows
 * ty*TM + i and columns tx + 8*j; in an output tile the same rows and head dims
 * jj*32 + tx*4 + c. Row reductions are shuffles among the 8 lanes sharing ty. Shared-memory
 * rows are padded by 4 floats so the 16-byte loads of 8 lanes hit distinct banks.
 *
 *   attn_fwd_N     block = 64 query rows;   loops over key tiles of 32
 *   attn_bwd_dq_N  block = 32 query rows;   dq = sum_s dS K
 *   attn_bwd_dkdv_N block = 32 keys;        loops over query tiles of 32: dv = P^T dO, dk = dS^T Q
 *   attn_bwd_delta D[row] = dout . out (per query row)
 * N = head dims / 32 rounded up (1, 2 or 4: head_dim <= 128).
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

/** Tile sizes shared with the host code that computes grids and shared-memory sizes. */
export const ATTENTION_TILES = { fwdRows: 64, fwdKeys: 32, dqRows: 32, dqKeys: 32, dkvKeys: 32, dkvRows: 32 } as const;

/** Shared-memory bytes of each kernel for head dims padded to 32 * nj. */
export function attentionSharedBytes(kernel: 'fwd' | 'dq' | 'dkdv', nj: number): number {
  const ldh = 32 * nj + 4;
  const ldp = 32 + 4;
  const floats =
    kernel === 'fwd'
      ? (64 + 2 * 32) * ldh + 64 * ldp + 32
      : kernel === 'dq'
        ? (2 * 32 + 2 * 32) * ldh + 32 * ldp + 32
        : (2 * 32 + 2 * 32) * ldh + 2 * 32 * ldp + 3 * 32;
  return floats * 4;
}

const SOURCE = String.raw`
#define FULL 0xffffffffu

__device__ __forceinline__ float f4at(const float4& v, int u) { return u == 0 ? v.x : u == 1 ? v.y : u == 2 ? v.z : v.w; }

/** Rows [vr0, vr0 + nrows) of the virtual query matrix (zeros past R or past hd), as f32. */
template <int HDP>
__device__ __forceinline__ void load_qrows(float* sm, int nrows, const void* src, int dt, int b, int kh, int vr0, int R, int G,
                                           int T, int H, int hd) {
  constexpr int LDH = HDP + 4;
  for (int e = threadIdx.x; e < nrows * HDP; e += blockDim.x) {
    const int r = e / HDP, d = e - r * HDP, vr = vr0 + r;
    float v = 0.f;
    if (vr < R && d < hd) {
      const int t = vr / G, h = kh * G + (vr - t * G);
      v = ldf(src, dt, (((i64)b * T + t) * H + h) * hd + d);
    }
    sm[r * LDH + d] = v;
  }
}

/**
 * Key/value slots [s0, s0 + nrows) of kv head kh (S slots a row), as f32: zeros past kvLen or
 * past hd. Slots past kvLen are a KV cache's unwritten ones: whatever they hold (NaN, say)
 * would reach the output through a masked key's zero probability times its value.
 */
template <int HDP>
__device__ __forceinline__ void load_kvrows(float* sm, int nrows, const void* src, int dt, int b, int kh, int s0, int S, int kvLen, int Hkv, int hd) {
  constexpr int LDH = HDP + 4;
  for (int e = threadIdx.x; e < nrows * HDP; e += blockDim.x) {
    const int r = e / HDP, d = e - r * HDP, s = s0 + r;
    sm[r * LDH + d] = (s < kvLen && d < hd) ? ldf(src, dt, (((i64)b * S + s) * Hkv + kh) * hd + d) : 0.f;
  }
}

/** s[i][j] = sum_d A[ty*TM + i][d] * B[tx + 8j][d] (both row-major with stride HDP + 4). */
template <int TM, int TN, int HDP>
__device__ __forceinline__ void dot_tile(float (&s)[TM][TN], const float* A, const float* B, int ty, int tx) {
  constexpr int LDH = HDP + 4;
  #pragma unroll
  for (int i = 0; i < TM; i++)
    #pragma unroll
    for (int j = 0; j < TN; j++) s[i][j] = 0.f;
  #pragma unroll 4
  for (int d = 0; d < HDP; d += 4) {
    float4 a[TM], bb[TN];
    #pragma unroll
    for (int i = 0; i < TM; i++) a[i] = *(const float4*)(A + (ty * TM + i) * LDH + d);
    #pragma unroll
    for (int j = 0; j < TN; j++) bb[j] = *(const float4*)(B + (tx + 8 * j) * LDH + d);
    #pragma unroll
    for (int i = 0; i < TM; i++)
      #pragma unroll
      for (int j = 0; j < TN; j++) {
        s[i][j] = fmaf(a[i].x, bb[j].x, s[i][j]);
        s[i][j] = fmaf(a[i].y, bb[j].y, s[i][j]);
        s[i][j] = fmaf(a[i].z, bb[j].z, s[i][j]);
        s[i][j] = fmaf(a[i].w, bb[j].w, s[i][j]);
      }
  }
}

/** acc[i][jj*4 + c] += sum_k P[ty*TM + i][k] * B[k][jj*32 + tx*4 + c], k < KN; P stride KN + 4. */
template <int TM, int NJ, int KN>
__device__ __forceinline__ void acc_tile(float (&acc)[TM][4 * NJ], const float* P, const float* B, int ty, int tx) {
  constexpr int LDP = KN + 4, LDH = 32 * NJ + 4;
  #pragma unroll 2
  for (int k = 0; k < KN; k += 4) {
    float4 p4[TM];
    #pragma unroll
    for (int i = 0; i < TM; i++) p4[i] = *(const float4*)(P + (ty * TM + i) * LDP + k);
    #pragma unroll
    for (int u = 0; u < 4; u++) {
      #pragma unroll
      for (int jj = 0; jj < NJ; jj++) {
        const float4 b4 = *(const float4*)(B + (k + u) * LDH + jj * 32 + tx * 4);
        #pragma unroll
        for (int i = 0; i < TM; i++) {
          const float p = f4at(p4[i], u);
          acc[i][jj * 4 + 0] = fmaf(p, b4.x, acc[i][jj * 4 + 0]);
          acc[i][jj * 4 + 1] = fmaf(p, b4.y, acc[i][jj * 4 + 1]);
          acc[i][jj * 4 + 2] = fmaf(p, b4.z, acc[i][jj * 4 + 2]);
          acc[i][jj * 4 + 3] = fmaf(p, b4.w, acc[i][jj * 4 + 3]);
        }
      }
    }
  }
}

__device__ __forceinline__ float group8_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(FULL, v, 1));
  v = fmaxf(v, __shfl_xor_sync(FULL, v, 2));
  return fmaxf(v, __shfl_xor_sync(FULL, v, 4));
}
__device__ __forceinline__ float group8_sum(float v) {
  v += __shfl_xor_sync(FULL, v, 1);
  v += __shfl_xor_sync(FULL, v, 2);
  return v + __shfl_xor_sync(FULL, v, 4);
}

/** Stores rows ty*TM + i of an output tile (dims jj*32 + tx*4 + c) as virtual query rows, times mul[i]. */
template <int TM, int NJ>
__device__ __forceinline__ void store_qrows(void* dst, int dt, const float (&acc)[TM][4 * NJ], const float (&mul)[TM], int vr0, int R, int G,
                                            int b, int kh, int T, int H, int hd, int ty, int tx) {
  #pragma unroll
  for (int i = 0; i < TM; i++) {
    const int vr = vr0 + ty * TM + i;
    if (vr >= R) continue;
    const int t = vr / G, h = kh * G + (vr - t * G);
    const i64 o = (((i64)b * T + t) * H + h) * hd;
    #pragma unroll
    for (int jj = 0; jj < NJ; jj++)
      #pragma unroll
      for (int c = 0; c < 4; c++) {
        const int d = jj * 32 + tx * 4 + c;
        if (d < hd) stf(dst, dt, o + d, acc[i][jj * 4 + c] * mul[i]);
      }
  }
}

template <int NJ>
__device__ void attn_fwd(void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
                         const int* mask, int T, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  constexpr int HDP = 32 * NJ, LDH = HDP + 4, TM = 4, TN = 4, BQ = 16 * TM, BK = 8 * TN, LDP = BK + 4;
  extern __shared__ float4 smem4[];
  float* Qs = (float*)smem4;
  float* Ks = Qs + BQ * LDH;
  float* Vs = Ks + BK * LDH;
  float* Ps = Vs + BK * LDH;
  int* Ms = (int*)(Ps + BQ * LDP);
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
  const int G = H / Hkv, R = T * G, b = blockIdx.y / Hkv, kh = blockIdx.y % Hkv;
  const int vr0 = blockIdx.x * BQ, off = kvLen - T;
  load_qrows<HDP>(Qs, BQ, q, qdt, b, kh, vr0, R, G, T, H, hd);

  float m[TM], l[TM], acc[TM][4 * NJ];
  int lim[TM];
  #pragma unroll
  for (int i = 0; i < TM; i++) {
    const int vr = vr0 + ty * TM + i;
    lim[i] = vr < R ? off + vr / G : -1;
    m[i] = NEG_INF;
    l[i] = 0.f;
    #pragma unroll
    for (int c = 0; c < 4 * NJ; c++) acc[i][c] = 0.f;
  }
  const int kEnd = off + (min(R, vr0 + BQ) - 1) / G + 1;
  for (int k0 = 0; k0 < kEnd; k0 += BK) {
    __syncthreads();
    load_kvrows<HDP>(Ks, BK, k, kdt, b, kh, k0, S, kvLen, Hkv, hd);
    load_kvrows<HDP>(Vs, BK, v, vdt, b, kh, k0, S, kvLen, Hkv, hd);
    if (threadIdx.x < BK) Ms[threadIdx.x] = k0 + (int)threadIdx.x < S ? mask[(i64)b * S + k0 + threadIdx.x] : 0;
    __syncthreads();
    float sc[TM][TN];
    dot_tile<TM, TN, HDP>(sc, Qs, Ks, ty, tx);
    #pragma unroll
    for (int i = 0; i < TM; i++) {
      float tmax = NEG_INF;
      #pragma unroll
      for (int j = 0; j < TN; j++) {
        const int c = tx + 8 * j;
        sc[i][j] = (k0 + c <= lim[i] && Ms[c] != 0) ? sc[i][j] * scale : NEG_INF;
        tmax = fmaxf(tmax, sc[i][j]);
      }
      const float mnew = fmaxf(m[i], group8_max(tmax));
      const float alpha = mnew == NEG_INF ? 1.f : expf(m[i] - mnew);
      float rs = 0.f;
      #pragma unroll
      for (int j = 0; j < TN; j++) {
        const float p = sc[i][j] == NEG_INF ? 0.f : expf(sc[i][j] - mnew);
        Ps[(ty * TM + i) * LDP + tx + 8 * j] = p;
        rs += p;
      }
      l[i] = l[i] * alpha + group8_sum(rs);
      m[i] = mnew;
      #pragma unroll
      for (int c = 0; c < 4 * NJ; c++) acc[i][c] *= alpha;
    }
    __syncthreads();
    acc_tile<TM, NJ, BK>(acc, Ps, Vs, ty, tx);
  }
  float inv[TM];
  #pragma unroll
  for (int i = 0; i < TM; i++) inv[i] = l[i] > 0.f ? 1.f / l[i] : 0.f;
  store_qrows<TM, NJ>(out, odt, acc, inv, vr0, R, G, b, kh, T, H, hd, ty, tx);
  if (tx == 0) {
    #pragma unroll
    for (int i = 0; i < TM; i++) {
      const int vr = vr0 + ty * TM + i;
      if (vr >= R) continue;
      const int t = vr / G, h = kh * G + (vr - t * G);
      lse[((i64)b * T + t) * H + h] = l[i] > 0.f ? m[i] + logf(l[i]) : NEG_INF;
    }
  }
}

template <int NJ>
__device__ void attn_bwd_dq(void* dq, int dqdt, const void* dout, int ddt, const float* delta, const float* lse,
                            const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
                            const int* mask, int T, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  constexpr int HDP = 32 * NJ, LDH = HDP + 4, TM = 2, TN = 4, BQ = 16 * TM, BK = 8 * TN, LDP = BK + 4;
  extern __shared__ float4 smem4[];
  float* Qs = (float*)smem4;
  float* Os = Qs + BQ * LDH;
  float* Ks = Os + BQ * LDH;
  float* Vs = Ks + BK * LDH;
  float* Ds = Vs + BK * LDH;
  int* Ms = (int*)(Ds + BQ * LDP);
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
  const int G = H / Hkv, R = T * G, b = blockIdx.y / Hkv, kh = blockIdx.y % Hkv;
  const int vr0 = blockIdx.x * BQ, off = kvLen - T;
  load_qrows<HDP>(Qs, BQ, q, qdt, b, kh, vr0, R, G, T, H, hd);
  load_qrows<HDP>(Os, BQ, dout, ddt, b, kh, vr0, R, G, T, H, hd);

  float rl[TM], rd[TM], acc[TM][4 * NJ], one[TM];
  int lim[TM];
  #pragma unroll
  for (int i = 0; i < TM; i++) {
    const int vr = vr0 + ty * TM + i;
    lim[i] = -1;
    rl[i] = NEG_INF;
    rd[i] = 0.f;
    one[i] = 1.f;
    if (vr < R) {
      const int t = vr / G, h = kh * G + (vr - t * G);
      const i64 row = ((i64)b * T + t) * H + h;
      lim[i] = off + t;
      rl[i] = lse[row];
      rd[i] = delta[row];
    }
    #pragma unroll
    for (int c = 0; c < 4 * NJ; c++) acc[i][c] = 0.f;
  }
  const int kEnd = off + (min(R, vr0 + BQ) - 1) / G + 1;
  for (int k0 = 0; k0 < kEnd; k0 += BK) {
    __syncthreads();
    load_kvrows<HDP>(Ks, BK, k, kdt, b, kh, k0, S, kvLen, Hkv, hd);
    load_kvrows<HDP>(Vs, BK, v, vdt, b, kh, k0, S, kvLen, Hkv, hd);
    if (threadIdx.x < BK) Ms[threadIdx.x] = k0 + (int)threadIdx.x < S ? mask[(i64)b * S + k0 + threadIdx.x] : 0;
    __syncthreads();
    float sc[TM][TN], dp[TM][TN];
    dot_tile<TM, TN, HDP>(sc, Qs, Ks, ty, tx);
    dot_tile<TM, TN, HDP>(dp, Os, Vs, ty, tx);
    #pragma unroll
    for (int i = 0; i < TM; i++)
      #pragma unroll
      for (int j = 0; j < TN; j++) {
        const int c = tx + 8 * j;
        const bool vis = k0 + c <= lim[i] && Ms[c] != 0 && rl[i] != NEG_INF;
        const float p = vis ? expf(sc[i][j] * scale - rl[i]) : 0.f;
        Ds[(ty * TM + i) * LDP + c] = p * (dp[i][j] - rd[i]) * scale;
      }
    __syncthreads();
    acc_tile<TM, NJ, BK>(acc, Ds, Ks, ty, tx);
  }
  store_qrows<TM, NJ>(dq, dqdt, acc, one, vr0, R, G, b, kh, T, H, hd, ty, tx);
}

template <int NJ>
__device__ void attn_bwd_dkdv(void* dk, int dkdt, void* dv, int dvdt, const void* dout, int ddt, const float* delta, const float* lse,
                              const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
                              const int* mask, int T, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  constexpr int HDP = 32 * NJ, LDH = HDP + 4, TM = 2, TN = 4, BKEY = 16 * TM, BQC = 8 * TN, LDP = BQC + 4;
  extern __shared__ float4 smem4[];
  float* Ks = (float*)smem4;
  float* Vs = Ks + BKEY * LDH;
  float* Qs = Vs + BKEY * LDH;
  float* Os = Qs + BQC * LDH;
  float* Ps = Os + BQC * LDH;
  float* Ds = Ps + BKEY * LDP;
  float* rowLse = Ds + BKEY * LDP;
  float* rowD = rowLse + BQC;
  int* rowLim = (int*)(rowD + BQC);
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
  const int G = H / Hkv, R = T * G, b = blockIdx.y / Hkv, kh = blockIdx.y % Hkv;
  const int s0 = blockIdx.x * BKEY, off = kvLen - T;
  load_kvrows<HDP>(Ks, BKEY, k, kdt, b, kh, s0, S, kvLen, Hkv, hd);
  load_kvrows<HDP>(Vs, BKEY, v, vdt, b, kh, s0, S, kvLen, Hkv, hd);

  float accK[TM][4 * NJ], accV[TM][4 * NJ];
  bool keyOk[TM];
  #pragma unroll
  for (int i = 0; i < TM; i++) {
    const int s = s0 + ty * TM + i;
    keyOk[i] = s < S && mask[(i64)b * S + s] != 0;
    #pragma unroll
    for (int c = 0; c < 4 * NJ; c++) { accK[i][c] = 0.f; accV[i][c] = 0.f; }
  }
  for (int vr0 = max(0, s0 - off) * G; vr0 < R; vr0 += BQC) {
    __syncthreads();
    load_qrows<HDP>(Qs, BQC, q, qdt, b, kh, vr0, R, G, T, H, hd);
    load_qrows<HDP>(Os, BQC, dout, ddt, b, kh, vr0, R, G, T, H, hd);
    if (threadIdx.x < BQC) {
      const int vr = vr0 + threadIdx.x;
      rowLim[threadIdx.x] = -1;
      rowLse[threadIdx.x] = NEG_INF;
      rowD[threadIdx.x] = 0.f;
      if (vr < R) {
        const int t = vr / G, h = kh * G + (vr - t * G);
        const i64 row = ((i64)b * T + t) * H + h;
        rowLim[threadIdx.x] = off + t;
        rowLse[threadIdx.x] = lse[row];
        rowD[threadIdx.x] = delta[row];
      }
    }
    __syncthreads();
    float sc[TM][TN], dp[TM][TN];
    dot_tile<TM, TN, HDP>(sc, Ks, Qs, ty, tx);
    dot_tile<TM, TN, HDP>(dp, Vs, Os, ty, tx);
    #pragma unroll
    for (int i = 0; i < TM; i++)
      #pragma unroll
      for (int j = 0; j < TN; j++) {
        const int c = tx + 8 * j;
        const float rl = rowLse[c];
        const bool vis = keyOk[i] && s0 + ty * TM + i <= rowLim[c] && rl != NEG_INF;
        const float p = vis ? expf(sc[i][j] * scale - rl) : 0.f;
        Ps[(ty * TM + i) * LDP + c] = p;
        Ds[(ty * TM + i) * LDP + c] = p * (dp[i][j] - rowD[c]) * scale;
      }
    __syncthreads();
    acc_tile<TM, NJ, BQC>(accV, Ps, Os, ty, tx);
    acc_tile<TM, NJ, BQC>(accK, Ds, Qs, ty, tx);
  }
  #pragma unroll
  for (int i = 0; i < TM; i++) {
    const int s = s0 + ty * TM + i;
    if (s >= S) continue;
    const i64 o = (((i64)b * S + s) * Hkv + kh) * hd;
    #pragma unroll
    for (int jj = 0; jj < NJ; jj++)
      #pragma unroll
      for (int c = 0; c < 4; c++) {
        const int d = jj * 32 + tx * 4 + c;
        if (d < hd) {
          stf(dk, dkdt, o + d, accK[i][jj * 4 + c]);
          stf(dv, dvdt, o + d, accV[i][jj * 4 + c]);
        }
      }
  }
}

/** delta[row] = sum_d dout[row][d] * out[row][d]; one warp per row. */
extern "C" __global__ void attn_bwd_delta(float* delta, const void* dout, int ddt, const void* out, int odt, i64 rows, int hd) {
  const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
  const int lane = threadIdx.x & 31;
  for (i64 r = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
    float s = 0.f;
    for (int d = lane; d < hd; d += 32) s += ldf(dout, ddt, r * hd + d) * ldf(out, odt, r * hd + d);
    s = warp_sum(s);
    if (lane == 0) delta[r] = s;
  }
}

`;

const ARGS =
  'const void* q, int qdt, const void* k, int kdt, const void* v, int vdt, const int* mask, int T, int S, int H, int Hkv, int hd, int kvLen, float scale';
const PASS = 'q, qdt, k, kdt, v, vdt, mask, T, S, H, Hkv, hd, kvLen, scale';

/** The extern "C" entry points of each head-size variant (written out so their signatures can be read). */
const INSTANCES = [1, 2, 4]
  .map(
    (nj) => `
extern "C" __global__ void __launch_bounds__(128) attn_fwd_${nj}(void* out, int odt, float* lse, ${ARGS}) {
  attn_fwd<${nj}>(out, odt, lse, ${PASS});
}
extern "C" __global__ void __launch_bounds__(128) attn_bwd_dq_${nj}(void* dq, int dqdt, const void* dout, int ddt, const float* delta, const float* lse, ${ARGS}) {
  attn_bwd_dq<${nj}>(dq, dqdt, dout, ddt, delta, lse, ${PASS});
}
extern "C" __global__ void __launch_bounds__(128) attn_bwd_dkdv_${nj}(void* dk, int dkdt, void* dv, int dvdt, const void* dout, int ddt, const float* delta, const float* lse, ${ARGS}) {
  attn_bwd_dkdv<${nj}>(dk, dkdt, dv, dvdt, dout, ddt, delta, lse, ${PASS});
}`,
  )
  .join('\n');

export const ATTENTION: KernelModule = kernelModule('attention', COMMON_CUDA + SOURCE + INSTANCES);
