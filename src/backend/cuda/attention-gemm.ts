/**
 * Attention as matrix products, for training and prompt prefill: for a chunk of sequences the
 * scaled scores S = scale Q K^T of every (sequence, head) are one batched cuBLAS product into
 * an f32 buffer, a row kernel turns them into probabilities P (in the activation dtype) and
 * the row's log-sum-exp, and O = P V is a second batched product. The backward pass recomputes
 * S, forms dP = dO V^T, dS = P (dP - delta) scale, and gets dQ = dS K, dK = dS^T Q, dV = P^T dO
 * from batched products as well; heads sharing a key/value head add into it one group member at
 * a time. Tensor cores do the work; the score buffers are transient and bounded by
 * SCORE_BUDGET (sequences are processed in chunks), and nothing of size T x S is kept.
 */
import type { AttentionDims, Tensor } from '../backend.js';
import type { Cublas, GemmDType } from './cublas.js';
import { asCuda, elementBytes, floatArg, ptrOf, type Block } from './cuda-tensor.js';
import type { CudaDevice } from './device.js';
import { ATTENTION_SCORES } from './kernels/attention-scores.js';
import { DTYPE_CODE } from './kernels/common.js';
import { ELEMENTWISE } from './kernels/elementwise.js';

/** Transient score memory per chunk of sequences. */
const SCORE_BUDGET = 512 * 2 ** 20;

/** Device arrays of matrix addresses for batched products, uploaded together. */
class AddressArrays {
  private readonly values: number[] = [];

  /** Adds one array; returns its offset (in entries) within the upload. */
  add(addresses: number[]): number {
    const at = this.values.length;
    this.values.push(...addresses);
    return at;
  }

  upload(dev: CudaDevice): Block {
    return dev.uploadAddresses(this.values);
  }
}

interface Chunk {
  b0: number;
  count: number;
}

function chunks(d: AttentionDims, bytesPerScore: number): Chunk[] {
  const perSequence = d.H * d.T * d.kvLen * bytesPerScore;
  const size = Math.max(1, Math.min(d.B, Math.floor(SCORE_BUDGET / perSequence)));
  const out: Chunk[] = [];
  for (let b0 = 0; b0 < d.B; b0 += size) out.push({ b0, count: Math.min(size, d.B - b0) });
  return out;
}

/** Addresses of every (sequence, head) matrix of a chunk, in (b, h) order. */
function layout(d: AttentionDims, c: Chunk, es: number) {
  const G = d.H / d.Hkv;
  const pairs: { b: number; h: number; i: number }[] = [];
  for (let b = c.b0; b < c.b0 + c.count; b++)
    for (let h = 0; h < d.H; h++) pairs.push({ b, h, i: (b - c.b0) * d.H + h });
  return {
    pairs,
    /** [T, hd] rows of head h in a [B, T, H, hd] tensor (row stride H * hd). */
    q: (base: number, b: number, h: number) => base + (b * d.T * d.H + h) * d.hd * es,
    /** [S, hd] rows of the kv head of query head h in a [B, S, Hkv, hd] tensor (elements of `size` bytes). */
    kv: (base: number, b: number, h: number, size = es) => base + (b * d.S * d.Hkv + Math.floor(h / G)) * d.hd * size,
    /** Score matrix i of a [count * H, T, kvLen] buffer of element size `size`. */
    score: (base: number, i: number, size: number) => base + i * d.T * d.kvLen * size,
  };
}

function rowThreads(L: number): number {
  return Math.min(256, 32 * Math.ceil(L / 32));
}

