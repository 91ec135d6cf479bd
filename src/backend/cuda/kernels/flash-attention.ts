/**
 * Causal grouped-query attention on bf16 tensor cores (mma.sync m16n8k16, f32 accumulation),
 * flash-attention style: scores and probabilities live in registers, nothing of size T x S is
 * written to memory, and key tiles past a query tile's causal limit are skipped. Used for
 * training and prompt prefill with head dims 64 or 128 and bf16 tensors; the other cases take
 * the paths of ../attention.ts.
 *
 * Layouts as in the Backend interface: q, out [B, T, H, hd]; k, v [B, S, Hkv, hd]; lse f32
 * [B, T, H] (natural log of the scaled scores' sum of exponentials); key slot s is visible to
 * query t when s <= kvLen - T + t and keyMask[b, s] != 0. Tiles stream into shared memory by
 * cp.async (with the tile's key-mask entries, log-sum-exps and deltas), the next one loading
 * while the current one is multiplied; their rows of hd + 8 bf16 keep the ldmatrix fragment
 * loads of a warp's 8 row addresses on distinct banks.
 *
 * Query-tile blocks run in reverse order: under the causal mask the last tiles see the most keys,
 * and starting them first leaves the short ones for the grid's tail.
 *
 * A warp owns 16 rows of the M dimension of every product; in the m16n8k16 fragment layout a
 * lane (group g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1 of
 * each 8-column tile, which is also the A-operand layout of the next product, so probabilities
 * go from accumulators to operands without passing through shared memory.
 *
 *   flash_fwd_HD       block = 64 queries of one (b, h); loops over key tiles of 32
 *   flash_bwd_dkdv_HD  block = 64 keys of one (b, kv head); loops over the heads sharing it and
 *                      over query tiles of 32: S^T = K Q^T, dV += P^T dO, dK += dS^T Q, all
 *                      with keys as rows, so dK and dV are owned by one block (no atomics)
 *   flash_bwd_dq_HD    block = 64 queries of one (b, h); loops over key tiles of 64: dQ += dS K,
 *                      recomputing S and dP to get dS
 *   flash_bwd_dq_ds_HD the same from the dS that flash_bwd_dkdv_HD stored (bf16, [B, H, S, T]):
 *                      one product per tile instead of three, for the training case (kvLen = T,
 *                      T a multiple of 8) when the buffer fits (see ../attention.ts)
 *   flash_bwd_prep_HD  the backward kernels' per-row inputs: delta = rowsum(dO * O) times the
 *                      scale, and the log-sum-exp in log2 units
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';
import { TENSOR_CORE_CUDA } from './tensor-core.js';

/** Head dims with compiled variants. */
export const FLASH_HEAD_DIMS = [64, 128] as const;

/**
 * Keys per tile of the forward. 64 (two stages, with the lazy running max below) replaced 32 (three
 * stages) in the H100 calls of 2026-12-05, among that day's forward changes (forward 3.40 / 3.68 ->
 * 2.63 / 2.88 ms in the 16 x 512 step together).
 */
const FWD_KEY_TILE = 64;

/**
 * Shared-memory stages of the streamed tiles (the forward's K/V, dK/dV's Q/dO): tiles in flight
 * while one is multiplied, plus that one. H200, the 16 x 512 step's attention backward, one call:
 * 11.76-11.88 ms with dK/dV at 3 stages, 11.84-12.31 at 2 (a small gain at most); the forward
 * measured the same with 2 or 3 (3.4-3.7 ms) at its earlier tiles of 32 keys. dK/dV keeps 3; the
 * forward, with tiles of 64 keys, 2: three stages of those (104 KiB) would leave room for two
 * blocks per SM instead of three.
 */
const FWD_STAGES = 2;
const DKDV_STAGES = 3;

/** Rows per block of each kernel, for the host's grids. */
export const FLASH_TILES = { fwdRows: 64, dkvKeys: 64, dqRows: 64 } as const;

/** Dynamic shared memory of each kernel (bytes): tiles of rows of hd + 8 bf16, double-buffered where they stream. */
export function flashSharedBytes(kernel: 'fwd' | 'dkdv' | 'dq' | 'dq_ds', hd: number): number {
  const row = (hd + 8) * 2;
  switch (kernel) {
    case 'dq_ds':
      return 2 * 64 * row + 2 * 64 * (64 + 8) * 2;
    case 'fwd':
      return FWD_STAGES * (2 * FWD_KEY_TILE * row + FWD_KEY_TILE * 4);
    case 'dkdv':
      return (2 * 64 + DKDV_STAGES * 2 * 32) * row + DKDV_STAGES * 2 * 32 * 4 + 64 * 4;
    case 'dq':
      return (2 * 64 + 4 * 64) * row + 2 * 64 * 4 + 2 * 64 * 4;
  }
}

