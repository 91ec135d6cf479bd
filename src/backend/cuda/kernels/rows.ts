/**
 * Row-wise kernels, one thread block per row: RMSNorm forward/backward, softmax cross-entropy
 * over a vocabulary row (one online max/sum pass, then the gradient pass; on sm_90 a cluster of
 * blocks a row, in one read), plus rotary embedding and the two-stage sums (deterministic: fixed partial blocks, summed in doubles).
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

/** Heads a rope_bf16x8 thread rotates between loads (it loops over all of a token's heads). */
export const ROPE_HEADS = 4;
/** 16-byte chunks of a row each thread of the bf16 norm kernels keeps in registers (rows of D <= 8 x this x threads). */
export const NORM_ROW_CHUNKS = 4;
/** Blocks a row and 16-byte chunks a thread of cross_entropy_bf16x8_cluster. */
export const CE_CLUSTER = { blocks: 8, perThread: 8 } as const;

const SOURCE = String.raw`
#define NORM_ROW_CHUNKS ${NORM_ROW_CHUNKS}
extern "C" __global__ void rmsnorm_fwd(void* out, int odt, float* rstd, const void* x, int xdt, const void* w, int wdt, int D, float eps) {
  __shared__ float scratch[32];
  const i64 o = (i64)blockIdx.x * D;
  float ss = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) { const float v = ldf(x, xdt, o + i); ss += v * v; }
  ss = block_sum(ss, scratch);
  const float r = 1.f / sqrtf(ss / (float)D + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int i = threadIdx.x; i < D; i += blockDim.x) stf(out, odt, o + i, ldf(x, xdt, o + i) * r * ldf(w, wdt, i));
}

/**
 * RMSNorm of bf16 rows, D = 8 * D8 <= 8 * NORM_ROW_CHUNKS * blockDim, 16-byte accesses, the
 * row's chunks kept in registers for the second pass. With ADD the row is a + b, rounded to
 * bf16 and stored in sum first (sum may alias a or b), and the squares are summed in the same
 * order as without, so add_rmsnorm_bf16x8 equals add followed by rmsnorm_fwd_bf16x8 bit for bit.
 */
template <bool ADD>
__device__ __forceinline__ void rmsnorm_rows8(uint4* sum, uint4* out, float* rstd, const uint4* a, const uint4* b, const uint4* w, int D8, float eps) {
  __shared__ float scratch[32];
  const i64 o = (i64)blockIdx.x * D8;
  uint4 kept[NORM_ROW_CHUNKS];
  float ss = 0.f;
  #pragma unroll
  for (int k = 0; k < NORM_ROW_CHUNKS; k++) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i >= D8) break;
    float v[8];
    if constexpr (ADD) {
      float u[8];
      unpack8(a[o + i], v);
      unpack8(b[o + i], u);
      #pragma unroll
      for (int e = 0; e < 8; e++) v[e] += u[e];
      kept[k] = pack8(v);
      sum[o + i] = kept[k];
    } else {
      kept[k] = a[o + i];
    }
    unpack8(kept[k], v);
    #pragma unroll
    for (int e = 0; e < 8; e++) ss += v[e] * v[e];
  }
  ss = block_sum(ss, scratch);
  const float r = 1.f / sqrtf(ss / (float)(8 * D8) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  #pragma unroll
  for (int k = 0; k < NORM_ROW_CHUNKS; k++) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i >= D8) break;
    float v[8], ww[8];
    unpack8(kept[k], v);
    unpack8(w[i], ww);
    #pragma unroll
    for (int e = 0; e < 8; e++) v[e] = v[e] * r * ww[e];
    out[o + i] = pack8(v);
  }
}

/** rmsnorm_fwd for bf16 x, out and w (see rmsnorm_rows8). */
extern "C" __global__ void rmsnorm_fwd_bf16x8(uint4* out, float* rstd, const uint4* x, const uint4* w, int D8, float eps) {
  rmsnorm_rows8<false>(nullptr, out, rstd, x, nullptr, w, D8, eps);
}

/** decode.ts's add_rmsnorm for bf16 tensors (see rmsnorm_rows8). */
extern "C" __global__ void add_rmsnorm_bf16x8(uint4* sum, uint4* out, float* rstd, const uint4* a, const uint4* b, const uint4* w, int D8, float eps) {
  rmsnorm_rows8<true>(sum, out, rstd, a, b, w, D8, eps);
}

/** dx_i (+)= r w_i dy_i - x_i r^3 / D * sum_j w_j dy_j x_j. */
extern "C" __global__ void rmsnorm_bwd(void* dx, int dxdt, const void* dout, int ddt, const void* x, int xdt, const void* w, int wdt,
                                       const float* rstd, int D, int accumulate) {
  __shared__ float scratch[32];
  const i64 o = (i64)blockIdx.x * D;
  float dot = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) dot += ldf(w, wdt, i) * ldf(dout, ddt, o + i) * ldf(x, xdt, o + i);
  dot = block_sum(dot, scratch);
  const float r = rstd[blockIdx.x];
  const float c = dot * r * r * r / (float)D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    float g = r * ldf(w, wdt, i) * ldf(dout, ddt, o + i) - ldf(x, xdt, o + i) * c;
    if (accumulate) g += ldf(dx, dxdt, o + i);
    stf(dx, dxdt, o + i, g);
  }
}

/** rmsnorm_bwd for bf16 tensors, D = 8 * D8: 16-byte accesses (dx must not alias dout or x). */
extern "C" __global__ void rmsnorm_bwd_bf16x8(uint4* dx, const uint4* dout, const uint4* x, const uint4* w, const float* rstd, int D8, int accumulate) {
  __shared__ float scratch[32];
  const i64 o = (i64)blockIdx.x * D8;
  float dot = 0.f;
  for (int i = threadIdx.x; i < D8; i += blockDim.x) {
    float ww[8], dy[8], xv[8];
    unpack8(w[i], ww);
    unpack8(dout[o + i], dy);
    unpack8(x[o + i], xv);
    #pragma unroll
    for (int k = 0; k < 8; k++) dot += ww[k] * dy[k] * xv[k];
  }
  dot = block_sum(dot, scratch);
  const float r = rstd[blockIdx.x];
  const float c = dot * r * r * r / (float)(8 * D8);
  for (int i = threadIdx.x; i < D8; i += blockDim.x) {
    float ww[8], dy[8], xv[8], acc[8];
    unpack8(w[i], ww);
    unpack8(dout[o + i], dy);
    unpack8(x[o + i], xv);
    if (accumulate) unpack8(dx[o + i], acc);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
      const float gk = r * ww[k] * dy[k] - xv[k] * c;
      acc[k] = accumulate ? gk + acc[k] : gk;
    }
    dx[o + i] = pack8(acc);
  }
}

/**
 * rotate_half RoPE; one thread per (token, frequency) pair, looping over heads. The angle is
 * rounded to f32 as HF's f32 product of positions and inverse frequencies; its sine and cosine
 * are taken in doubles. sign = -1 rotates back (the backward pass). out may alias x.
 */
extern "C" __global__ void rope(void* out, int odt, const void* x, int xdt, const int* pos, const float* invFreq,
                                int N, int H, int hd, float sign) {
  const int half = hd >> 1;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (i64)N * half) return;
  const int n = (int)(idx / half), i = (int)(idx % half);
  const float2 cs = rope_cos_sin(pos[n], invFreq[i]);
  const float c = cs.x, s = sign * cs.y;
  for (int h = 0; h < H; h++) {
    const i64 o = ((i64)n * H + h) * hd;
    const float x1 = ldf(x, xdt, o + i), x2 = ldf(x, xdt, o + i + half);
    stf(out, odt, o + i, x1 * c - x2 * s);
    stf(out, odt, o + i + half, x2 * c + x1 * s);
  }
}

/** RoPE's (cosine, sine) for positions [0, P) and the half = hd / 2 inverse frequencies: tab [P, half]. */
extern "C" __global__ void rope_table(float2* tab, const float* invFreq, int P, int half) {
  const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (i64)P * half) return;
  const int p = (int)(i / half);
  tab[i] = rope_cos_sin(p, invFreq[i - (i64)p * half]);
}

/**
 * rope for bf16 tensors with half a head a multiple of 8: one thread per token and 8
 * frequencies, looping over the token's heads ROPE_HEADS at a time with 16-byte accesses. Each
 * thread takes its 8 sines and cosines once for all heads (their double-precision range
 * reduction was most of the kernel's issue slots when a thread took them per group of heads), and
 * issues the next group's loads before the current group's stores (out may alias x, so the
 * compiler cannot hoist them itself). With bias (bf16 [H * hd]), rotates x + bias, rounded to
 * bf16 first as a separate add would store it.
 */
#define ROPE_HEADS ${ROPE_HEADS}
extern "C" __global__ void __launch_bounds__(256) rope_bf16x8(u16* out, const u16* x, const u16* bias, const int* pos, const float* invFreq, int N, int H, int hd, float sign) {
  const int half = hd >> 1, c8 = half >> 3;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (i64)N * c8) return;
  const int i0 = (int)(idx % c8) * 8, n = (int)(idx / c8);
  const i64 row = (i64)n * H * hd + i0;
  uint4 lo[ROPE_HEADS], hi[ROPE_HEADS], nlo[ROPE_HEADS], nhi[ROPE_HEADS];
  auto load = [&](uint4 (&l)[ROPE_HEADS], uint4 (&r)[ROPE_HEADS], int h0) {
    #pragma unroll
    for (int g = 0; g < ROPE_HEADS; g++) {
      if (h0 + g < H) {
        l[g] = *(const uint4*)(x + row + (i64)(h0 + g) * hd);
        r[g] = *(const uint4*)(x + row + (i64)(h0 + g) * hd + half);
      }
    }
  };
  load(nlo, nhi, 0);
  float c[8], s[8];
  #pragma unroll
  for (int k = 0; k < 8; k++) {
    const float2 cs = rope_cos_sin(pos[n], invFreq[i0 + k]);
    c[k] = cs.x;
    s[k] = sign * cs.y;
  }
  for (int h0 = 0; h0 < H; h0 += ROPE_HEADS) {
    #pragma unroll
    for (int g = 0; g < ROPE_HEADS; g++) lo[g] = nlo[g], hi[g] = nhi[g];
    if (h0 + ROPE_HEADS < H) load(nlo, nhi, h0 + ROPE_HEADS);
    #pragma unroll
    for (int g = 0; g < ROPE_HEADS; g++) {
      const int h = h0 + g;
      if (h >= H) break;
      float x1[8], x2[8];
      unpack8(lo[g], x1);
      unpack8(hi[g], x2);
      if (bias) {
        float b1[8], b2[8];
        unpack8(*(const uint4*)(bias + h * hd + i0), b1);
        unpack8(*(const uint4*)(bias + h * hd + i0 + half), b2);
        #pragma unroll
        for (int k = 0; k < 8; k++) {
          x1[k] = bf16_to_f32(f32_to_bf16(x1[k] + b1[k]));
          x2[k] = bf16_to_f32(f32_to_bf16(x2[k] + b2[k]));
        }
      }
      float y1[8], y2[8];
      #pragma unroll
      for (int k = 0; k < 8; k++) {
        y1[k] = x1[k] * c[k] - x2[k] * s[k];
        y2[k] = x2[k] * c[k] + x1[k] * s[k];
      }
      *(uint4*)(out + row + (i64)h * hd) = pack8(y1);
      *(uint4*)(out + row + (i64)h * hd + half) = pack8(y2);
    }
  }
}

__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  if (M == NEG_INF) return;
  s = (m == NEG_INF ? 0.f : s * expf(m - M)) + (m2 == NEG_INF ? 0.f : s2 * expf(m2 - M));
  m = M;
}

/**
 * One block per row of V logits. losses[row] = logsumexp - logit[target]; with hasGrad,
 * dlogits = gradScale * (softmax - onehot), written after the whole row was read, so dlogits
 * may alias logits. Negative targets are ignored (loss 0, zero gradient row); a target >= V
 * sets error word 2.
 */
extern "C" __global__ void cross_entropy(float* losses, const void* logits, int ldt, const int* targets, void* dlogits, int ddt,
                                         int hasGrad, float gradScale, int V, int* err) {
  __shared__ float sm[32], ss[32];
  __shared__ float targetLogit;
  const i64 o = (i64)blockIdx.x * V;
  const int t = targets[blockIdx.x];
  if (t < 0 || t >= V) {
    if (threadIdx.x == 0) {
      losses[blockIdx.x] = t < 0 ? 0.f : __int_as_float(0x7fc00000);
      if (t >= V) atomicExch(err, 2);
    }
    if (hasGrad) for (int j = threadIdx.x; j < V; j += blockDim.x) stf(dlogits, ddt, o + j, 0.f);
    return;
  }
  if (threadIdx.x == 0) targetLogit = ldf(logits, ldt, o + t);
  float m = NEG_INF, s = 0.f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float x = ldf(logits, ldt, o + j);
    if (x > m) { s = s * expf(m - x) + 1.f; m = x; }
    else if (x != NEG_INF) s += expf(x - m);
  }
  for (int d = 16; d > 0; d >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, d), s2 = __shfl_xor_sync(0xffffffffu, s, d);
    lse_merge(m, s, m2, s2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) { sm[warp] = m; ss[warp] = s; }
  __syncthreads();
  m = NEG_INF; s = 0.f;
  for (int w = 0; w < nw; w++) lse_merge(m, s, sm[w], ss[w]);
  const float lse = m + logf(s);
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - targetLogit;
  if (!hasGrad) return;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    float d = expf(ldf(logits, ldt, o + j) - lse) * gradScale;
    if (j == t) d -= gradScale;
    stf(dlogits, ddt, o + j, d);
  }
}

/**
 * cross_entropy for bf16 logits (and dlogits) with V = 8 * V8: 16-byte accesses. dlogits may
 * alias logits (each thread reads a chunk before writing it).
 */
extern "C" __global__ void cross_entropy_bf16x8(float* losses, const uint4* logits, const int* targets, uint4* dlogits, int hasGrad,
                                                float gradScale, int V8, int* err) {
  __shared__ float sm[32], ss[32];
  __shared__ float targetLogit;
  const int V = 8 * V8;
  const i64 o = (i64)blockIdx.x * V8;
  const int t = targets[blockIdx.x];
  if (t < 0 || t >= V) {
    if (threadIdx.x == 0) {
      losses[blockIdx.x] = t < 0 ? 0.f : __int_as_float(0x7fc00000);
      if (t >= V) atomicExch(err, 2);
    }
    if (hasGrad) for (int j = threadIdx.x; j < V8; j += blockDim.x) dlogits[o + j] = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  if (threadIdx.x == 0) targetLogit = bf16_to_f32(((const u16*)logits)[(i64)blockIdx.x * V + t]);
  float m = NEG_INF, s = 0.f;
  for (int j = threadIdx.x; j < V8; j += blockDim.x) {
    float v[8];
    unpack8(logits[o + j], v);
    float mx = v[0];
    #pragma unroll
    for (int k = 1; k < 8; k++) mx = fmaxf(mx, v[k]);
    if (mx > m) { s = m == NEG_INF ? 0.f : s * expf(m - mx); m = mx; }
    if (m != NEG_INF) {
      #pragma unroll
      for (int k = 0; k < 8; k++) s += expf(v[k] - m);
    }
  }
  for (int d = 16; d > 0; d >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, d), s2 = __shfl_xor_sync(0xffffffffu, s, d);
    lse_merge(m, s, m2, s2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) { sm[warp] = m; ss[warp] = s; }
  __syncthreads();
  m = NEG_INF; s = 0.f;
  for (int w = 0; w < nw; w++) lse_merge(m, s, sm[w], ss[w]);
  const float lse = m + logf(s);
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - targetLogit;
  if (!hasGrad) return;
  for (int j = threadIdx.x; j < V8; j += blockDim.x) {
    float v[8];
    unpack8(logits[o + j], v);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
      v[k] = expf(v[k] - lse) * gradScale;
      if (j * 8 + k == t) v[k] -= gradScale;
    }
    dlogits[o + j] = pack8(v);
  }
}

#if __CUDA_ARCH__ >= 900
#define CE_CLUSTER ${CE_CLUSTER.blocks}
#define CE_PER_THREAD ${CE_CLUSTER.perThread}
#define CE_LOG2E 1.4426950408889634f

__device__ float block_max(float v, float* scratch) {
  for (int d = 16; d > 0; d >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : NEG_INF;
  for (int d = 16; d > 0; d >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
  return v;
}

#ifndef SQLORA_EMULATOR  // tools/cuda-emulator/device-runtime.h: clusters are not emulated
/** Every thread of every block of the cluster arrives; shared writes before it are visible after. */
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

/** p (a shared address of this block) in the cluster's block of that rank. */
__device__ __forceinline__ float ld_cluster(const float* p, int rank) {
  unsigned a, ra;
  float v;
  asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(ra) : "r"(a), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(ra) : "memory");
  return v;
}
#endif

/**
 * fn(j, v) for each of a thread's 16-byte chunks j (of j0 + k * blockDim + threadIdx, k <
 * CE_PER_THREAD) in [j0, j1), held in r, with its 8 values in v. A template rather than a
 * generic lambda: NVRTC treats a generic lambda's call operator as host code.
 */
template <typename F>
__device__ __forceinline__ void ce_chunks(const uint4 (&r)[CE_PER_THREAD], int j0, int j1, F fn) {
  #pragma unroll
  for (int k = 0; k < CE_PER_THREAD; k++) {
    const int j = j0 + k * blockDim.x + threadIdx.x;
    if (j < j1) {
      float v[8];
      unpack8(r[k], v);
      fn(j, v);
    }
  }
}

/**
 * cross_entropy_bf16x8 in one read of the logits: a cluster of CE_CLUSTER blocks per row, each
 * holding its slice in registers (at most CE_PER_THREAD 16-byte chunks a thread) while the
 * blocks' (max, sum of exp) are merged through distributed shared memory; the gradient is then
 * written from the registers. Grid: CE_CLUSTER blocks per row. dlogits may alias logits.
 */
extern "C" __global__ void __cluster_dims__(CE_CLUSTER, 1, 1) __launch_bounds__(320, 4)
cross_entropy_bf16x8_cluster(float* losses, const uint4* logits, const int* targets, uint4* dlogits, int hasGrad,
                             float gradScale, int V8, int* err) {
  __shared__ float scratch[32];
  __shared__ float part[2];
  const int row = blockIdx.x / CE_CLUSTER, rank = blockIdx.x % CE_CLUSTER;
  const int V = 8 * V8, per = (V8 + CE_CLUSTER - 1) / CE_CLUSTER;
  const int j0 = rank * per, j1 = min(V8, j0 + per);
  const i64 o = (i64)row * V8;
  const int t = targets[row];
  if (t < 0 || t >= V) {  // the same for the whole cluster: none of it reaches a cluster barrier
    if (rank == 0 && threadIdx.x == 0) {
      losses[row] = t < 0 ? 0.f : __int_as_float(0x7fc00000);
      if (t >= V) atomicExch(err, 2);
    }
    if (hasGrad) for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) dlogits[o + j] = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  // Read before any block of the cluster may overwrite it with the gradient.
  const float targetLogit = rank == 0 && threadIdx.x == 0 ? bf16_to_f32(((const u16*)logits)[(i64)row * V + t]) : 0.f;
  uint4 r[CE_PER_THREAD];
  #pragma unroll
  for (int k = 0; k < CE_PER_THREAD; k++) {
    const int j = j0 + k * blockDim.x + threadIdx.x;
    if (j < j1) r[k] = logits[o + j];
  }
  float m = NEG_INF;
  ce_chunks(r, j0, j1, [&](int, float (&v)[8]) {
    #pragma unroll
    for (int q = 0; q < 8; q++) m = fmaxf(m, v[q]);
  });
  m = block_max(m, scratch);
  // exp2 of one FMA per element: with expf's accurate range reduction this kernel was bound by
  // its arithmetic rather than by memory (ncu on an H200).
  float s = 0.f;
  if (m != NEG_INF) {
    const float mLog2 = m * CE_LOG2E;
    ce_chunks(r, j0, j1, [&](int, float (&v)[8]) {
      #pragma unroll
      for (int q = 0; q < 8; q++) s += exp2_ftz(fmaf(v[q], CE_LOG2E, -mLog2));
    });
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) { part[0] = m; part[1] = s; }
  cluster_sync();
  float M = NEG_INF, S = 0.f;
  #pragma unroll
  for (int c = 0; c < CE_CLUSTER; c++) lse_merge(M, S, ld_cluster(&part[0], c), ld_cluster(&part[1], c));
  cluster_sync();  // no block leaves while another may still read its part
  const float lse = M + logf(S);
  if (rank == 0 && threadIdx.x == 0) losses[row] = lse - targetLogit;
  if (!hasGrad) return;
  // gradScale * exp(v - lse) = exp2(v log2 e + log2(gradScale) - lse log2 e).
  const float shift = log2f(gradScale) - lse * CE_LOG2E;
  ce_chunks(r, j0, j1, [&](int j, float (&v)[8]) {
    const int tq = t - j * 8;
    #pragma unroll
    for (int q = 0; q < 8; q++) {
      v[q] = exp2_ftz(fmaf(v[q], CE_LOG2E, shift));
      if (q == tq) v[q] -= gradScale;
    }
    dlogits[o + j] = pack8(v);
  });
}
#endif

__device__ double block_sum_d(double v, double* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/** partial[block] = sum over a fixed grid-stride share of x (of x^2 with squares). */
extern "C" __global__ void reduce_partial(const void* x, int dt, i64 n, int squares, double* partial) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const double v = ldf(x, dt, i);
    s += squares ? v * v : v;
  }
  s = block_sum_d(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/** out[0] = (out[0] if accumulate) + the sum of count partials; one block. */
extern "C" __global__ void reduce_final(const double* partial, int count, float* out, int accumulate) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum_d(s, scratch);
  if (threadIdx.x == 0) out[0] = (float)(accumulate ? (double)out[0] + s : s);
}
`;

export const ROWS: KernelModule = kernelModule('rows', COMMON_CUDA + SOURCE);