export function attentionForwardGemm(
  dev: CudaDevice,
  blas: Cublas,
  d: AttentionDims,
  out: Tensor,
  lse: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  keyMask: Tensor,
): void {
  const dt = asCuda(q, 'attention q').dtype as GemmDType;
  const es = elementBytes(dt);
  const [Q, K, V, O] = [q, k, v, out].map((t) => floatArg(t, 'attention')[0]);
  const lsePtr = ptrOf(lse, 'f32', 'attention lse'),
    mask = ptrOf(keyMask, 'i32', 'attention keyMask');
  const L = d.kvLen;
  const softmax = dev.kernel(ATTENTION_SCORES, 'attn_softmax');
  for (const c of chunks(d, 4 + es)) {
    const n = c.count * d.H;
    const scores = dev.allocator.alloc(n * d.T * L * 4),
      probs = dev.allocator.alloc(n * d.T * L * es);
    const lay = layout(d, c, es);
    const arrays = new AddressArrays();
    const qA = arrays.add(lay.pairs.map((p) => lay.q(Q, p.b, p.h)));
    const kA = arrays.add(lay.pairs.map((p) => lay.kv(K, p.b, p.h)));
    const vA = arrays.add(lay.pairs.map((p) => lay.kv(V, p.b, p.h)));
    const oA = arrays.add(lay.pairs.map((p) => lay.q(O, p.b, p.h)));
    const sA = arrays.add(lay.pairs.map((p) => lay.score(scores.ptr, p.i, 4)));
    const pA = arrays.add(lay.pairs.map((p) => lay.score(probs.ptr, p.i, es)));
    const block = arrays.upload(dev);
    const at = (offset: number): number => block.ptr + offset * 8;
    blas.gemmArrays({
      M: d.T,
      N: L,
      K: d.hd,
      transA: false,
      transB: true,
      dtype: dt,
      outDtype: 'f32',
      aArray: at(qA),
      lda: d.H * d.hd,
      bArray: at(kA),
      ldb: d.Hkv * d.hd,
      cArray: at(sA),
      ldc: L,
      alpha: d.scale,
      beta: 0,
      batch: n,
    });
    dev.launch(softmax, [n * d.T], rowThreads(L), 0, [
      probs.ptr,
      floatArg(q, 'attention q')[1],
      lsePtr,
      scores.ptr,
      mask,
      c.b0,
      d.T,
      d.S,
      d.H,
      L,
    ]);
    blas.gemmArrays({
      M: d.T,
      N: d.hd,
      K: L,
      transA: false,
      transB: false,
      dtype: dt,
      outDtype: dt,
      aArray: at(pA),
      lda: L,
      bArray: at(vA),
      ldb: d.Hkv * d.hd,
      cArray: at(oA),
      ldc: d.H * d.hd,
      alpha: 1,
      beta: 0,
      batch: n,
    });
    for (const b of [scores, probs, block]) dev.allocator.release(b.ptr, b.size);
  }
}