const SOURCE = String.raw`
#define LOG2E 1.4426950408889634f
#define FWD_KT ${FWD_KEY_TILE}
#define FWD_STAGES ${FWD_STAGES}
#define FWD_LAZY_MAX 8.f
#define DKDV_STAGES ${DKDV_STAGES}

/**
 * A thread's part of copying tiles of ROWS rows of a [*, stride]-strided bf16 matrix into shared
 * rows of HD + 8 elements by cp.async (16 bytes a piece, 128 threads; a warp's pieces of one
 * step cover whole rows). Its pieces lie RS rows apart in one column: the offsets are set up
 * once per stride, and a tile then costs a 64-bit add per piece (no tests when all its rows
 * are in range).
 */
template <int HD, int ROWS>
struct TileLoader {
  static constexpr int C8 = HD / 8, LD = HD + 8, RS = 128 / C8, PER = ROWS / RS;
  static_assert(128 % C8 == 0 && ROWS % RS == 0, "whole rows per step");
  // Elements, in 32 bits (a tile spans ROWS * stride < 2^31 of them): this thread's first piece
  // from the tile's first row, and from one piece to the next.
  int first, step;
  unsigned dst;  // bytes: this thread's first piece within the shared tile
  int row;       // its first piece's row
  __device__ __forceinline__ explicit TileLoader(i64 stride) {
    row = threadIdx.x / C8;
    const int c = (threadIdx.x - row * C8) * 8;
    first = row * (int)stride + c;
    step = RS * (int)stride;
    dst = tile_at(LD, row, c);
  }
  /** Starts copying the tile whose first row is at src to shared address sm; rows at or past valid (of the tile) become zeros. */
  __device__ __forceinline__ void load(unsigned sm, const u16* src, int valid) const {
    const u16* p = src + first;
    if (valid >= ROWS) {
      #pragma unroll
      for (int it = 0; it < PER; it++, p += step) cp_async16(sm + dst + tile_at(LD, it * RS, 0), p, 16);
    } else {
      #pragma unroll
      for (int it = 0; it < PER; it++, p += step) {
        const bool ok = it * RS + row < valid;  // a row past the end reads nothing: src stands in as the address
        cp_async16(sm + dst + tile_at(LD, it * RS, 0), ok ? p : src, ok ? 16 : 0);
      }
    }
  }
};

/**
 * Starts copying mask[b, s0 + i] for i < n (0 past kvLen) into shared memory by cp.async, with
 * the tile it belongs to (a plain load would hold the thread for a global round trip first).
 * Thread i copies entry i (and i + blockDim.x, ...), which mask_vote reads back.
 */
__device__ __forceinline__ void load_mask(int* sm, const int* mask, int b, int S, int s0, int n, int kvLen) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const bool ok = s0 + i < kvLen;
    cp_async4(sm + i, mask + (ok ? (i64)b * S + s0 + i : 0), ok ? 4 : 0);
  }
}

/** Once this thread's copies by load_mask have landed: true when its entries of the tile are all on. */
__device__ __forceinline__ bool mask_vote(const int* sm, int n) {
  bool on = true;
  for (int i = threadIdx.x; i < n; i += blockDim.x) on = on && sm[i] != 0;
  return on;
}

/** The A operand (16 x 16) of two adjacent accumulator tiles (16 x 8 each), rounded to bf16. */
__device__ __forceinline__ void acc_to_a(unsigned (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);
  a[1] = pack_bf16(lo[2], lo[3]);
  a[2] = pack_bf16(hi[0], hi[1]);
  a[3] = pack_bf16(hi[2], hi[3]);
}

/**
 * acc (16 rows x 8 NT columns) += a (16 x 16) times 16 rows of a shared tile stored [k][n]:
 * addr = the first row's shared address plus the lane's ldsm_lane_rows.
 */
template <int NT>
__device__ __forceinline__ void mma_a_kn(float (&acc)[NT][4], const unsigned (&a)[4], unsigned addr) {
  #pragma unroll
  for (int j = 0; j < NT; j += 2) {
    unsigned b[4];
    ldsm4t(b, addr + 16u * j);
    mma_bf16(acc[j], a, b[0], b[1]);
    mma_bf16(acc[j + 1], a, b[2], b[3]);
  }
}

/** The (cosine, sine) of a position past rope_table's (a call apart from the hot code). */
__device__ __noinline__ float2 rope_cos_sin_far(int pos, float invFreq) { return rope_cos_sin(pos, invFreq); }

/**
 * RoPE's backward (rotation by -angle, as ropeBackward) of a lane's accumulator row i (acc[.][2i
 * + u]) of position pos before it is stored, for Backend.attentionBackward's rope option: its
 * columns 8j + 2t + u (j < NT / 2) pair with the same + HD / 2. cs: rope_table's (cosine, sine)
 * for positions [0, P); a position past them computes its own.
 */
template <int NT>
__device__ __forceinline__ void rope_back(float (&acc)[NT][4], int i, int pos, const float2* cs, int P, const float* invFreq, int t) {
  constexpr int HALF = NT * 4;
  float2 r[NT / 2][2];
  if ((unsigned)pos < (unsigned)P) {
    #pragma unroll
    for (int j = 0; j < NT / 2; j++)
      #pragma unroll
      for (int u = 0; u < 2; u++) r[j][u] = cs[(i64)pos * HALF + j * 8 + 2 * t + u];
  } else {
    #pragma unroll
    for (int j = 0; j < NT / 2; j++)
      #pragma unroll
      for (int u = 0; u < 2; u++) r[j][u] = rope_cos_sin_far(pos, invFreq[j * 8 + 2 * t + u]);
  }
  #pragma unroll
  for (int j = 0; j < NT / 2; j++)
    #pragma unroll
    for (int u = 0; u < 2; u++) {
      const float x1 = acc[j][2 * i + u], x2 = acc[j + NT / 2][2 * i + u];
      acc[j][2 * i + u] = x1 * r[j][u].x + x2 * r[j][u].y;
      acc[j + NT / 2][2 * i + u] = x2 * r[j][u].x - x1 * r[j][u].y;
    }
}

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

/** The exported entry points of one head-dim variant (written out: the host reads their signatures). */
function variant(hd: number): string {
  const tail = 'const int* mask, int T, int S, int H, int Hkv, int kvLen, float scale';
  const args = 'mask, T, S, H, Hkv, kvLen, scale';
  const rope = 'const int* ropePos, const float2* ropeCS, int ropeP, const float* ropeInv';
  const ropeArgs = 'ropePos, ropeCS, ropeP, ropeInv';
  return String.raw`
