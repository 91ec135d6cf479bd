/**
 * Row kernels of the matrix-product attention path (../attention-gemm.ts), which computes the
 * scaled scores of a chunk of sequences with cuBLAS into an f32 buffer [rows = (b, h, t), L],
 * L = kvLen. One block per score row; key s is visible to time t when s <= kvLen - T + t and
 * keyMask[b, s] != 0.
 *
 *   attn_softmax       P = softmax over visible keys (0 elsewhere), lse saved (-inf, P = 0 for
 *                      a row that sees no key)
 *   attn_grad_scores   P = exp(S - lse) recomputed, dS = P * (dP - delta) * scale
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

const SOURCE = String.raw`
struct RowInfo { i64 lseIndex; int lim; const int* mask; };

/** Score row r of a chunk starting at batch b0: its lse slot, last visible slot and mask row. */
__device__ __forceinline__ RowInfo row_info(int r, int b0, int T, int S, int H, int kvLen, const int* mask) {
  const int t = r % T, bh = r / T, h = bh % H, b = b0 + bh / H;
  RowInfo info;
  info.lseIndex = ((i64)b * T + t) * H + h;
  info.lim = kvLen - T + t;
  info.mask = mask + (i64)b * S;
  return info;
}

extern "C" __global__ void attn_softmax(void* P, int pdt, float* lse, const float* scores, const int* mask,
                                        int b0, int T, int S, int H, int kvLen) {
  __shared__ float scratch[32];
  const RowInfo info = row_info(blockIdx.x, b0, T, S, H, kvLen, mask);
  const i64 o = (i64)blockIdx.x * kvLen;
  float m = NEG_INF;
  for (int s = threadIdx.x; s < kvLen; s += blockDim.x)
    if (s <= info.lim && info.mask[s] != 0) m = fmaxf(m, scores[o + s]);
  m = warp_max(m);
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = m;
  __syncthreads();
  m = NEG_INF;
  for (int w = 0; w < (int)(blockDim.x >> 5); w++) m = fmaxf(m, scratch[w]);
  float sum = 0.f;
  if (m != NEG_INF)
    for (int s = threadIdx.x; s < kvLen; s += blockDim.x)
      if (s <= info.lim && info.mask[s] != 0) sum += expf(scores[o + s] - m);
  sum = block_sum(sum, scratch);
  const float l = m == NEG_INF ? NEG_INF : m + logf(sum);
  if (threadIdx.x == 0) lse[info.lseIndex] = l;
  for (int s = threadIdx.x; s < kvLen; s += blockDim.x)
    stf(P, pdt, o + s, (l != NEG_INF && s <= info.lim && info.mask[s] != 0) ? expf(scores[o + s] - l) : 0.f);
}

extern "C" __global__ void attn_grad_scores(void* P, void* dS, int dt, const float* scores, const float* dP, const float* lse,
                                            const float* delta, const int* mask, int b0, int T, int S, int H, int kvLen, float scale) {
  const RowInfo info = row_info(blockIdx.x, b0, T, S, H, kvLen, mask);
  const i64 o = (i64)blockIdx.x * kvLen;
  const float l = lse[info.lseIndex], d = delta[info.lseIndex];
  for (int s = threadIdx.x; s < kvLen; s += blockDim.x) {
    const float p = (l != NEG_INF && s <= info.lim && info.mask[s] != 0) ? expf(scores[o + s] - l) : 0.f;
    stf(P, dt, o + s, p);
    stf(dS, dt, o + s, p * (dP[o + s] - d) * scale);
  }
}
`;

export const ATTENTION_SCORES: KernelModule = kernelModule('attention-scores', COMMON_CUDA + SOURCE);
