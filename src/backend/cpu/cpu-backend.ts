/**
 * The CPU backend: every kernel of the Backend interface in plain TypeScript over typed arrays.
 * Single-threaded and exact-ish (reductions in doubles), it is the reference the CUDA backend
 * is tested against and runs tiny models for tests and demos.
 */
import {
  attentionBackwardDims,
  attentionForwardDims,
  checkNf4Payload,
  checkNf4Values,
  checkBias,
  checkDropoutP,
  checkMatmulBatch,
  checkMatmulMany,
  checkMatmulSum,
  checkReshape,
  checkRows,
  checkSameSize,
  checkUploadSize,
  copyRowsDims,
  expectShape,
  loraDownGradsDims,
  loraGroupDims,
  loraUpDims,
  matmulDims,
  ropeAppendKvDims,
  shapeSize,
  type AdamWOptions,
  type AttentionBackwardOptions,
  type AttentionOptions,
  type Backend,
  type HostFloats,
  type LoraInputGradient,
  type MatmulOptions,
  type Nf4Weight,
  type PendingDownload,
  type Tensor,
  type TensorDType,
} from '../backend.js';
import { NF4_BLOCKSIZE, NF4_CODE, nf4Blocks } from '../../tensor/nf4-blocks.js';
import { loraDownComposed, loraDownGradsComposed, loraUpBackwardComposed } from '../lora-composed.js';
import { attentionBackwardCpu, attentionForwardCpu } from './attention.js';
import { CpuTensor, f32, i32, nf4Of } from './cpu-tensor.js';
import {
  adamwCpu,
  argmaxRowsCpu,
  crossEntropyCpu,
  dropoutCpu,
  embeddingCpu,
  rmsNormBackwardCpu,
  rmsNormForwardCpu,
  ropeAppendKvCpu,
  ropeCpu,
  swigluBackwardCpu,
  swigluForwardCpu,
} from './kernels.js';
import { gemm, gemmNf4, transpose } from './matmul.js';

export interface CpuBackendOptions {
  /**
   * Hold "f32" tensors in doubles: every kernel then runs in f64, which finite-difference
   * gradient checks need to reach tight tolerances. Not for normal use.
   */
  float64?: boolean;
}

export class CpuBackend implements Backend {
  readonly name: string;
  readonly computeDType = 'f32' as const;
  private readonly float64: boolean;

  constructor(opts: CpuBackendOptions = {}) {
    this.float64 = opts.float64 ?? false;
    this.name = this.float64 ? 'cpu-f64' : 'cpu';
  }

  private storageFor(dtype: TensorDType, n: number): HostFloats | Int32Array {
    if (dtype === 'f32') return this.float64 ? new Float64Array(n) : new Float32Array(n);
    if (dtype === 'i32') return new Int32Array(n);
    throw new TypeError(`the CPU backend stores f32 and i32 tensors (and nf4 weights), not ${dtype}`);
  }

  alloc(shape: readonly number[], dtype: TensorDType = 'f32'): Tensor {
    return new CpuTensor([...shape], dtype, this.storageFor(dtype, shapeSize(shape)));
  }

  empty(shape: readonly number[], dtype: TensorDType = 'f32'): Tensor {
    return this.alloc(shape, dtype);
  }

  upload(data: HostFloats | Int32Array, shape: readonly number[], dtype: TensorDType = 'f32'): Tensor {
    const n = checkUploadSize(data, shape);
    const store = this.storageFor(dtype, n);
    store.set(data);
    return new CpuTensor([...shape], dtype, store);
  }

  uploadNf4(w: Nf4Weight): Tensor {
    checkNf4Payload(w);
    return new CpuTensor([...w.shape], 'nf4', new Float32Array(0), w);
  }

  quantizeNf4(values: Float32Array, shape: [number, number], scales: (absmax: Float32Array) => Float32Array): Tensor {
    checkNf4Values(values, shape);
    const { packed, absmax } = nf4Blocks(values, NF4_BLOCKSIZE);
    return this.uploadNf4({
      shape: [shape[0], shape[1]],
      blockSize: NF4_BLOCKSIZE,
      code: NF4_CODE,
      codes: packed,
      absmax: scales(absmax),
    });
  }

  download(t: Tensor): HostFloats {
    const c = t as CpuTensor;
    if (c.dtype === 'nf4') throw new TypeError('download: nf4 tensors are write-only');
    const src = c.dtype === 'f32' ? f32(t) : i32(t);
    return this.float64 ? Float64Array.from(src) : Float32Array.from(src);
  }

