/**
 * Kernels of the decoding loop, where a step handles one token per sequence and launches, not
 * arithmetic, set the pace:
 *
 *   attn_decode_N    one query token per sequence against the whole KV cache: one block per
 *                    (sequence, query head), its 4 warps split the key slots (4 slots in flight
 *                    per warp, a lane per 32nd head dim) with an online softmax each, merged at
 *                    the end; N = head dims / 32 rounded up (1, 2 or 4)
 *   attn_decode_bf16_N  the same for bf16 tensors and head dims of exactly 32 * N: each lane
 *                    loads N neighbouring dims at once and 8 slots are in flight per warp, so
 *                    the cache streams at a larger share of the memory bandwidth
 *   rope_append_kv   RoPE of the new queries (in place) and keys, keys and values stored in their
 *                    cache slots: one launch instead of two rotations and a copy per sequence
 *   add_rmsnorm      residual add and the next RMSNorm in one pass over the row
 *   argmax_partial / argmax_final   greedy token choice on the device, first index on ties
 *   copy_rows        whole rows by index, gathered (compacting the KV cache when sequences
 *                    finish) or scattered (the loss's gradient rows back among all rows)
 *   add_bias3        the biases of up to three projections in one launch (add_bias3_bf16x8:
 *                    16 bytes at a time where every tensor allows)
 *   add_i32          rotary positions advancing by one per step
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

/** Threads of attn_decode and the key slots each warp loads at once. */
export const DECODE_ATTENTION = { threads: 128, warps: 4, keysPerWarp: 4 } as const;

