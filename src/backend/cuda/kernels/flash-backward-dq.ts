/**
 * The flash-attention backward's dQ kernels (CUDA C, after flash-helpers.ts): one recomputing S
 * and dP per key tile, one reading the dS that the dK/dV kernel stored.
 */

export const FLASH_BACKWARD_DQ_CUDA = String.raw`
template <int HD>
__device__ __forceinline__ void flash_bwd_dq(u16* dQ, const u16* dO, const float* delta, const float* lse2,
                                             const u16* Q, const u16* K, const u16* V, const int* mask,
                                             int T, int S, int H, int Hkv, int kvLen, float scale, const int* ropePos, const float2* ropeCS, int ropeP, const float* ropeInv) {
  constexpr int LD = HD + 8, NT = HD / 8, KC = HD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sQ = (u16*)smem_raw;
  u16* sO = sQ + 64 * LD;
  u16* sK = sO + 64 * LD;        // [2][64][LD]
  u16* sV = sK + 2 * 64 * LD;    // [2][64][LD]
  float* sL = (float*)(sV + 2 * 64 * LD);
  float* sD = sL + 64;
  int* sMask = (int*)(sD + 64);  // [2][64]
  const int b = blockIdx.y / H, h = blockIdx.y - b * H, kh = h / (H / Hkv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * 64, offset = kvLen - T;  // the longest rows (last tiles) first
  const i64 qStride = (i64)H * HD, kvStride = (i64)Hkv * HD;
  const int kEnd = min(kvLen, offset + min(q0 + 64, T));
  const int tiles = (kEnd + 63) / 64;
  const u16* Kb = K + ((i64)b * S * Hkv + kh) * HD;
  const u16* Vb = V + ((i64)b * S * Hkv + kh) * HD;
  const TileLoader<HD, 64> qLoad(qStride), kLoad(kvStride);
  qLoad.load(smem_u32(sQ), Q + (((i64)b * T + q0) * H + h) * HD, T - q0);
  qLoad.load(smem_u32(sO), dO + (((i64)b * T + q0) * H + h) * HD, T - q0);
  if (threadIdx.x < 64) {
    const bool ok = q0 + threadIdx.x < T;
    const i64 row = ((i64)b * T + q0 + threadIdx.x) * H + h;
    sL[threadIdx.x] = ok ? lse2[row] : -NEG_INF;
    sD[threadIdx.x] = ok ? delta[row] : 0.f;
  }
  if (tiles > 0) {
    kLoad.load(smem_u32(sK), Kb, kvLen);
    kLoad.load(smem_u32(sV), Vb, kvLen);
    load_mask(sMask, mask, b, S, 0, 64, kvLen);
  }
  cp_commit();
  const float sl = scale * LOG2E;
  float dq[NT][4];
  zero_acc(dq);
  const int rr[2] = {warp * 16 + g, warp * 16 + g + 8};
  for (int it = 0; it < tiles; it++) {
    const int buf = it & 1, s0 = it * 64;
    if (it + 1 < tiles) {
      kLoad.load(smem_u32(sK + (buf ^ 1) * 64 * LD), Kb + (s0 + 64) * kvStride, kvLen - s0 - 64);
      kLoad.load(smem_u32(sV + (buf ^ 1) * 64 * LD), Vb + (s0 + 64) * kvStride, kvLen - s0 - 64);
      load_mask(sMask + (buf ^ 1) * 64, mask, b, S, s0 + 64, 64, kvLen);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    const u16* tK = sK + buf * 64 * LD;
    const u16* tV = sV + buf * 64 * LD;
    const int* tM = sMask + buf * 64;
    float s[8][4], dp[8][4];
    zero_acc(s);
    zero_acc(dp);
    #pragma unroll
    for (int kc = 0; kc < KC; kc++) {
      unsigned aq[4], ao[4];
      frag_a(aq, sQ, LD, warp * 16, kc * 16, lane);
      frag_a(ao, sO, LD, warp * 16, kc * 16, lane);
      #pragma unroll
      for (int j = 0; j < 8; j += 2) {
        unsigned bk[4], bv[4];
        frag_b_nk(bk, tK, LD, j * 8, kc * 16, lane);
        frag_b_nk(bv, tV, LD, j * 8, kc * 16, lane);
        mma_bf16(s[j], aq, bk[0], bk[1]);
        mma_bf16(s[j + 1], aq, bk[2], bk[3]);
        mma_bf16(dp[j], ao, bv[0], bv[1]);
        mma_bf16(dp[j + 1], ao, bv[2], bv[3]);
      }
    }
    #pragma unroll
    for (int j = 0; j < 8; j++) {
      #pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = rr[e >> 1], q = q0 + r, key = j * 8 + 2 * t + (e & 1);
        const bool vis = q < T && tM[key] != 0 && s0 + key <= offset + q;
        const float p = vis ? exp2_ftz(fmaf(s[j][e], sl, -sL[r])) : 0.f;
        s[j][e] = p * fmaf(dp[j][e], scale, -sD[r]);
      }
    }
    #pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      unsigned a[4];
      acc_to_a(a, s[2 * kk], s[2 * kk + 1]);
      mma_a_kn(dq, a, smem_u32(tK) + ldsm_lane_rows(LD, lane) + tile_at(LD, kk * 16, 0));
    }
    __syncthreads();
  }
  cp_wait<0>();  // a block with no key tile never waited for its Q and dO
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    const int q = q0 + rr[i];
    if (q >= T) continue;
    if (ropePos) rope_back(dq, i, ropePos[(i64)b * T + q], ropeCS, ropeP, ropeInv, t);
    u16* dst = dQ + (((i64)b * T + q) * H + h) * HD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) *(unsigned*)(dst + j * 8) = pack_bf16(dq[j][2 * i], dq[j][2 * i + 1]);
  }
}

/**
 * dQ = dS K from the stored dS^T ([B, H, S, T]): tiles of 64 keys x 64 queries of dS^T and 64
 * keys of K stream in by cp.async (double-buffered); warp w multiplies its 16 query rows, the
 * dS operand read through transposed fragment loads. Keys at or past the block's causal limit
 * and queries past T load as zeros. Requires kvLen = T and T % 8 == 0 (aligned 16-byte rows).
 */
template <int HD>
__device__ __forceinline__ void flash_bwd_dq_ds(u16* dQ, const u16* dS, const u16* K, int T, int S, int H, int Hkv, int kvLen, const int* ropePos, const float2* ropeCS, int ropeP, const float* ropeInv) {
  constexpr int LD = HD + 8, NT = HD / 8, LDS = 64 + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sK = (u16*)smem_raw;        // [2][64][LD]
  u16* sD = sK + 2 * 64 * LD;      // [2][64][LDS]: rows = keys, columns = queries
  const int b = blockIdx.y / H, h = blockIdx.y - b * H, kh = h / (H / Hkv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * 64, offset = kvLen - T;  // the longest rows (last tiles) first
  const i64 kvStride = (i64)Hkv * HD;
  const int kEnd = min(kvLen, offset + min(q0 + 64, T));
  const int tiles = (kEnd + 63) / 64;
  const u16* Kb = K + ((i64)b * S * Hkv + kh) * HD;
  const u16* Db = dS + ((i64)b * H + h) * S * T;
  const TileLoader<HD, 64> kLoad(kvStride);
  const TileLoader<64, 64> dsLoad(T);  // rows of 64 queries (+ 8: LDS), T apart
  auto issue = [&](int s0, int buf) {
    kLoad.load(smem_u32(sK + buf * 64 * LD), Kb + s0 * kvStride, kEnd - s0);
    if (q0 + 64 <= T) {
      dsLoad.load(smem_u32(sD + buf * 64 * LDS), Db + (i64)s0 * T + q0, kEnd - s0);
    } else {  // the last query tile, cut at T
      #pragma unroll
      for (int it = 0; it < 4; it++) {
        const int e = threadIdx.x + it * 128, r = e >> 3, c = (e & 7) * 8;
        const bool ok = s0 + r < kEnd && q0 + c < T;
        cp_async16(sD + (buf * 64 + r) * LDS + c, Db + (ok ? (i64)(s0 + r) * T + q0 + c : 0), ok ? 16 : 0);
      }
    }
    cp_commit();
  };
  float dq[NT][4];
  zero_acc(dq);
  if (tiles > 0) issue(0, 0);
  for (int it = 0; it < tiles; it++) {
    const int buf = it & 1;
    if (it + 1 < tiles) {
      issue((it + 1) * 64, buf ^ 1);
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    const u16* tK = sK + buf * 64 * LD;
    const u16* tD = sD + buf * 64 * LDS;
    #pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      unsigned a[4];
      frag_a_km(a, tD, LDS, warp * 16, kk * 16, lane);
      mma_a_kn(dq, a, smem_u32(tK) + ldsm_lane_rows(LD, lane) + tile_at(LD, kk * 16, 0));
    }
    __syncthreads();
  }
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    const int q = q0 + warp * 16 + g + 8 * i;
    if (q >= T) continue;
    if (ropePos) rope_back(dq, i, ropePos[(i64)b * T + q], ropeCS, ropeP, ropeInv, t);
    u16* dst = dQ + (((i64)b * T + q) * H + h) * HD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) *(unsigned*)(dst + j * 8) = pack_bf16(dq[j][2 * i], dq[j][2 * i + 1]);
  }
}
`;
