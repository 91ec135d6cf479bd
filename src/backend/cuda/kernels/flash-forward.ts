/**
 * The flash-attention forward (CUDA C, after flash-helpers.ts): per block 64 queries of one
 * (b, h), streaming key tiles with a running max and sum; see flash-attention.ts for layouts.
 */

export const FLASH_FORWARD_CUDA = String.raw`
/**
 * Block = 64 queries of one (b, h), 4 warps of 16 rows; key tiles of FWD_KT, FWD_STAGES - 1 of
 * them in flight. The query tile passes through the last K/V stage (its fragments go to
 * registers before a prefetch lands there) and the output leaves through the first, so shared
 * memory is the stages.
 * Tiles wholly below the diagonal with no masked key skip the per-element test (without padding,
 * the tiles' mask copies too); row sums stay per thread until the end.
 */
template <int HD>
__device__ __forceinline__ void flash_fwd(u16* O, float* lse, const u16* Q, const u16* K, const u16* V, const int* mask,
                                          int T, int S, int H, int Hkv, int kvLen, float scale) {
  constexpr int KT = FWD_KT, LD = HD + 8, NT = HD / 8, KC = HD / 16, NS = KT / 8, NST = FWD_STAGES;
  constexpr unsigned STAGE = tile_at(LD, 2 * KT, 0), VOFF = tile_at(LD, KT, 0);  // bytes: a stage, V within it
  static_assert(2 * KT >= 64 && NST >= 2, "the query tile is staged in the last K/V stage");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* sKV = (u16*)smem_raw;                   // [NST stages][K: KT rows, V: KT rows][LD]
  int* sMask = (int*)(sKV + NST * 2 * KT * LD);  // [NST][KT]
  const unsigned kv0 = smem_u32(sKV);
  const int b = blockIdx.y / H, h = blockIdx.y - b * H, kh = h / (H / Hkv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * 64, offset = kvLen - T;  // the longest rows (last tiles) first
  const i64 qStride = (i64)H * HD, kvStride = (i64)Hkv * HD;
  const int kEnd = min(kvLen, offset + min(q0 + 64, T));
  const int tiles = (kEnd + KT - 1) / KT;
  // Tiles before this one end at or before the block's first row's causal limit.
  const int belowDiagonal = max(0, (offset + q0 + 1) / KT);
  const u16* Kb = K + ((i64)b * S * Hkv + kh) * HD;
  const u16* Vb = V + ((i64)b * S * Hkv + kh) * HD;
  const TileLoader<HD, KT> kvLoad(kvStride);
  bool allOn = false;  // every key the block sees is on (no padding): tiles need no mask copies or votes
  int ist = 0;  // the stage of the next tile issued (a counter: it % NST costs a multiply-high per tile)
  auto issue = [&](int it) {
    const i64 r = (i64)it * KT * kvStride;
    kvLoad.load(kv0 + ist * STAGE, Kb + r, kvLen - it * KT);
    kvLoad.load(kv0 + ist * STAGE + VOFF, Vb + r, kvLen - it * KT);
    if (!allOn) load_mask(sMask + ist * KT, mask, b, S, it * KT, KT, kvLen);
    ist = ist + 1 == NST ? 0 : ist + 1;
  };
  TileLoader<HD, 64>(qStride).load(kv0 + (NST - 1) * STAGE, Q + (((i64)b * T + q0) * H + h) * HD, T - q0);
  if (tiles > 0) issue(0);
  cp_commit();
  // Plain loads, in flight with the copies, four at a time before any test (a loop testing each
  // entry as it came made them a chain of global round trips: up to four at T = 512).
  bool on = true;
  for (int i0 = threadIdx.x; i0 < kEnd; i0 += 4 * blockDim.x) {
    int v[4];
    #pragma unroll
    for (int u = 0; u < 4; u++) v[u] = i0 + u * (int)blockDim.x < kEnd ? mask[(i64)b * S + i0 + u * blockDim.x] : 1;
    #pragma unroll
    for (int u = 0; u < 4; u++) on &= v[u] != 0;
  }
  cp_wait<0>();
  allOn = __syncthreads_and(on);
  unsigned qf[KC][4];
  #pragma unroll
  for (int kc = 0; kc < KC; kc++) ldsm4(qf[kc], kv0 + (NST - 1) * STAGE + tile_at(LD, warp * 16, kc * 16) + ldsm_lane_rows(LD, lane));
  // This lane's fragment addresses in stage 0: K's B operands and V's transposed ones.
  const unsigned kB = kv0 + ldsm_lane_cols(LD, lane), vB = kv0 + VOFF + ldsm_lane_rows(LD, lane);
  __syncthreads();
  // Tiles 1 .. NST - 2 go out now, one commit group each (empty past the last tile: the wait below counts groups).
  #pragma unroll
  for (int p = 1; p < NST - 1; p++) {
    if (p < tiles) issue(p);
    cp_commit();
  }

  const float sl = scale * LOG2E;
  float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
  float o[NT][4];
  zero_acc(o);
  const int qr[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
  int st = 0;  // the stage of tile it
  for (int it = 0; it < tiles; it++) {
    // The stage of tile it + NST - 1 was last read in iteration it - 1, which ended with a barrier.
    if (it + NST - 1 < tiles) issue(it + NST - 1);
    cp_commit();
    cp_wait<NST - 1>();
    bool keysOn = true;
    if (allOn) __syncthreads();
    else keysOn = __syncthreads_and(mask_vote(sMask + st * KT, KT));
    const unsigned so = st * STAGE;
    float s[NS][4];
    zero_acc(s);
    #pragma unroll
    for (int kc = 0; kc < KC; kc++) {
      #pragma unroll
      for (int j = 0; j < NS; j += 2) {
        unsigned bk[4];
        ldsm4(bk, kB + so + tile_at(LD, j * 8, kc * 16));
        mma_bf16(s[j], qf[kc], bk[0], bk[1]);
        mma_bf16(s[j + 1], qf[kc], bk[2], bk[3]);
      }
    }
    if (!keysOn || it >= belowDiagonal) {
      // Key j * 8 + 2t + u of the tile is visible to row i when it is on and at most lim[i]. Rows
      // past T are not tested: they are zeros and never stored.
      const int* tM = sMask + st * KT;
      const int lim[2] = {offset + qr[0] - it * KT, offset + qr[1] - it * KT};
      #pragma unroll
      for (int j = 0; j < NS; j++) {
        #pragma unroll
        for (int u = 0; u < 2; u++) {
          const int key = j * 8 + 2 * t + u;
          const bool on = keysOn || tM[key] != 0;
          s[j][u] = on && key <= lim[0] ? s[j][u] : NEG_INF;
          s[j][2 + u] = on && key <= lim[1] ? s[j][2 + u] : NEG_INF;
        }
      }
    }
    // A row's running max (log2 units) moves only when a score passes it by more than
    // FWD_LAZY_MAX: the tile's probabilities may then reach 2^FWD_LAZY_MAX, which f32 sums and
    // bf16 products hold, and the softmax is the same whatever max it is taken against. The
    // output's rescaling (2 NT multiplies a row) then runs only on tiles where some row of the
    // warp moved: after the first tiles, rarely.
    float alpha[2];
    #pragma unroll
    for (int i = 0; i < 2; i++) {
      float mx = NEG_INF;
      #pragma unroll
      for (int j = 0; j < NS; j++) mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx *= sl;
      const float mNew = mx > m[i] + FWD_LAZY_MAX ? mx : m[i];  // from -inf, any visible score moves it
      alpha[i] = mNew == m[i] ? 1.f : exp2_ftz(m[i] - mNew);
      const float base = mNew == NEG_INF ? 0.f : mNew;  // masked scores are -inf: exp2 gives 0
      float sum = 0.f;
      #pragma unroll
      for (int j = 0; j < NS; j++) {
        #pragma unroll
        for (int u = 0; u < 2; u++) {
          const float p = exp2_ftz(fmaf(s[j][2 * i + u], sl, -base));
          s[j][2 * i + u] = p;
          sum += p;
        }
      }
      l[i] = l[i] * alpha[i] + sum;
      m[i] = mNew;
    }
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
      #pragma unroll
      for (int j = 0; j < NT; j++) { o[j][0] *= alpha[0]; o[j][1] *= alpha[0]; o[j][2] *= alpha[1]; o[j][3] *= alpha[1]; }
    }
    #pragma unroll
    for (int kk = 0; kk < KT / 16; kk++) {
      unsigned a[4];
      acc_to_a(a, s[2 * kk], s[2 * kk + 1]);
      mma_a_kn(o, a, vB + so + tile_at(LD, kk * 16, 0));
    }
    st = st + 1 == NST ? 0 : st + 1;
    __syncthreads();
  }
  // Rows go out through shared memory, 16 bytes per thread and step.
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    float sum = l[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    u16* row = sKV + (qr[i] - q0) * LD + 2 * t;
    #pragma unroll
    for (int j = 0; j < NT; j++) *(unsigned*)(row + j * 8) = pack_bf16(o[j][2 * i] * inv, o[j][2 * i + 1] * inv);
    if (t == 0 && qr[i] < T) lse[((i64)b * T + qr[i]) * H + h] = sum > 0.f ? (m[i] + log2f(sum)) / LOG2E : NEG_INF;
  }
  __syncthreads();
  constexpr int C8 = HD / 8;
  for (int e = threadIdx.x; e < 64 * C8; e += 128) {
    const int r = e / C8, c = (e - r * C8) * 8;
    if (q0 + r < T) *(uint4*)(O + (((i64)b * T + q0 + r) * H + h) * HD + c) = *(const uint4*)(sKV + r * LD + c);
  }
}
`;
