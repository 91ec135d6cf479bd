/**
 * Row-wise kernels, one thread block per row: RMSNorm forward/backward, softmax cross-entropy
 * over a vocabulary row (one online max/sum pass, then the gradient pass), plus rotary
 * embedding and the two-stage sums (deterministic: fixed partial blocks, summed in doubles).
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

const SOURCE = String.raw`
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
  const float a = (float)pos[n] * invFreq[i];
  double sd, cd;
  sincos((double)a, &sd, &cd);
  const float c = (float)cd, s = sign * (float)sd;
  for (int h = 0; h < H; h++) {
    const i64 o = ((i64)n * H + h) * hd;
    const float x1 = ldf(x, xdt, o + i), x2 = ldf(x, xdt, o + i + half);
    stf(out, odt, o + i, x1 * c - x2 * s);
    stf(out, odt, o + i + half, x2 * c + x1 * s);
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
