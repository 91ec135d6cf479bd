/**
 * Host side of attention: shape checks and the choice of implementation. With at least
 * GEMM_MIN_QUERIES queries and one dtype throughout (training, prompt prefill), attention runs
 * as batched tensor-core products (attention-gemm.ts); a forward pass with one query per
 * sequence (a decoding step) in kernels/decode.ts's attn_decode; otherwise (a few queries, mixed
 * dtypes) in the tiled flash kernels of kernels/attention.ts, which need no score buffer. The backward
 * pass first computes delta = rowsum(dout * out); the flash path then runs dq (per query tile)
 * and dk/dv (per key tile) in two kernels that each own their outputs: no atomics, deterministic.
 */
import {
  attentionBackwardDims,
  attentionForwardDims,
  type AttentionBackwardOptions,
  type AttentionDims,
  type AttentionOptions,
  type Tensor,
} from '../backend.js';
import { attentionBackwardGemm, attentionForwardGemm } from './attention-gemm.js';
import type { Cublas } from './cublas.js';
import { asCuda, cudaOff, floatArg, ptrOf } from './cuda-tensor.js';
import type { CudaDevice } from './device.js';
import { ATTENTION, ATTENTION_TILES, attentionSharedBytes } from './kernels/attention.js';
import { FLASH_ATTENTION, FLASH_HEAD_DIMS, FLASH_TILES, flashSharedBytes } from './kernels/flash-attention.js';
import { DECODE, DECODE_ATTENTION } from './kernels/decode.js';

interface Dims extends AttentionDims {
  /** Head dims in units of 32 (flash kernel variant); null past 128. */
  nj: 1 | 2 | 4 | null;
}

/** The most memory the flash backward's stored dS (bf16, B H S T) may take; past it dQ recomputes dS instead. */
const DS_BUDGET = 512 * 2 ** 20;

/** Queries per sequence from which the matrix-product path pays for its score buffers. */
const GEMM_MIN_QUERIES = 16;

function useGemm(d: Dims, tensors: Tensor[]): boolean {
  const dtype = asCuda(tensors[0], 'attention').dtype;
  return d.T >= GEMM_MIN_QUERIES && tensors.every((t) => asCuda(t, 'attention').dtype === dtype);
}

/**
 * The tensor-core flash kernels: bf16 tensors with 16-byte aligned rows, head dims they were
 * compiled for, unless SQLORA_CUDA_OFF (a comma list, for diagnosis) names flash.
 */
function useTensorCoreFlash(d: Dims, tensors: Tensor[]): boolean {
  if (cudaOff('flash')) return false;
  return (
    (FLASH_HEAD_DIMS as readonly number[]).includes(d.hd) &&
    tensors.every((t) => {
      const c = asCuda(t, 'attention');
      return c.dtype === 'bf16' && c.ptr % 16 === 0;
    })
  );
}

function flashVariant(d: Dims): 1 | 2 | 4 {
  if (d.nj === null)
    throw new Error(
      `attention: for fewer than ${GEMM_MIN_QUERIES} queries or mixed dtypes the CUDA kernels support head dims up to 128, got ${d.hd}`,
    );
  return d.nj;
}

function withVariant(d: AttentionDims): Dims {
  return { ...d, nj: d.hd <= 32 ? 1 : d.hd <= 64 ? 2 : d.hd <= 128 ? 4 : null };
}

/** The argument tail shared by all three kernels (q, k, v, mask and sizes). */
function common(d: Dims, q: Tensor, k: Tensor, v: Tensor, keyMask: Tensor): number[] {
  return [
    ...floatArg(q, 'attention q'),
    ...floatArg(k, 'attention k'),
    ...floatArg(v, 'attention v'),
    ptrOf(keyMask, 'i32', 'attention keyMask'),
    d.T,
    d.S,
    d.H,
    d.Hkv,
    d.hd,
    d.kvLen,
    d.scale,
  ];
}

/** q, k, v, mask and sizes as the tensor-core kernels take them. */
function tensorCoreArgs(d: Dims, q: Tensor, k: Tensor, v: Tensor, keyMask: Tensor): number[] {
  return [
    ptrOf(q, 'bf16', 'attention q'),
    ptrOf(k, 'bf16', 'attention k'),
    ptrOf(v, 'bf16', 'attention v'),
    ptrOf(keyMask, 'i32', 'attention keyMask'),
    d.T,
    d.S,
    d.H,
    d.Hkv,
    d.kvLen,
    d.scale,
  ];
}