const SOURCE = String.raw`
#define FULL 0xffffffffu
#define DEC_WARPS 4
#define DEC_KEYS 4

template <int NJ>
__device__ void attn_decode(void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
                            const int* mask, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  __shared__ float wm[DEC_WARPS], wl[DEC_WARPS];
  __shared__ float wacc[DEC_WARPS][32 * NJ];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int bh = blockIdx.x, b = bh / H, h = bh - b * H, kh = h / (H / Hkv);
  float qf[NJ], acc[NJ];
  #pragma unroll
  for (int j = 0; j < NJ; j++) {
    const int d = j * 32 + lane;
    qf[j] = d < hd ? ldf(q, qdt, (i64)bh * hd + d) : 0.f;
    acc[j] = 0.f;
  }
  float m = NEG_INF, l = 0.f;
  for (int s0 = warp * DEC_KEYS; s0 < kvLen; s0 += DEC_WARPS * DEC_KEYS) {
    float kf[DEC_KEYS][NJ], vf[DEC_KEYS][NJ];
    bool ok[DEC_KEYS];
    #pragma unroll
    for (int u = 0; u < DEC_KEYS; u++) {
      const int s = s0 + u;
      ok[u] = s < kvLen && mask[(i64)b * S + s] != 0;
      const i64 o = (((i64)b * S + s) * Hkv + kh) * hd;
      #pragma unroll
      for (int j = 0; j < NJ; j++) {
        const int d = j * 32 + lane;
        const bool in = ok[u] && d < hd;
        kf[u][j] = in ? ldf(k, kdt, o + d) : 0.f;
        vf[u][j] = in ? ldf(v, vdt, o + d) : 0.f;
      }
    }
    float sc[DEC_KEYS], tmax = NEG_INF;
    #pragma unroll
    for (int u = 0; u < DEC_KEYS; u++) {
      float dot = 0.f;
      #pragma unroll
      for (int j = 0; j < NJ; j++) dot = fmaf(qf[j], kf[u][j], dot);
      // The butterfly leaves the same sum in every lane, so m and l stay uniform across the warp.
      dot = warp_sum(dot);
      sc[u] = ok[u] ? dot * scale : NEG_INF;
      tmax = fmaxf(tmax, sc[u]);
    }
    const float mnew = fmaxf(m, tmax);
    if (mnew == NEG_INF) continue;
    const float alpha = expf(m - mnew);
    float ps = 0.f;
    #pragma unroll
    for (int u = 0; u < DEC_KEYS; u++) {
      sc[u] = ok[u] ? expf(sc[u] - mnew) : 0.f;
      ps += sc[u];
    }
    l = l * alpha + ps;
    #pragma unroll
    for (int j = 0; j < NJ; j++) {
      float a = acc[j] * alpha;
      #pragma unroll
      for (int u = 0; u < DEC_KEYS; u++) a = fmaf(sc[u], vf[u][j], a);
      acc[j] = a;
    }
    m = mnew;
  }
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
  #pragma unroll
  for (int j = 0; j < NJ; j++) wacc[warp][j * 32 + lane] = acc[j];
  __syncthreads();
  if (warp != 0) return;
  float M = NEG_INF;
  for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, wm[w]);
  float L = 0.f, o[NJ];
  #pragma unroll
  for (int j = 0; j < NJ; j++) o[j] = 0.f;
  for (int w = 0; w < DEC_WARPS; w++) {
    if (wm[w] == NEG_INF) continue;
    const float f = expf(wm[w] - M);
    L += wl[w] * f;
    #pragma unroll
    for (int j = 0; j < NJ; j++) o[j] = fmaf(wacc[w][j * 32 + lane], f, o[j]);
  }
  const float inv = L > 0.f ? 1.f / L : 0.f;
  #pragma unroll
  for (int j = 0; j < NJ; j++) {
    const int d = j * 32 + lane;
    if (d < hd) stf(out, odt, (i64)bh * hd + d, o[j] * inv);
  }
  if (lane == 0) lse[bh] = L > 0.f ? M + logf(L) : NEG_INF;
}

extern "C" __global__ void __launch_bounds__(128) attn_decode_1(void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt, const int* mask, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  attn_decode<1>(out, odt, lse, q, qdt, k, kdt, v, vdt, mask, S, H, Hkv, hd, kvLen, scale);
}
extern "C" __global__ void __launch_bounds__(128) attn_decode_2(void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt, const int* mask, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  attn_decode<2>(out, odt, lse, q, qdt, k, kdt, v, vdt, mask, S, H, Hkv, hd, kvLen, scale);
}
extern "C" __global__ void __launch_bounds__(128) attn_decode_4(void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt, const int* mask, int S, int H, int Hkv, int hd, int kvLen, float scale) {
  attn_decode<4>(out, odt, lse, q, qdt, k, kdt, v, vdt, mask, S, H, Hkv, hd, kvLen, scale);
}

/** VEC neighbouring bf16 values loaded in one access (VEC * 2 bytes, aligned); kept packed until used. */
template <int VEC> struct Bf16Vec;
template <> struct Bf16Vec<4> {
  uint2 w;
  __device__ __forceinline__ void load(const u16* p) { w = *(const uint2*)p; }
  __device__ __forceinline__ void zero() { w.x = 0u; w.y = 0u; }
  __device__ __forceinline__ float at(int j) const { const unsigned x = j < 2 ? w.x : w.y; return bf16_to_f32((u16)((j & 1) ? x >> 16 : x & 0xffffu)); }
};
template <> struct Bf16Vec<2> {
  unsigned w;
  __device__ __forceinline__ void load(const u16* p) { w = *(const unsigned*)p; }
  __device__ __forceinline__ void zero() { w = 0u; }
  __device__ __forceinline__ float at(int j) const { return bf16_to_f32((u16)(j ? w >> 16 : w & 0xffffu)); }
};
template <> struct Bf16Vec<1> {
  u16 w;
  __device__ __forceinline__ void load(const u16* p) { w = *p; }
  __device__ __forceinline__ void zero() { w = 0; }
  __device__ __forceinline__ float at(int) const { return bf16_to_f32(w); }
};

#define DEC_KEYS_BF16 8

template <int VEC>
__device__ void attn_decode_bf16(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const int* mask,
                                 int S, int H, int Hkv, int kvLen, float scale) {
  constexpr int HD = 32 * VEC, KEYS = DEC_KEYS_BF16;
  __shared__ float wm[DEC_WARPS], wl[DEC_WARPS];
  __shared__ float wacc[DEC_WARPS][HD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int bh = blockIdx.x, b = bh / H, h = bh - b * H, kh = h / (H / Hkv);
  float qf[VEC], acc[VEC];
  Bf16Vec<VEC> qv;
  qv.load(q + (i64)bh * HD + lane * VEC);
  #pragma unroll
  for (int j = 0; j < VEC; j++) {
    qf[j] = qv.at(j);
    acc[j] = 0.f;
  }
  float m = NEG_INF, l = 0.f;
  for (int s0 = warp * KEYS; s0 < kvLen; s0 += DEC_WARPS * KEYS) {
    Bf16Vec<VEC> kr[KEYS], vr[KEYS];
    bool ok[KEYS];
    #pragma unroll
    for (int u = 0; u < KEYS; u++) {
      const int s = s0 + u;
      ok[u] = s < kvLen && mask[(i64)b * S + s] != 0;
      if (ok[u]) {
        const i64 o = (((i64)b * S + s) * Hkv + kh) * HD + lane * VEC;
        kr[u].load(k + o);
        vr[u].load(v + o);
      } else {
        kr[u].zero();
        vr[u].zero();
      }
    }
    float sc[KEYS], tmax = NEG_INF;
    #pragma unroll
    for (int u = 0; u < KEYS; u++) {
      float dot = 0.f;
      #pragma unroll
      for (int j = 0; j < VEC; j++) dot = fmaf(qf[j], kr[u].at(j), dot);
      dot = warp_sum(dot);
      sc[u] = ok[u] ? dot * scale : NEG_INF;
      tmax = fmaxf(tmax, sc[u]);
    }
    const float mnew = fmaxf(m, tmax);
    if (mnew == NEG_INF) continue;
    const float alpha = expf(m - mnew);
    float ps = 0.f;
    #pragma unroll
    for (int u = 0; u < KEYS; u++) {
      sc[u] = ok[u] ? expf(sc[u] - mnew) : 0.f;
      ps += sc[u];
    }
    l = l * alpha + ps;
    #pragma unroll
    for (int j = 0; j < VEC; j++) {
      float a = acc[j] * alpha;
      #pragma unroll
      for (int u = 0; u < KEYS; u++) a = fmaf(sc[u], vr[u].at(j), a);
      acc[j] = a;
    }
    m = mnew;
  }
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
  #pragma unroll
  for (int j = 0; j < VEC; j++) wacc[warp][lane * VEC + j] = acc[j];
  __syncthreads();
  if (warp != 0) return;
  float M = NEG_INF;
  for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, wm[w]);
  float L = 0.f, o[VEC];
  #pragma unroll
  for (int j = 0; j < VEC; j++) o[j] = 0.f;
  for (int w = 0; w < DEC_WARPS; w++) {
    if (wm[w] == NEG_INF) continue;
    const float f = expf(wm[w] - M);
    L += wl[w] * f;
    #pragma unroll
    for (int j = 0; j < VEC; j++) o[j] = fmaf(wacc[w][lane * VEC + j], f, o[j]);
  }
  const float inv = L > 0.f ? 1.f / L : 0.f;
  #pragma unroll
  for (int j = 0; j < VEC; j++) out[(i64)bh * HD + lane * VEC + j] = f32_to_bf16(o[j] * inv);
  if (lane == 0) lse[bh] = L > 0.f ? M + logf(L) : NEG_INF;
}

extern "C" __global__ void __launch_bounds__(128) attn_decode_bf16_1(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const int* mask, int S, int H, int Hkv, int kvLen, float scale) {
  attn_decode_bf16<1>(out, lse, q, k, v, mask, S, H, Hkv, kvLen, scale);
}
extern "C" __global__ void __launch_bounds__(128) attn_decode_bf16_2(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const int* mask, int S, int H, int Hkv, int kvLen, float scale) {
  attn_decode_bf16<2>(out, lse, q, k, v, mask, S, H, Hkv, kvLen, scale);
}
extern "C" __global__ void __launch_bounds__(128) attn_decode_bf16_4(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const int* mask, int S, int H, int Hkv, int kvLen, float scale) {
  attn_decode_bf16<4>(out, lse, q, k, v, mask, S, H, Hkv, kvLen, scale);
}

/**
 * The rope kernel's rotation (same angle and arithmetic), one thread per (token, frequency):
 * q rotated in place for its H heads, k rotated into the cache and v copied for the Hkv heads.
 * Token n = b*T + t goes to slot offset + t of sequence b.
 */
extern "C" __global__ void rope_append_kv(void* kc, int kcdt, void* vc, int vcdt, void* q, int qdt, const void* k, int kdt,
                                          const void* v, int vdt, const int* pos, const float* invFreq,
                                          int N, int T, int S, int offset, int H, int Hkv, int hd) {
  const int half = hd >> 1;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (i64)N * half) return;
  const int n = (int)(idx / half), i = (int)(idx % half);
  const float2 cs = rope_cos_sin(pos[n], invFreq[i]);
  const float c = cs.x, s = cs.y;
  for (int h = 0; h < H; h++) {
    const i64 o = ((i64)n * H + h) * hd;
    const float x1 = ldf(q, qdt, o + i), x2 = ldf(q, qdt, o + i + half);
    stf(q, qdt, o + i, x1 * c - x2 * s);
    stf(q, qdt, o + i + half, x2 * c + x1 * s);
  }
  const int b = n / T, t = n - b * T;
  const i64 slot = (i64)b * S + offset + t;
  for (int h = 0; h < Hkv; h++) {
    const i64 src = ((i64)n * Hkv + h) * hd, dst = (slot * Hkv + h) * hd;
    const float x1 = ldf(k, kdt, src + i), x2 = ldf(k, kdt, src + i + half);
    stf(kc, kcdt, dst + i, x1 * c - x2 * s);
    stf(kc, kcdt, dst + i + half, x2 * c + x1 * s);
    stf(vc, vcdt, dst + i, ldf(v, vdt, src + i));
    stf(vc, vcdt, dst + i + half, ldf(v, vdt, src + i + half));
  }
}

/** A float as a tensor of dtype dt stores it. */
__device__ __forceinline__ float rounded(float v, int dt) {
  if (dt == DT_BF16) return bf16_to_f32(f32_to_bf16(v));
  if (dt == DT_F16) return f16_to_f32(f32_to_f16(v));
  return v;
}

/**
 * One block per row: sum = a + b (stored), then rmsnorm_fwd of the stored sum with the same
 * thread layout and reduction, so the result equals add followed by rmsnorm_fwd bit for bit.
 * Each thread reads back only elements it wrote, so sum may alias a or b.
 */
extern "C" __global__ void add_rmsnorm(void* sum, int sdt, void* out, int odt, float* rstd, const void* a, int adt, const void* b, int bdt,
                                       const void* w, int wdt, int D, float eps) {
  __shared__ float scratch[32];
  const i64 o = (i64)blockIdx.x * D;
  float ss = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = rounded(ldf(a, adt, o + i) + ldf(b, bdt, o + i), sdt);
    stf(sum, sdt, o + i, v);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float r = 1.f / sqrtf(ss / (float)D + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int i = threadIdx.x; i < D; i += blockDim.x) stf(out, odt, o + i, ldf(sum, sdt, o + i) * r * ldf(w, wdt, i));
}

/** Whether candidate (v, i) beats (bv, bi): a larger value, or an equal one at a lower index; i < 0 is no candidate. */
__device__ __forceinline__ bool beats(float v, int i, float bv, int bi) {
  return i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi));
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(FULL, v, o);
    const int oi = __shfl_xor_sync(FULL, i, o);
    if (beats(ov, oi, v, i)) { v = ov; i = oi; }
  }
}

/** Block (c, n): the best of elements [c*chunk, (c+1)*chunk) of row n into partials[n*gridDim.x + c]. */
extern "C" __global__ void argmax_partial(const void* x, int dt, int V, int chunk, float* pval, int* pidx) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const int n = blockIdx.y, c = blockIdx.x;
  const i64 row = (i64)n * V;
  const int hi = min(V, (c + 1) * chunk);
  float bv = NEG_INF;
  int bi = -1;
  // Ascending indices per thread: only a strictly larger value replaces the best so far.
  for (int j = c * chunk + threadIdx.x; j < hi; j += blockDim.x) {
    const float v = ldf(x, dt, row + j);
    if (bi < 0 || v > bv) { bv = v; bi = j; }
  }
  warp_argmax(bv, bi);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
  __syncthreads();
  if (warp != 0) return;
  bv = lane < nw ? sv[lane] : NEG_INF;
  bi = lane < nw ? si[lane] : -1;
  warp_argmax(bv, bi);
  if (lane == 0) {
    pval[(i64)n * gridDim.x + c] = bv;
    pidx[(i64)n * gridDim.x + c] = bi;
  }
}

/** One warp per row: the best of its "chunks" partials; out[row] is 0 for an empty row. */
extern "C" __global__ void argmax_final(int* out, const float* pval, const int* pidx, int chunks, int N) {
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= N) return;
  float bv = NEG_INF;
  int bi = -1;
  for (int c = lane; c < chunks; c += 32) {
    const float v = pval[(i64)row * chunks + c];
    const int i = pidx[(i64)row * chunks + c];
    if (beats(v, i, bv, bi)) { bv = v; bi = i; }
  }
  warp_argmax(bv, bi);
  if (lane == 0) out[row] = bi < 0 ? 0 : bi;
}

/**
 * Row i of out = row index[i] of src (gather), or row index[i] of out = row i of src (scatter),
 * rows of "words" units of "unit" bytes (16, 4, 2 or 1: the widest that row size and addresses
 * allow). Grid (x, N); an index outside [0, rows) (rows of the indexed tensor) sets error word 3
 * and copies nothing for it.
 */
extern "C" __global__ void copy_rows(void* out, const void* src, const int* index, i64 words, int unit, int rows, int scatter, int* err) {
  const int i = blockIdx.y, r = index[i];
  if (r < 0 || r >= rows) {
    if (threadIdx.x == 0 && blockIdx.x == 0) atomicExch(err, 3);
    return;
  }
  const i64 o = (i64)(scatter ? r : i) * words, s = (i64)(scatter ? i : r) * words;
  for (i64 w = (i64)blockIdx.x * blockDim.x + threadIdx.x; w < words; w += (i64)gridDim.x * blockDim.x) {
    if (unit == 16) ((uint4*)out)[o + w] = ((const uint4*)src)[s + w];
    else if (unit == 4) ((unsigned*)out)[o + w] = ((const unsigned*)src)[s + w];
    else if (unit == 2) ((u16*)out)[o + w] = ((const u16*)src)[s + w];
    else ((unsigned char*)out)[o + w] = ((const unsigned char*)src)[s + w];
  }
}

/** Bias rows added to up to three outputs in one launch (x[i] += bias[i % D]); an absent one has n = 0. */
extern "C" __global__ void add_bias3(void* x0, int xdt0, const void* b0, int bdt0, i64 n0, int D0,
                                     void* x1, int xdt1, const void* b1, int bdt1, i64 n1, int D1,
                                     void* x2, int xdt2, const void* b2, int bdt2, i64 n2, int D2) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n0 + n1 + n2; i += (i64)gridDim.x * blockDim.x) {
    if (i < n0) stf(x0, xdt0, i, ldf(x0, xdt0, i) + ldf(b0, bdt0, i % D0));
    else if (i < n0 + n1) { const i64 j = i - n0; stf(x1, xdt1, j, ldf(x1, xdt1, j) + ldf(b1, bdt1, j % D1)); }
    else { const i64 j = i - n0 - n1; stf(x2, xdt2, j, ldf(x2, xdt2, j) + ldf(b2, bdt2, j % D2)); }
  }
}

/**
 * add_bias3 for bf16 outputs and biases of whole 16-byte chunks (n8, D8 in chunks of 8): the
 * outputs of training-sized projections, where the generic kernel's per-element index
 * arithmetic made it compute-bound.
 */
extern "C" __global__ void add_bias3_bf16x8(uint4* x0, const uint4* b0, i64 n0, int D0, uint4* x1, const uint4* b1, i64 n1, int D1,
                                            uint4* x2, const uint4* b2, i64 n2, int D2) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n0 + n1 + n2; i += (i64)gridDim.x * blockDim.x) {
    uint4* x = x0;
    const uint4* b = b0;
    i64 j = i;
    int D = D0;
    if (j >= n0) {
      j -= n0;
      if (j < n1) { x = x1; b = b1; D = D1; } else { j -= n1; x = x2; b = b2; D = D2; }
    }
    add_bias8(x, b, j, D);
  }
}

extern "C" __global__ void add_i32(int* x, int value, i64 n) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) x[i] += value;
}
`;

export const DECODE: KernelModule = kernelModule('decode', COMMON_CUDA + SOURCE);