  free(t: Tensor): void {
    const c = t as CpuTensor;
    if (c.base) throw new Error('free: cannot free a view; free the tensor it came from');
    c.freed = true;
  }

  rows(t: Tensor, start: number, count: number): Tensor {
    const c = t as CpuTensor;
    checkRows(c, start, count);
    const rowSize = c.size / c.shape[0];
    return new CpuTensor(
      [count, ...c.shape.slice(1)],
      c.dtype,
      c.data.subarray(start * rowSize, (start + count) * rowSize),
      null,
      c.base ?? c,
    );
  }

  reshape(t: Tensor, shape: readonly number[]): Tensor {
    const c = t as CpuTensor;
    checkReshape(c, shape);
    return new CpuTensor([...shape], c.dtype, c.data, c.nf4, c.base ?? c);
  }

  copy(dst: Tensor, src: Tensor): void {
    checkSameSize('copy', dst, src);
    const d = dst as CpuTensor,
      s = src as CpuTensor;
    if ((d.dtype === 'i32') !== (s.dtype === 'i32'))
      throw new TypeError(`copy: ${s.dtype} -> ${d.dtype} is not supported`);
    d.data.set(s.dtype === 'f32' ? f32(s) : i32(s));
  }

  fill(t: Tensor, value: number): void {
    (t as CpuTensor).data.fill(value);
  }

  matmul(out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions = {}): void {
    const { transA = false, transB = false, alpha = 1, accumulate = false } = opts;
    const { batched, batch, M, K, N } = matmulDims(out, a, b, opts);
    const A = f32(a, 'matmul a'),
      O = f32(out, 'matmul out');
    const w = nf4Of(b, 'matmul b');
    const B = w ? null : f32(b, 'matmul b');
    for (let i = 0; i < batch; i++) {
      const aData = transA ? transpose(A, i * M * K, K, M) : A;
      const aMat = { data: aData, offset: transA ? 0 : i * M * K, ld: K };
      const oMat = { data: O, offset: i * M * N, ld: N };
      if (w) gemmNf4(oMat, aMat, w, M, N, K, transB, alpha, accumulate);
      else
        gemm(
          oMat,
          aMat,
          { data: B as HostFloats, offset: batched ? i * K * N : 0, ld: transB ? K : N },
          M,
          N,
          K,
          transB,
          alpha,
          accumulate,
        );
    }
  }

  addBias(x: Tensor, bias: Tensor): void {
    const X = f32(x, 'addBias x'),
      b = f32(bias, 'addBias bias');
    const D = b.length;
    checkBias(x, D);
    for (let o = 0; o < X.length; o += D) for (let i = 0; i < D; i++) X[o + i] += b[i];
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    checkSameSize('add', out, a, b);
    const O = f32(out),
      A = f32(a),
      B = f32(b);
    for (let i = 0; i < O.length; i++) O[i] = A[i] + B[i];
  }

  axpy(y: Tensor, x: Tensor, alpha: number): void {
    checkSameSize('axpy', y, x);
    const Y = f32(y),
      X = f32(x);
    for (let i = 0; i < Y.length; i++) Y[i] += alpha * X[i];
  }

  scale(x: Tensor, s: number): void {
    const X = f32(x);
    for (let i = 0; i < X.length; i++) X[i] *= s;
  }

  clipByNorm(x: Tensor, sumSquares: Tensor, maxNorm: number): void {
    const norm = Math.sqrt(f32(sumSquares, 'clipByNorm sumSquares')[0]);
    const coef = maxNorm / (norm + 1e-6);
    if (Number.isFinite(norm) && coef < 1) this.scale(x, coef);
  }

  sum(out: Tensor, x: Tensor, accumulate = false): void {
    const X = f32(x),
      O = f32(out, 'sum out');
    let s = 0;
    for (let i = 0; i < X.length; i++) s += X[i];
    O[0] = accumulate ? O[0] + s : s;
  }

  sumSquares(out: Tensor, x: Tensor, accumulate = false): void {
    const X = f32(x),
      O = f32(out, 'sumSquares out');
    let s = 0;
    for (let i = 0; i < X.length; i++) s += X[i] * X[i];
    O[0] = accumulate ? O[0] + s : s;
  }

  dropout(out: Tensor, x: Tensor, p: number, seed: number): void {
    checkSameSize('dropout', out, x);
    checkDropoutP(p);
    dropoutCpu(f32(out), f32(x), p, seed);
  }