extern "C" __global__ void __launch_bounds__(128, 3) flash_fwd_${hd}(u16* O, float* lse, const u16* Q, const u16* K, const u16* V, ${tail}) {
  flash_fwd<${hd}>(O, lse, Q, K, V, ${args});
}
extern "C" __global__ void flash_bwd_prep_${hd}(float* delta, float* lse2, const u16* dO, const u16* O, const float* lse, i64 rows, float scale) {
  flash_bwd_prep<${hd}>(delta, lse2, dO, O, lse, rows, scale);
}
extern "C" __global__ void __launch_bounds__(128) flash_bwd_dkdv_${hd}(u16* dK, u16* dV, u16* dS, const u16* dO, const float* delta, const float* lse2,
                                                                     const u16* Q, const u16* K, const u16* V, ${tail},
                                                                     ${rope}) {
  flash_bwd_dkdv<${hd}>(dK, dV, dS, dO, delta, lse2, Q, K, V, ${args}, ${ropeArgs});
}
extern "C" __global__ void __launch_bounds__(128) flash_bwd_dq_ds_${hd}(u16* dQ, const u16* dS, const u16* K, int T, int S, int H, int Hkv, int kvLen,
                                                                      ${rope}) {
  flash_bwd_dq_ds<${hd}>(dQ, dS, K, T, S, H, Hkv, kvLen, ${ropeArgs});
}
extern "C" __global__ void __launch_bounds__(128) flash_bwd_dq_${hd}(u16* dQ, const u16* dO, const float* delta, const float* lse2,
                                                                   const u16* Q, const u16* K, const u16* V, ${tail},
                                                                   ${rope}) {
  flash_bwd_dq<${hd}>(dQ, dO, delta, lse2, Q, K, V, ${args}, ${ropeArgs});
}
`;
}

export const FLASH_ATTENTION: KernelModule = kernelModule(
  'flash-attention',
  COMMON_CUDA + TENSOR_CORE_CUDA + SOURCE + FLASH_HEAD_DIMS.map(variant).join(''),
);
