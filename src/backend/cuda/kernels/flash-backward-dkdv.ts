/**
 * The flash-attention backward's dK/dV kernel and the per-row inputs every backward kernel reads
 * (CUDA C, after flash-helpers.ts). dK/dV: per block 64 keys of one (b, kv head), looping over
 * the heads sharing it and over query tiles, so dK and dV each have one owner (no atomics); it
 * can store dS for the dQ kernel.
 */

export const FLASH_BACKWARD_DKDV_CUDA = String.raw`
template <int HD>
__device__ __forceinline__ void flash_bwd_dkdv(u16* dK, u16* dV, u16* dS, const u16* dO, const float* delta, const float* lse2,
                                               const u16* Q, const u16* K, const u16* V, const int* mask,
                                               int T, int S, int H, int Hkv, int kvLen, float scale, const int* ropePos, const float2* ropeCS, int ropeP, const float* ropeInv) {
  constexpr int LD = HD + 8, NT = HD / 8, KC = HD / 16, NST = DKDV_STAGES;
  // Bytes: V after K, a 32-row query tile, and the dO stages after the Q stages.
  constexpr unsigned VOFF = tile_at(LD, 64, 0), QT = tile_at(LD, 32, 0), OOFF = NST * QT;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sK = (u16*)smem_raw;
  u16* sQ = sK + 2 * 64 * LD;      // [NST][32][LD], then dO's [NST][32][LD]
  float* sL = (float*)(sQ + 2 * NST * 32 * LD);  // [NST][32]
  float* sD = sL + NST * 32;                     // [NST][32]
  int* sMask = (int*)(sD + NST * 32);            // [64]
  const unsigned k0s = smem_u32(sK), q0s = smem_u32(sQ);
  const int G = H / Hkv, b = blockIdx.y / Hkv, kh = blockIdx.y - b * Hkv;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int k0 = blockIdx.x * 64, offset = kvLen - T;
  const i64 qStride = (i64)H * HD, kvStride = (i64)Hkv * HD;
  // Queries that can see key k0 start at k0 - offset; the block streams (head, query tile) pairs.
  const int qStart = max(0, k0 - offset) & ~31;
  const int qTiles = qStart < T ? (T - qStart + 31) / 32 : 0;
  const int tiles = G * qTiles;
  const TileLoader<HD, 32> qLoad(qStride);
  // Tiles go (head, query tile) in order; counters instead of a division per tile: the next to
  // issue (its head in the group, query tile, stage) and, in the loop, the one multiplied.
  int issued = 0, ih = 0, iq = 0, ib = 0;
  auto issue = [&]() {
    const int h = kh * G + ih, q0 = qStart + iq * 32, buf = ib;
    if (++iq == qTiles) { iq = 0; ih++; }
    ib = ib + 1 == NST ? 0 : ib + 1;
    issued++;
    const i64 row = ((i64)b * T + q0) * H + h;  // of the tile's first query
    qLoad.load(q0s + buf * QT, Q + row * HD, T - q0);
    qLoad.load(q0s + OOFF + buf * QT, dO + row * HD, T - q0);
    if (warp < 2) {  // rows past T read as zeros: no key is visible to them (q < T is tested)
      const bool ok = q0 + lane < T;
      cp_async4((warp ? sD : sL) + buf * 32 + lane, (warp ? delta : lse2) + (ok ? row + (i64)lane * H : 0), ok ? 4 : 0);
    }
  };
  const TileLoader<HD, 64> kLoad(kvStride);
  kLoad.load(k0s, K + ((i64)b * S + k0) * kvStride + kh * HD, kvLen - k0);
  kLoad.load(k0s + VOFF, V + ((i64)b * S + k0) * kvStride + kh * HD, kvLen - k0);
  load_mask(sMask, mask, b, S, k0, 64, kvLen);
  // Tiles 0 .. NST - 2 go out now (K, V and the mask with the first), one commit group each.
  #pragma unroll
  for (int p = 0; p < NST - 1; p++) {
    if (p < tiles) issue();
    cp_commit();
  }
  const float sl = scale * LOG2E;
  float dk[NT][4], dv[NT][4];
  zero_acc(dk);
  zero_acc(dv);
  const int kr[2] = {warp * 16 + g, warp * 16 + g + 8};  // key rows of this lane within the tile
  // Key row i is visible to query q when q >= kLim[i] (past every query if the key is off: set
  // with the mask's arrival); allOn: every key of the block is on.
  int kLim[2];
  bool allOn = false;
  // This lane's fragment addresses: K's (V's at + VOFF) A operands for its warp's 16 keys; in
  // stage 0, Q's (dO's at + OOFF) B operands, and the same transposed for dK (dV).
  const unsigned kA = k0s + tile_at(LD, warp * 16, 0) + ldsm_lane_rows(LD, lane);
  const unsigned qB = q0s + ldsm_lane_cols(LD, lane), qBt = q0s + ldsm_lane_rows(LD, lane);
  // This lane's dS^T element (its first key row, first query) from a tile's first (key, query).
  const int dsLane = kr[0] * T + 2 * t;
  int hc = 0, qc = 0, buf = 0;  // the tile multiplied in this iteration
  for (int it = 0; it < tiles; it++) {
    const int q0 = qStart + qc * 32;
    // The stage of tile it + NST - 1 was last read in iteration it - 1, which ended with a barrier.
    if (issued < tiles) issue();
    cp_commit();
    cp_wait<NST - 1>();
    __syncthreads();
    if (it == 0) {  // the mask came with the first tile
      kLim[0] = sMask[kr[0]] != 0 ? k0 + kr[0] - offset : T;
      kLim[1] = sMask[kr[1]] != 0 ? k0 + kr[1] - offset : T;
      allOn = __syncthreads_and(mask_vote(sMask, 64));
    }
    // Every (key, query) pair of the tile visible: no per-element tests.
    const bool whole = allOn && q0 + 31 < T && q0 >= k0 + 63 - offset;
    const unsigned so = buf * QT;
    const float* tL = sL + buf * 32;
    const float* tD = sD + buf * 32;
    // S^T (16 keys x 32 queries) = K Q^T and dP^T = V dO^T.
    float st[4][4], dpt[4][4];
    zero_acc(st);
    zero_acc(dpt);
    #pragma unroll
    for (int kc = 0; kc < KC; kc++) {
      unsigned ak[4], av[4];
      ldsm4(ak, kA + 32u * kc);
      ldsm4(av, kA + VOFF + 32u * kc);
      #pragma unroll
      for (int j = 0; j < 4; j += 2) {
        unsigned bq[4], bo[4];
        ldsm4(bq, qB + so + tile_at(LD, j * 8, kc * 16));
        ldsm4(bo, qB + so + OOFF + tile_at(LD, j * 8, kc * 16));
        mma_bf16(st[j], ak, bq[0], bq[1]);
        mma_bf16(st[j + 1], ak, bq[2], bq[3]);
        mma_bf16(dpt[j], av, bo[0], bo[1]);
        mma_bf16(dpt[j + 1], av, bo[2], bo[3]);
      }
    }
    // P^T and dS^T = P^T (dP^T scale - delta scale), in place (lse2 and delta: see flash_bwd_prep).
    float lb[4][2], dl[4][2];
    #pragma unroll
    for (int j = 0; j < 4; j++)
      #pragma unroll
      for (int u = 0; u < 2; u++) {
        lb[j][u] = tL[j * 8 + 2 * t + u];
        dl[j][u] = tD[j * 8 + 2 * t + u];
      }
    if (whole) {
      #pragma unroll
      for (int j = 0; j < 4; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
          const float p = exp2_ftz(fmaf(st[j][e], sl, -lb[j][e & 1]));
          st[j][e] = p;
          dpt[j][e] = p * fmaf(dpt[j][e], scale, -dl[j][e & 1]);
        }
    } else {
      #pragma unroll
      for (int j = 0; j < 4; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
          const int q = q0 + j * 8 + 2 * t + (e & 1);
          const bool vis = q < T && q >= kLim[e >> 1];
          const float p = vis ? exp2_ftz(fmaf(st[j][e], sl, -lb[j][e & 1])) : 0.f;
          st[j][e] = p;
          dpt[j][e] = p * fmaf(dpt[j][e], scale, -dl[j][e & 1]);
        }
    }
    if (dS) {
      // dS^T rows of this lane's keys (k0 + kr[i], i = 1 eight rows on), queries q0 + 8j + 2t
      // and the next (T even: pairs stay in range together).
      u16* row = dS + (((i64)b * H + kh * G + hc) * S + k0) * T + q0 + dsLane;
      if (k0 + 64 <= S && q0 + 32 <= T) {
        #pragma unroll
        for (int i = 0; i < 2; i++)
          #pragma unroll
          for (int j = 0; j < 4; j++) *(unsigned*)(row + (i64)i * 8 * T + j * 8) = pack_bf16(dpt[j][2 * i], dpt[j][2 * i + 1]);
      } else {
        #pragma unroll
        for (int i = 0; i < 2; i++)
          #pragma unroll
          for (int j = 0; j < 4; j++)
            if (k0 + kr[i] < S && q0 + j * 8 + 2 * t < T) *(unsigned*)(row + (i64)i * 8 * T + j * 8) = pack_bf16(dpt[j][2 * i], dpt[j][2 * i + 1]);
      }
    }
    // dV += P^T dO, dK += dS^T Q (k dimension = the 32 queries).
    #pragma unroll
    for (int kk = 0; kk < 2; kk++) {
      unsigned ap[4], ads[4];
      acc_to_a(ap, st[2 * kk], st[2 * kk + 1]);
      acc_to_a(ads, dpt[2 * kk], dpt[2 * kk + 1]);
      mma_a_kn(dv, ap, qBt + so + OOFF + tile_at(LD, kk * 16, 0));
      mma_a_kn(dk, ads, qBt + so + tile_at(LD, kk * 16, 0));
    }
    if (++qc == qTiles) { qc = 0; hc++; }
    buf = buf + 1 == NST ? 0 : buf + 1;
    __syncthreads();
  }
  cp_wait<0>();  // a block with no query tile never waited for its K and V
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    const int s = k0 + kr[i];
    if (s >= S) continue;
    if (ropePos) rope_back(dk, i, ropePos[(i64)b * S + s], ropeCS, ropeP, ropeInv, t);
    const i64 o = (((i64)b * S + s) * Hkv + kh) * HD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) {
      *(unsigned*)(dK + o + j * 8) = pack_bf16(dk[j][2 * i], dk[j][2 * i + 1]);
      *(unsigned*)(dV + o + j * 8) = pack_bf16(dv[j][2 * i], dv[j][2 * i + 1]);
    }
  }
}
`;