  loraDown(us: readonly Tensor[], x: Tensor, as: readonly Tensor[], p: number, seeds: readonly number[]): void {
    loraGroupDims('loraDown', us, as, seeds, x);
    loraDownComposed(this, us, x, as, p, seeds);
  }

  loraDownGrads(
    gradAs: readonly Tensor[],
    gs: readonly Tensor[],
    x: Tensor,
    p: number,
    seeds: readonly number[],
    alpha: number,
    input: LoraInputGradient | null,
  ): void {
    loraDownGradsDims(gradAs, gs, x, seeds, input);
    loraDownGradsComposed(this, gradAs, gs, x, p, seeds, alpha, input);
  }

  loraUpBackward(
    gradBs: readonly Tensor[],
    gs: readonly Tensor[],
    dys: readonly Tensor[],
    us: readonly Tensor[],
    bs: readonly Tensor[],
    alpha: number,
  ): void {
    loraUpDims(gradBs, gs, dys, us, bs);
    loraUpBackwardComposed(this, gradBs, gs, dys, us, bs, alpha);
  }

  embedding(out: Tensor, table: Tensor, ids: Tensor): void {
    const D = table.shape[1];
    expectShape('embedding out', out, [ids.size, D]);
    embeddingCpu(f32(out), f32(table), i32(ids, 'embedding ids'), D);
  }

  rmsNormForward(out: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    checkSameSize('rmsNormForward', out, x);
    if (rstd.size * weight.size !== x.size) throw new Error('rmsNormForward: rstd must have one entry per row of x');
    rmsNormForwardCpu(f32(out), f32(rstd), f32(x), f32(weight), eps);
  }

  rmsNormBackward(dx: Tensor, dout: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, accumulate = false): void {
    checkSameSize('rmsNormBackward', dx, dout, x);
    rmsNormBackwardCpu(f32(dx), f32(dout), f32(x), f32(weight), f32(rstd), accumulate);
  }

  ropeForward(out: Tensor, x: Tensor, positions: Tensor, theta: number, bias?: Tensor): void {
    checkSameSize('ropeForward', out, x);
    let input = x;
    if (bias) {
      input = this.alloc(x.shape, x.dtype);
      this.copy(input, x);
      this.addBias(input, bias);
    }
    ropeCpu(f32(out), f32(input), i32(positions, 'rope positions'), x.shape[x.shape.length - 1], theta, 1);
    if (input !== x) this.free(input);
  }

  ropeBackward(dx: Tensor, dout: Tensor, positions: Tensor, theta: number): void {
    checkSameSize('ropeBackward', dx, dout);
    ropeCpu(f32(dx), f32(dout), i32(positions, 'rope positions'), dout.shape[dout.shape.length - 1], theta, -1);
  }

  attentionForward(
    out: Tensor,
    lse: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    keyMask: Tensor,
    opts: AttentionOptions = {},
  ): void {
    const d = attentionForwardDims(out, lse, q, k, v, keyMask, opts);
    attentionForwardCpu(f32(out), f32(lse), f32(q), f32(k), f32(v), i32(keyMask, 'attention keyMask'), d);
  }

  attentionBackward(
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
  ): void {
    const d = attentionBackwardDims(dq, dk, dv, dout, q, k, v, out, lse, keyMask, opts);
    attentionBackwardCpu(
      f32(dq),
      f32(dk),
      f32(dv),
      f32(dout),
      f32(q),
      f32(k),
      f32(v),
      f32(out),
      f32(lse),
      i32(keyMask),
      d,
    );
    if (opts.rope) {
      const pos = i32(opts.rope.positions, 'rope positions');
      ropeCpu(f32(dq), f32(dq), pos, d.hd, opts.rope.theta, -1);
      ropeCpu(f32(dk), f32(dk), pos, d.hd, opts.rope.theta, -1);
    }
  }

  swigluForward(out: Tensor, gate: Tensor, up: Tensor): void {
    checkSameSize('swigluForward', out, gate, up);
    swigluForwardCpu(f32(out), f32(gate), f32(up));
  }

  swigluBackward(dgate: Tensor, dup: Tensor, dout: Tensor, gate: Tensor, up: Tensor): void {
    checkSameSize('swigluBackward', dgate, dup, dout, gate, up);
    swigluBackwardCpu(f32(dgate), f32(dup), f32(dout), f32(gate), f32(up));
  }

