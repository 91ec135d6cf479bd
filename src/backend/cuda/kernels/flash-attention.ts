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
import { FLASH_BACKWARD_DKDV_CUDA, FLASH_BACKWARD_PREP_CUDA } from './flash-backward-dkdv.js';
import { FLASH_BACKWARD_DQ_CUDA } from './flash-backward-dq.js';
import { FLASH_FORWARD_CUDA } from './flash-forward.js';
import { FLASH_HELPERS_CUDA } from './flash-helpers.js';
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

/** The tile constants, as the kernels see them. */
const DEFINES = String.raw`
#define LOG2E 1.4426950408889634f
#define FWD_KT ${FWD_KEY_TILE}
#define FWD_STAGES ${FWD_STAGES}
#define FWD_LAZY_MAX 8.f
#define DKDV_STAGES ${DKDV_STAGES}
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
  COMMON_CUDA +
    TENSOR_CORE_CUDA +
    DEFINES +
    FLASH_HELPERS_CUDA +
    FLASH_FORWARD_CUDA +
    FLASH_BACKWARD_DKDV_CUDA +
    FLASH_BACKWARD_DQ_CUDA +
    FLASH_BACKWARD_PREP_CUDA +
    FLASH_HEAD_DIMS.map(variant).join(''),
);