/** flash_bwd_prep: delta and the log-sum-exp in log2 units, run before the other backward kernels. */
export const FLASH_BACKWARD_PREP_CUDA = String.raw`
/**
 * The backward kernels' per-row inputs: delta = (dO . O) scale (bf16 rows of HD; dS = P (dP scale
 * - delta) is then one FMA and a multiply) and lse2 = lse log2(e), +inf where lse is -inf (a row
 * with no visible key: its probabilities come out 0 against it), so the loops subtract it without
 * tests. HD / 8 lanes a row, 16 bytes each.
 */
template <int HD>
__device__ __forceinline__ void flash_bwd_prep(float* delta, float* lse2, const u16* dO, const u16* O, const float* lse, i64 rows, float scale) {
  constexpr int LPR = HD / 8;
  const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x, r = i / LPR;
  const int c = (int)(i - r * LPR) * 8;
  float s = 0.f;
  if (r < rows) {
    float a[8], o[8];
    unpack8(*(const uint4*)(dO + r * HD + c), a);
    unpack8(*(const uint4*)(O + r * HD + c), o);
    #pragma unroll
    for (int k = 0; k < 8; k++) s = fmaf(a[k], o[k], s);
  }
  #pragma unroll
  for (int m = LPR / 2; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
  if (c == 0 && r < rows) {
    delta[r] = s * scale;
    const float L = lse[r];
    lse2[r] = L == NEG_INF ? -NEG_INF : L * LOG2E;
  }
}
`;