  crossEntropy(losses: Tensor, logits: Tensor, targets: Tensor, dlogits?: Tensor, gradScale = 1): void {
    const N = targets.size;
    if (logits.size % N !== 0 || losses.size !== N)
      throw new Error('crossEntropy: logits must be [N, V] with N targets and N losses');
    if (dlogits) checkSameSize('crossEntropy dlogits', dlogits, logits);
    crossEntropyCpu(
      f32(losses),
      f32(logits),
      i32(targets, 'crossEntropy targets'),
      dlogits ? f32(dlogits) : null,
      gradScale,
    );
  }

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, opts: AdamWOptions): void {
    checkSameSize('adamw', param, grad, m, v);
    adamwCpu(f32(param), f32(grad), f32(m), f32(v), opts);
  }

  matmulBatch(outs: readonly Tensor[], as: readonly Tensor[], bs: readonly Tensor[], opts: MatmulOptions = {}): void {
    checkMatmulBatch(outs, as, bs);
    outs.forEach((out, i) => this.matmul(out, as[i], bs[i], opts));
  }

  matmulMany(
    outs: readonly Tensor[],
    a: Tensor,
    bs: readonly Tensor[],
    biases: readonly (Tensor | null)[] = [],
    accumulate = false,
  ): void {
    checkMatmulMany(outs, bs);
    outs.forEach((out, i) => this.matmul(out, a, bs[i], { transB: true, accumulate }));
    outs.forEach((out, i) => {
      const bias = biases[i];
      if (bias) this.addBias(out, bias);
    });
  }

  matmulSum(out: Tensor, as: readonly Tensor[], bs: readonly Tensor[], accumulate = false): void {
    checkMatmulSum(as, bs);
    as.forEach((a, i) => this.matmul(out, a, bs[i], { accumulate: accumulate || i > 0 }));
  }

  downloadAsync(t: Tensor): PendingDownload {
    // Work runs as it is called here, so the values are final already.
    const values = this.download(t);
    return { wait: () => values };
  }

  addI32(x: Tensor, value: number): void {
    const X = i32(x, 'addI32 x');
    for (let i = 0; i < X.length; i++) X[i] += value;
  }

  gatherRows(out: Tensor, src: Tensor, index: Tensor): void {
    this.copyRows('gatherRows', out, src, index, false);
  }

  scatterRows(out: Tensor, src: Tensor, index: Tensor): void {
    this.copyRows('scatterRows', out, src, index, true);
  }

  /** Rows index[i] of src to rows i of out (gather), or rows i of src to rows index[i] of out (scatter). */
  private copyRows(what: string, out: Tensor, src: Tensor, index: Tensor, scatter: boolean): void {
    const o = out as CpuTensor,
      s = src as CpuTensor,
      idx = i32(index, `${what} index`);
    const { rows, width } = copyRowsDims(what, out, src, index, scatter);
    const O = o.dtype === 'f32' ? f32(o) : i32(o),
      S = s.dtype === 'f32' ? f32(s) : i32(s);
    const side = scatter ? 'destination' : 'source';
    idx.forEach((r, i) => {
      if (!(r >= 0 && r < rows)) throw new RangeError(`${what}: index ${r} is outside the ${rows} ${side} rows`);
      if (scatter) O.set(S.subarray(i * width, (i + 1) * width), r * width);
      else O.set(S.subarray(r * width, (r + 1) * width), i * width);
    });
  }

  argmaxRows(out: Tensor, x: Tensor): void {
    const O = i32(out, 'argmaxRows out');
    if (x.size % O.length !== 0) throw new Error(`argmaxRows: x [${x.shape.join(', ')}] is not ${O.length} rows`);
    argmaxRowsCpu(O, f32(x, 'argmaxRows x'));
  }

  addRmsNorm(sum: Tensor, out: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor, eps: number): void {
    this.add(sum, a, b);
    this.rmsNormForward(out, rstd, sum, weight, eps);
  }

  ropeAppendKv(
    kCache: Tensor,
    vCache: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    positions: Tensor,
    offset: number,
    theta: number,
  ): void {
    const d = ropeAppendKvDims(kCache, vCache, q, k, v, positions, offset);
    ropeAppendKvCpu(
      f32(kCache),
      f32(vCache),
      f32(q),
      f32(k),
      f32(v),
      i32(positions, 'ropeAppendKv positions'),
      d.T,
      d.S,
      offset,
      d.hd,
      theta,
    );
  }
}