/** `delta` holds rowsum(dout * out) per (b, t, h) (f32). */
export function attentionBackwardGemm(
  dev: CudaDevice,
  blas: Cublas,
  d: AttentionDims,
  dq: Tensor,
  dk: Tensor,
  dv: Tensor,
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  lse: Tensor,
  keyMask: Tensor,
  delta: number,
): void {
  const dt = asCuda(q, 'attention q').dtype as GemmDType;
  const es = elementBytes(dt),
    code = floatArg(q, 'attention q')[1];
  const [Q, K, V, dO, dQ, dK, dV] = [q, k, v, dout, dq, dk, dv].map((t) => floatArg(t, 'attention')[0]);
  const lsePtr = ptrOf(lse, 'f32', 'attention lse'),
    mask = ptrOf(keyMask, 'i32', 'attention keyMask');
  const L = d.kvLen,
    G = d.H / d.Hkv;
  // Group members add into a shared kv head: in f32 scratch, so 16-bit storage rounds only once.
  const kvSize = d.B * d.S * d.Hkv * d.hd;
  const accumulate = G > 1 && dt !== 'f32';
  const accK = accumulate ? dev.allocator.alloc(kvSize * 4) : null,
    accV = accumulate ? dev.allocator.alloc(kvSize * 4) : null;
  const kvType: GemmDType = accumulate ? 'f32' : dt,
    kvEs = accumulate ? 4 : es;
  const dKt = accK?.ptr ?? dK,
    dVt = accV?.ptr ?? dV;
  // Key slots past kvLen get no gradient; the products below write only the first kvLen rows.
  if (L < d.S) for (const p of [dKt, dVt]) dev.memset(p, 8, 0, kvSize * kvEs);
  const grad = dev.kernel(ATTENTION_SCORES, 'attn_grad_scores');
  for (const c of chunks(d, 8 + 2 * es)) {
    const n = c.count * d.H,
      size = n * d.T * L;
    const scores = dev.allocator.alloc(size * 4),
      dP = dev.allocator.alloc(size * 4);
    const probs = dev.allocator.alloc(size * es),
      dS = dev.allocator.alloc(size * es);
    const lay = layout(d, c, es);
    const arrays = new AddressArrays();
    const all = (f: (b: number, h: number, i: number) => number): number =>
      arrays.add(lay.pairs.map((p) => f(p.b, p.h, p.i)));
    const qA = all((b, h) => lay.q(Q, b, h)),
      doA = all((b, h) => lay.q(dO, b, h)),
      dqA = all((b, h) => lay.q(dQ, b, h));
    const kA = all((b, h) => lay.kv(K, b, h)),
      vA = all((b, h) => lay.kv(V, b, h));
    const sA = all((_b, _h, i) => lay.score(scores.ptr, i, 4)),
      dpA = all((_b, _h, i) => lay.score(dP.ptr, i, 4));
    const dsA = all((_b, _h, i) => lay.score(dS.ptr, i, es));
    // Per group member g: the (b, h = kh * G + g) pairs, so each kv head is written once per call.
    const members = Array.from({ length: G }, (_, g) => lay.pairs.filter((p) => p.h % G === g));
    const byMember = (f: (b: number, h: number, i: number) => number): number[] =>
      members.map((ps) => arrays.add(ps.map((p) => f(p.b, p.h, p.i))));
    const mQ = byMember((b, h) => lay.q(Q, b, h)),
      mdO = byMember((b, h) => lay.q(dO, b, h));
    const mdK = byMember((b, h) => lay.kv(dKt, b, h, kvEs)),
      mdV = byMember((b, h) => lay.kv(dVt, b, h, kvEs));
    const mdS = byMember((_b, _h, i) => lay.score(dS.ptr, i, es)),
      mP = byMember((_b, _h, i) => lay.score(probs.ptr, i, es));
    const block = arrays.upload(dev);
    const at = (offset: number): number => block.ptr + offset * 8;
    const rowsQ = d.H * d.hd,
      rowsKV = d.Hkv * d.hd;

    blas.gemmArrays({
      M: d.T,
      N: L,
      K: d.hd,
      transA: false,
      transB: true,
      dtype: dt,
      outDtype: 'f32',
      aArray: at(qA),
      lda: rowsQ,
      bArray: at(kA),
      ldb: rowsKV,
      cArray: at(sA),
      ldc: L,
      alpha: d.scale,
      beta: 0,
      batch: n,
    });
    blas.gemmArrays({
      M: d.T,
      N: L,
      K: d.hd,
      transA: false,
      transB: true,
      dtype: dt,
      outDtype: 'f32',
      aArray: at(doA),
      lda: rowsQ,
      bArray: at(vA),
      ldb: rowsKV,
      cArray: at(dpA),
      ldc: L,
      alpha: 1,
      beta: 0,
      batch: n,
    });
    dev.launch(grad, [n * d.T], rowThreads(L), 0, [
      probs.ptr,
      dS.ptr,
      code,
      scores.ptr,
      dP.ptr,
      lsePtr,
      delta,
      mask,
      c.b0,
      d.T,
      d.S,
      d.H,
      L,
      d.scale,
    ]);
    blas.gemmArrays({
      M: d.T,
      N: d.hd,
      K: L,
      transA: false,
      transB: false,
      dtype: dt,
      outDtype: dt,
      aArray: at(dsA),
      lda: L,
      bArray: at(kA),
      ldb: rowsKV,
      cArray: at(dqA),
      ldc: rowsQ,
      alpha: 1,
      beta: 0,
      batch: n,
    });
    for (let g = 0; g < G; g++) {
      const batch = members[g].length,
        beta = g === 0 ? 0 : 1;
      blas.gemmArrays({
        M: L,
        N: d.hd,
        K: d.T,
        transA: true,
        transB: false,
        dtype: dt,
        outDtype: kvType,
        aArray: at(mdS[g]),
        lda: L,
        bArray: at(mQ[g]),
        ldb: rowsQ,
        cArray: at(mdK[g]),
        ldc: rowsKV,
        alpha: 1,
        beta,
        batch,
      });
      blas.gemmArrays({
        M: L,
        N: d.hd,
        K: d.T,
        transA: true,
        transB: false,
        dtype: dt,
        outDtype: kvType,
        aArray: at(mP[g]),
        lda: L,
        bArray: at(mdO[g]),
        ldb: rowsQ,
        cArray: at(mdV[g]),
        ldc: rowsKV,
        alpha: 1,
        beta,
        batch,
      });
    }
    for (const b of [scores, dP, probs, dS, block]) dev.allocator.release(b.ptr, b.size);
  }
  if (accK && accV) {
    const convert = dev.kernel(ELEMENTWISE, 'convert');
    const grid = Math.max(1, Math.min(Math.ceil(kvSize / 256), dev.smCount * 32));
    dev.launch(convert, [grid], 256, 0, [dK, code, accK.ptr, DTYPE_CODE.f32, kvSize]);
    dev.launch(convert, [grid], 256, 0, [dV, code, accV.ptr, DTYPE_CODE.f32, kvSize]);
    for (const b of [accK, accV]) dev.allocator.release(b.ptr, b.size);
  }
}