export function attentionForwardCuda(
  dev: CudaDevice,
  blas: Cublas,
  out: Tensor,
  lse: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  keyMask: Tensor,
  opts: AttentionOptions = {},
): void {
  const d = withVariant(attentionForwardDims(out, lse, q, k, v, keyMask, opts));
  if (d.B * d.T === 0) return;
  const fwd = [q, k, v, out];
  if (
    d.T === 1 &&
    d.nj !== null &&
    d.hd === 32 * d.nj &&
    fwd.every((t) => {
      const c = asCuda(t, 'attention');
      return c.dtype === 'bf16' && c.ptr % 8 === 0;
    })
  ) {
    // A decoding step in bf16 with head dims of 32, 64 or 128: vector loads of the cache.
    dev.launch(dev.kernel(DECODE, `attn_decode_bf16_${d.nj}`), [d.B * d.H], DECODE_ATTENTION.threads, 0, [
      ptrOf(out, 'bf16', 'attention out'),
      ptrOf(lse, 'f32', 'attention lse'),
      ptrOf(q, 'bf16', 'attention q'),
      ptrOf(k, 'bf16', 'attention k'),
      ptrOf(v, 'bf16', 'attention v'),
      ptrOf(keyMask, 'i32', 'attention keyMask'),
      d.S,
      d.H,
      d.Hkv,
      d.kvLen,
      d.scale,
    ]);
    return;
  }
  if (d.T === 1 && d.nj !== null) {
    // A decoding step: one query per sequence, read against the cache by attn_decode.
    dev.launch(dev.kernel(DECODE, `attn_decode_${d.nj}`), [d.B * d.H], DECODE_ATTENTION.threads, 0, [
      ...floatArg(out, 'attention out'),
      ptrOf(lse, 'f32', 'attention lse'),
      ...floatArg(q, 'attention q'),
      ...floatArg(k, 'attention k'),
      ...floatArg(v, 'attention v'),
      ptrOf(keyMask, 'i32', 'attention keyMask'),
      d.S,
      d.H,
      d.Hkv,
      d.hd,
      d.kvLen,
      d.scale,
    ]);
    return;
  }
  const gemm = useGemm(d, fwd);
  if (gemm && useTensorCoreFlash(d, fwd)) {
    dev.launch(
      dev.kernel(FLASH_ATTENTION, `flash_fwd_${d.hd}`),
      [Math.ceil(d.T / FLASH_TILES.fwdRows), d.B * d.H],
      128,
      flashSharedBytes('fwd', d.hd),
      [ptrOf(out, 'bf16', 'attention out'), ptrOf(lse, 'f32', 'attention lse'), ...tensorCoreArgs(d, q, k, v, keyMask)],
    );
    return;
  }
  if (gemm) {
    attentionForwardGemm(dev, blas, d, out, lse, q, k, v, keyMask);
    return;
  }
  const nj = flashVariant(d);
  const rows = d.T * (d.H / d.Hkv);
  dev.launch(
    dev.kernel(ATTENTION, `attn_fwd_${nj}`),
    [Math.ceil(rows / ATTENTION_TILES.fwdRows), d.B * d.Hkv],
    128,
    attentionSharedBytes('fwd', nj),
    [...floatArg(out, 'attention out'), ptrOf(lse, 'f32', 'attention lse'), ...common(d, q, k, v, keyMask)],
  );
}

/** Device tables for the rope option's fused path: rope_table's (cosine, sine) of positions [0, P) and the inverse frequencies. */
export interface RopeTables {
  cosSin: number;
  P: number;
  invFreq: number;
}

/**
 * Returns true when the rope option's ropeBackward was applied to dq and dk here (in the
 * tensor-core kernels' epilogues, from `tables`); otherwise the caller applies it.
 */
