/**
 * Matrix products over typed arrays: the reference the GPU's cuBLAS calls are checked against,
 * and fast enough to train tiny models. Products are computed with B either row-major [K, N]
 * (i-k-j order, four output rows per pass so each B row is loaded once for four) or stored
 * transposed [N, K] (dot products of contiguous rows, again four rows of A at a time). NF4
 * weights are dequantized a slab of rows at a time into a scratch buffer, never whole.
 */
import type { HostFloats as Floats, Nf4Weight } from '../backend.js';

/** A strided 2-D operand: element (r, c) is data[offset + r * ld + c]. */
interface Mat {
  data: Floats;
  offset: number;
  ld: number;
}

/**
 * out (=|+=) alpha * A[M,K] @ B where B is [K,N], or [N,K] when transB.
 * Accumulation happens in JS doubles within a row pass, then rounds once into out.
 */
export function gemm(
  out: Mat,
  a: Mat,
  b: Mat,
  M: number,
  N: number,
  K: number,
  transB: boolean,
  alpha: number,
  accumulate: boolean,
): void {
  if (transB) gemmNT(out, a, b, M, N, K, alpha, accumulate);
  else gemmNN(out, a, b, M, N, K, alpha, accumulate);
}

function gemmNT(out: Mat, a: Mat, b: Mat, M: number, N: number, K: number, alpha: number, acc: boolean): void {
  const A = a.data,
    B = b.data,
    O = out.data;
  const ld = out.ld;
  let i = 0;
  // 4 rows of A x 2 rows of B per pass: 8 products for 6 loads.
  for (; i + 4 <= M; i += 4) {
    const a0 = a.offset + i * a.ld,
      a1 = a0 + a.ld,
      a2 = a1 + a.ld,
      a3 = a2 + a.ld;
    const o0 = out.offset + i * ld;
    let j = 0;
    for (; j + 2 <= N; j += 2) {
      const b0 = b.offset + j * b.ld,
        b1 = b0 + b.ld;
      let s00 = 0,
        s10 = 0,
        s20 = 0,
        s30 = 0,
        s01 = 0,
        s11 = 0,
        s21 = 0,
        s31 = 0;
      for (let k = 0; k < K; k++) {
        const x = B[b0 + k],
          y = B[b1 + k];
        const p0 = A[a0 + k],
          p1 = A[a1 + k],
          p2 = A[a2 + k],
          p3 = A[a3 + k];
        s00 += p0 * x;
        s10 += p1 * x;
        s20 += p2 * x;
        s30 += p3 * x;
        s01 += p0 * y;
        s11 += p1 * y;
        s21 += p2 * y;
        s31 += p3 * y;
      }
      store(O, o0 + j, ld, alpha, acc, s00, s10, s20, s30);
      store(O, o0 + j + 1, ld, alpha, acc, s01, s11, s21, s31);
    }
    for (; j < N; j++) {
      const bj = b.offset + j * b.ld;
      let s0 = 0,
        s1 = 0,
        s2 = 0,
        s3 = 0;
      for (let k = 0; k < K; k++) {
        const x = B[bj + k];
        s0 += A[a0 + k] * x;
        s1 += A[a1 + k] * x;
        s2 += A[a2 + k] * x;
        s3 += A[a3 + k] * x;
      }
      store(O, o0 + j, ld, alpha, acc, s0, s1, s2, s3);
    }
  }
  for (; i < M; i++) {
    const ai = a.offset + i * a.ld;
    const oi = out.offset + i * ld;
    for (let j = 0; j < N; j++) {
      const bj = b.offset + j * b.ld;
      let s = 0;
      for (let k = 0; k < K; k++) s += A[ai + k] * B[bj + k];
      O[oi + j] = acc ? O[oi + j] + alpha * s : alpha * s;
    }
  }
}

/** Writes (or adds) alpha * s0..s3 to one column of four consecutive output rows. */
function store(
  O: Floats,
  o: number,
  ld: number,
  alpha: number,
  acc: boolean,
  s0: number,
  s1: number,
  s2: number,
  s3: number,
): void {
  if (acc) {
    O[o] += alpha * s0;
    O[o + ld] += alpha * s1;
    O[o + 2 * ld] += alpha * s2;
    O[o + 3 * ld] += alpha * s3;
  } else {
    O[o] = alpha * s0;
    O[o + ld] = alpha * s1;
    O[o + 2 * ld] = alpha * s2;
    O[o + 3 * ld] = alpha * s3;
  }
}

let rowScratch = new Float64Array(0);
/** Columns of B transposed at once when turning a row-major product into dot products. */
const PANEL = 64;
/** gemmNN's panels (grow-only, by element type: NF4 slabs would otherwise allocate one per slab). */
let panel64 = new Float64Array(0);
let panel32 = new Float32Array(0);