export function attentionBackwardCuda(
  dev: CudaDevice,
  blas: Cublas,
  dq: Tensor,
  dk: Tensor,
  dv: Tensor,
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  keyMask: Tensor,
  opts: AttentionBackwardOptions = {},
  tables: RopeTables | null = null,
): boolean {
  const d = withVariant(attentionBackwardDims(dq, dk, dv, dout, q, k, v, out, lse, keyMask, opts));
  if (d.B * d.S === 0) return true;
  const rowsTotal = d.B * d.T * d.H;
  const all = [q, k, v, out, dout, dq, dk, dv];
  const gemm = useGemm(d, all);
  const tensorCore = gemm && useTensorCoreFlash(d, all);
  // delta = rowsum(dout * out), and for the tensor-core kernels the log-sum-exp in log2 units after it.
  const delta = dev.allocator.alloc(rowsTotal * (tensorCore ? 8 : 4));
  const lse2 = delta.ptr + rowsTotal * 4;
  try {
    if (rowsTotal > 0 && tensorCore) {
      dev.launch(
        dev.kernel(FLASH_ATTENTION, `flash_bwd_prep_${d.hd}`),
        [Math.ceil((rowsTotal * (d.hd / 8)) / 256)],
        256,
        0,
        [
          delta.ptr,
          lse2,
          ptrOf(dout, 'bf16', 'attention dout'),
          ptrOf(out, 'bf16', 'attention out'),
          ptrOf(lse, 'f32', 'attention lse'),
          rowsTotal,
          d.scale,
        ],
      );
    } else if (rowsTotal > 0) {
      const fd = dev.kernel(ATTENTION, 'attn_bwd_delta');
      const blocks = Math.min(Math.ceil(rowsTotal / 8), dev.smCount * 16);
      dev.launch(fd, [blocks], 256, 0, [
        delta.ptr,
        ...floatArg(dout, 'attention dout'),
        ...floatArg(out, 'attention out'),
        rowsTotal,
        d.hd,
      ]);
    }
    if (tensorCore) {
      const tail = [delta.ptr, lse2, ...tensorCoreArgs(d, q, k, v, keyMask)];
      const rope =
        opts.rope && tables
          ? [
              ptrOf(opts.rope.positions, 'i32', 'attentionBackward rope positions'),
              tables.cosSin,
              tables.P,
              tables.invFreq,
            ]
          : [0, 0, 0, 0];
      // Training (no cached prefix, T a multiple of 8): the dK/dV kernel stores dS for dQ = dS K.
      const dsBytes = d.B * d.H * d.S * d.T * 2;
      const ds =
        d.kvLen === d.T && d.T % 8 === 0 && dsBytes <= DS_BUDGET && !cudaOff('flash-ds')
          ? dev.allocator.alloc(dsBytes)
          : null;
      try {
        dev.launch(
          dev.kernel(FLASH_ATTENTION, `flash_bwd_dkdv_${d.hd}`),
          [Math.ceil(d.S / FLASH_TILES.dkvKeys), d.B * d.Hkv],
          128,
          flashSharedBytes('dkdv', d.hd),
          [
            ptrOf(dk, 'bf16', 'attention dk'),
            ptrOf(dv, 'bf16', 'attention dv'),
            ds ? ds.ptr : 0,
            ptrOf(dout, 'bf16', 'attention dout'),
            ...tail,
            ...rope,
          ],
        );
        const grid = [Math.ceil(d.T / FLASH_TILES.dqRows), d.B * d.H];
        if (ds) {
          dev.launch(
            dev.kernel(FLASH_ATTENTION, `flash_bwd_dq_ds_${d.hd}`),
            grid,
            128,
            flashSharedBytes('dq_ds', d.hd),
            [
              ptrOf(dq, 'bf16', 'attention dq'),
              ds.ptr,
              ptrOf(k, 'bf16', 'attention k'),
              d.T,
              d.S,
              d.H,
              d.Hkv,
              d.kvLen,
              ...rope,
            ],
          );
        } else {
          dev.launch(dev.kernel(FLASH_ATTENTION, `flash_bwd_dq_${d.hd}`), grid, 128, flashSharedBytes('dq', d.hd), [
            ptrOf(dq, 'bf16', 'attention dq'),
            ptrOf(dout, 'bf16', 'attention dout'),
            ...tail,
            ...rope,
          ]);
        }
      } finally {
        if (ds) dev.allocator.release(ds.ptr, ds.size);
      }
      return tables !== null;
    }
    if (gemm) {
      attentionBackwardGemm(dev, blas, d, dq, dk, dv, dout, q, k, v, lse, keyMask, delta.ptr);
      return false;
    }
    const nj = flashVariant(d);
    if (rowsTotal > 0) {
      const fq = dev.kernel(ATTENTION, `attn_bwd_dq_${nj}`);
      const rows = d.T * (d.H / d.Hkv);
      dev.launch(fq, [Math.ceil(rows / ATTENTION_TILES.dqRows), d.B * d.Hkv], 128, attentionSharedBytes('dq', nj), [
        ...floatArg(dq, 'attention dq'),
        ...floatArg(dout, 'attention dout'),
        delta.ptr,
        ptrOf(lse, 'f32', 'attention lse'),
        ...common(d, q, k, v, keyMask),
      ]);
    }
    const fkv = dev.kernel(ATTENTION, `attn_bwd_dkdv_${nj}`);
    dev.launch(fkv, [Math.ceil(d.S / ATTENTION_TILES.dkvKeys), d.B * d.Hkv], 128, attentionSharedBytes('dkdv', nj), [
      ...floatArg(dk, 'attention dk'),
      ...floatArg(dv, 'attention dv'),
      ...floatArg(dout, 'attention dout'),
      delta.ptr,
      ptrOf(lse, 'f32', 'attention lse'),
      ...common(d, q, k, v, keyMask),
    ]);
  } finally {
    dev.allocator.release(delta.ptr, delta.size);
  }
  return false;
}