function gemmNN(out: Mat, a: Mat, b: Mat, M: number, N: number, K: number, alpha: number, acc: boolean): void {
  if (M < 8) {
    gemmNNRows(out, a, b, M, N, K, alpha, acc);
    return;
  }
  // Dot products over contiguous rows run faster than row updates, so transpose B a panel of
  // columns at a time (bounded scratch even for a vocabulary-sized B).
  let panel: Floats;
  if (b.data instanceof Float64Array) {
    if (panel64.length < PANEL * K) panel64 = new Float64Array(PANEL * K);
    panel = panel64;
  } else {
    if (panel32.length < PANEL * K) panel32 = new Float32Array(PANEL * K);
    panel = panel32;
  }
  for (let j0 = 0; j0 < N; j0 += PANEL) {
    const nb = Math.min(PANEL, N - j0);
    for (let k = 0; k < K; k++) {
      const row = b.offset + k * b.ld + j0;
      for (let j = 0; j < nb; j++) panel[j * K + k] = b.data[row + j];
    }
    gemmNT({ ...out, offset: out.offset + j0 }, a, { data: panel, offset: 0, ld: K }, M, nb, K, alpha, acc);
  }
}

function gemmNNRows(out: Mat, a: Mat, b: Mat, M: number, N: number, K: number, alpha: number, acc: boolean): void {
  const A = a.data,
    B = b.data,
    O = out.data;
  if (rowScratch.length < 4 * N) rowScratch = new Float64Array(4 * N);
  const r = rowScratch;
  for (let i = 0; i < M; i += 4) {
    const rows = Math.min(4, M - i);
    r.fill(0, 0, 4 * N);
    const a0 = a.offset + i * a.ld;
    for (let k = 0; k < K; k++) {
      const bk = b.offset + k * b.ld;
      const v0 = A[a0 + k];
      const v1 = rows > 1 ? A[a0 + a.ld + k] : 0;
      const v2 = rows > 2 ? A[a0 + 2 * a.ld + k] : 0;
      const v3 = rows > 3 ? A[a0 + 3 * a.ld + k] : 0;
      for (let j = 0; j < N; j++) {
        const bv = B[bk + j];
        r[j] += v0 * bv;
        r[N + j] += v1 * bv;
        r[2 * N + j] += v2 * bv;
        r[3 * N + j] += v3 * bv;
      }
    }
    for (let q = 0; q < rows; q++) {
      const o = out.offset + (i + q) * out.ld;
      const s = q * N;
      if (acc) for (let j = 0; j < N; j++) O[o + j] += alpha * r[s + j];
      else for (let j = 0; j < N; j++) O[o + j] = alpha * r[s + j];
    }
  }
}

/** Rows [r0, r0 + count) of an NF4 weight as f32, written to dst[0 .. count * cols). */
function dequantizeNf4Rows(w: Nf4Weight, r0: number, count: number, dst: Floats): void {
  const cols = w.shape[1];
  const start = r0 * cols,
    end = start + count * cols;
  const { code, codes, absmax, blockSize } = w;
  for (let e = start; e < end; e++) {
    const byte = codes[e >> 1];
    const nib = (e & 1) === 0 ? byte >> 4 : byte & 15;
    dst[e - start] = code[nib] * absmax[Math.floor(e / blockSize)];
  }
}

/** Elements dequantized per slab: large enough to amortize the loop, small enough for cache. */
const SLAB_ELEMENTS = 1 << 16;

/** out (=|+=) alpha * A[M,K] @ op(W) with W an NF4 weight, a slab of W's rows at a time. */
export function gemmNf4(
  out: Mat,
  a: Mat,
  w: Nf4Weight,
  M: number,
  N: number,
  K: number,
  transB: boolean,
  alpha: number,
  accumulate: boolean,
): void {
  const [wr, wc] = w.shape;
  const slabRows = Math.max(1, Math.floor(SLAB_ELEMENTS / wc));
  const scratch = new Float32Array(slabRows * wc);
  for (let r0 = 0; r0 < wr; r0 += slabRows) {
    const n = Math.min(slabRows, wr - r0);
    dequantizeNf4Rows(w, r0, n, scratch);
    const slab = { data: scratch, offset: 0, ld: wc };
    if (transB) {
      // W is [N, K]: this slab yields output columns r0 .. r0 + n.
      gemmNT({ ...out, offset: out.offset + r0 }, a, slab, M, n, K, alpha, accumulate);
    } else {
      // W is [K, N]: this slab is the K-range r0 .. r0 + n; later slabs add to the first.
      gemmNN(out, { ...a, offset: a.offset + r0 }, slab, M, N, n, alpha, accumulate || r0 > 0);
    }
  }
}

/** A [rows, cols] matrix transposed into a new [cols, rows] array. */
export function transpose(src: Floats, offset: number, rows: number, cols: number): Floats {
  const dst = src instanceof Float64Array ? new Float64Array(rows * cols) : new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const s = offset + r * cols;
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[s + c];
  }
  return dst;
}
