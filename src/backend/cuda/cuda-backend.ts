/**
 * The CUDA backend: every kernel of the Backend interface on an NVIDIA GPU, in bf16 compute
 * (activations and frozen weights) with f32 accumulation, LoRA weights and optimizer state in
 * f32. All work is queued asynchronously on one stream; the host waits only in download(),
 * where the interface hands values back. Device memory comes from a caching allocator, so a
 * training step allocates nothing from the driver after the first one.
 *
 * Kernels that meet invalid input on the device (a token id or target outside the vocabulary)
 * cannot throw there; they set a device error word, which download() checks and reports.
 */
import { f32ToBf16Bits, f32ToF16Bits } from '../../tensor/dtype.js';
import { UserError } from '../../util/errors.js';
import {
  checkReshape,
  checkRows,
  checkSameSize,
  shapeSize,
  type AdamWOptions,
  type AttentionBackwardOptions,
  type AttentionOptions,
  type Backend,
  type FloatDType,
  type HostFloats,
  type LoraInputGradient,
  type MatmulOptions,
  type Nf4Weight,
  type PendingDownload,
  type Tensor,
  type TensorDType,
} from '../backend.js';
import { attentionBackwardCuda, attentionForwardCuda } from './attention.js';
import { Cublas, type GemmDType } from './cublas.js';
import { asCuda, CudaTensor, elementBytes, floatArg, isFloat } from './cuda-tensor.js';
import * as decode from './decode-ops.js';
import { DeviceErrors } from './device-errors.js';
import { CudaDevice } from './device.js';
import * as ew from './elementwise-ops.js';
import { nvrtcApi } from './ffi.js';
import { HostCopies } from './host-copies.js';
import { elementwise } from './launch.js';
import * as lora from './lora-ops.js';
import { cudaMatmul, type MatmulHost } from './matmul.js';
import * as mm from './matmul-many.js';
import { AddressArrays } from './matmul-many.js';
import type { MemoryStats } from './memory.js';
import * as nf4 from './nf4-dequant.js';
import * as rope from './rope.js';
import { RopeCaches } from './rope.js';
import * as rows from './row-ops.js';
import * as transfers from './transfers.js';

export interface CudaBackendOptions {
  /** Device ordinal (default 0). */
  device?: number;
  /** Float dtype of activations and frozen weights (default bf16; f32 runs the model in full precision). */
  computeDType?: FloatDType;
}

export class CudaBackend implements Backend, MatmulHost {
  readonly name: string;
  readonly computeDType: FloatDType;
  readonly device: CudaDevice;
  readonly gemm: Cublas;
  /** @internal The rest are the operation modules' state. */
  readonly errors: DeviceErrors;
  readonly hostCopies: HostCopies;
  readonly ropes = new RopeCaches(this);
  readonly addressArrays: AddressArrays;

  constructor(opts: CudaBackendOptions = {}) {
    this.device = new CudaDevice(opts.device ?? 0);
    if (this.device.cc < 80) {
      throw new UserError(
        `the CUDA backend needs a GPU of compute capability 8.0 or newer (bf16, large shared memory); ${this.device.name} has ${this.device.cc / 10}`,
      );
    }
    this.gemm = new Cublas(this.device.stream);
    nvrtcApi(); // kernels compile on first use; a missing NVRTC should fail here, not mid-run
    this.computeDType = opts.computeDType ?? 'bf16';
    this.name = `cuda:${this.device.ordinal} (${this.device.name})`;
    this.errors = new DeviceErrors(this.device);
    this.hostCopies = new HostCopies(this.device.api, this.device.stream);
    this.addressArrays = new AddressArrays(this.device);
  }

  // ---- memory ----

  alloc(shape: readonly number[], dtype: TensorDType = 'f32'): Tensor {
    const t = this.raw(shape, dtype, 'alloc');
    this.device.memset(t.ptr, 8, 0, t.size * elementBytes(t.dtype as Exclude<TensorDType, 'nf4'>));
    return t;
  }

  empty(shape: readonly number[], dtype: TensorDType = 'f32'): Tensor {
    return this.raw(shape, dtype, 'empty');
  }

  upload(data: HostFloats | Int32Array, shape: readonly number[], dtype: TensorDType = 'f32'): Tensor {
    return transfers.upload(this, data, shape, dtype);
  }

  uploadNf4(w: Nf4Weight): Tensor {
    return transfers.uploadNf4(this, w);
  }

  quantizeNf4(values: Float32Array, shape: [number, number], scales: (absmax: Float32Array) => Float32Array): Tensor {
    return transfers.quantizeNf4(this, values, shape, scales);
  }

  download(t: Tensor): HostFloats {
    return transfers.download(this, t);
  }

  free(t: Tensor): void {
    const c = asCudaAny(t);
    if (c.base) throw new Error('free: cannot free a view; free the tensor it came from');
    if (c.freed) return;
    c.freed = true;
    for (const b of c.blocks) this.device.allocator.release(b.ptr, b.size);
  }

  rows(t: Tensor, start: number, count: number): Tensor {
    const c = asCuda(t, 'rows');
    checkRows(c, start, count);
    const rowSize = c.size / c.shape[0];
    return new CudaTensor(
      [count, ...c.shape.slice(1)],
      c.dtype,
      c.ptr + start * rowSize * elementBytes(c.dtype),
      [],
      c.base ?? c,
    );
  }

  reshape(t: Tensor, shape: readonly number[]): Tensor {
    const c = asCuda(t, 'reshape');
    checkReshape(c, shape);
    return new CudaTensor([...shape], c.dtype, c.ptr, [], c.base ?? c, c.nf4);
  }

  copy(dst: Tensor, src: Tensor): void {
    checkSameSize('copy', dst, src);
    const d = asCuda(dst, 'copy dst'),
      s = asCuda(src, 'copy src');
    if (d.dtype === 'nf4' || s.dtype === 'nf4' || (d.dtype === 'i32') !== (s.dtype === 'i32')) {
      throw new TypeError(`copy: ${s.dtype} -> ${d.dtype} is not supported`);
    }
    if (d.dtype === s.dtype) this.device.copy(d.ptr, s.ptr, d.size * elementBytes(d.dtype));
    else this.convert(d, s);
  }

  fill(t: Tensor, value: number): void {
    const c = asCuda(t, 'fill');
    switch (c.dtype) {
      case 'f32':
        this.device.memset(c.ptr, 32, new Uint32Array(Float32Array.of(value).buffer)[0], c.size);
        break;
      case 'i32':
        this.device.memset(c.ptr, 32, value | 0, c.size);
        break;
      case 'bf16':
        this.device.memset(c.ptr, 16, f32ToBf16Bits(value), c.size);
        break;
      case 'f16':
        this.device.memset(c.ptr, 16, f32ToF16Bits(value), c.size);
        break;
      default:
        throw new TypeError('fill: nf4 tensors cannot be filled');
    }
  }

  // ---- linear algebra ----

  matmul(out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions = {}): void {
    cudaMatmul(this, out, a, b, opts);
  }
  addBias(x: Tensor, bias: Tensor): void {
    ew.addBias(this, x, bias);
  }

  // ---- elementwise and reductions ----

  add(out: Tensor, a: Tensor, b: Tensor): void {
    ew.add(this, out, a, b);
  }

  axpy(y: Tensor, x: Tensor, alpha: number): void {
    ew.axpy(this, y, x, alpha);
  }

  scale(x: Tensor, s: number): void {
    ew.scale(this, x, s);
  }

  sum(out: Tensor, x: Tensor, accumulate = false): void {
    rows.reduce(this, out, x, false, accumulate);
  }

  sumSquares(out: Tensor, x: Tensor, accumulate = false): void {
    rows.reduce(this, out, x, true, accumulate);
  }

  clipByNorm(x: Tensor, sumSquares: Tensor, maxNorm: number): void {
    ew.clipByNorm(this, x, sumSquares, maxNorm);
  }

  dropout(out: Tensor, x: Tensor, p: number, seed: number): void {
    ew.dropout(this, out, x, p, seed);
  }

  loraDown(us: readonly Tensor[], x: Tensor, as: readonly Tensor[], p: number, seeds: readonly number[]): void {
    lora.loraDown(this, us, x, as, p, seeds);
  }

  loraUpBackward(
    gradBs: readonly Tensor[],
    gs: readonly Tensor[],
    dys: readonly Tensor[],
    us: readonly Tensor[],
    bs: readonly Tensor[],
    alpha: number,
  ): void {
    lora.loraUpBackward(this, gradBs, gs, dys, us, bs, alpha);
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
    lora.loraDownGrads(this, gradAs, gs, x, p, seeds, alpha, input);
  }

  // ---- model layers ----

  embedding(out: Tensor, table: Tensor, ids: Tensor): void {
    rows.embedding(this, out, table, ids);
  }

  rmsNormForward(out: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    rows.rmsNormForward(this, out, rstd, x, weight, eps);
  }

  rmsNormBackward(dx: Tensor, dout: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, accumulate = false): void {
    rows.rmsNormBackward(this, dx, dout, x, weight, rstd, accumulate);
  }

  ropeForward(out: Tensor, x: Tensor, positions: Tensor, theta: number, bias?: Tensor): void {
    checkSameSize('ropeForward', out, x);
    if (rope.rope(this, out, x, positions, theta, 1, bias) || !bias) return;
    // No fused kernel with a bias for these dtypes: add the bias (in out), then rotate in place
    // (as x's [N, heads, head dim], which out need not share).
    if (asCuda(out, 'ropeForward out').ptr !== asCuda(x, 'ropeForward x').ptr) this.copy(out, x);
    this.addBias(out, bias);
    rope.rope(this, out, this.reshape(out, x.shape), positions, theta, 1);
  }

  ropeBackward(dx: Tensor, dout: Tensor, positions: Tensor, theta: number): void {
    checkSameSize('ropeBackward', dx, dout);
    rope.rope(this, dx, dout, positions, theta, -1);
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
    attentionForwardCuda(this.device, this.gemm, out, lse, q, k, v, keyMask, opts);
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
    const rope = opts.rope;
    const hd = q.shape[q.shape.length - 1];
    const tables = rope && hd % 2 === 0 ? this.ropes.cosSin(rope.theta, hd, k.shape[1] ?? 0) : null;
    if (
      !attentionBackwardCuda(this.device, this.gemm, dq, dk, dv, dout, q, k, v, out, lse, keyMask, opts, tables) &&
      rope
    ) {
      this.ropeBackward(dq, dq, rope.positions, rope.theta);
      this.ropeBackward(dk, dk, rope.positions, rope.theta);
    }
  }

  swigluForward(out: Tensor, gate: Tensor, up: Tensor): void {
    ew.swigluForward(this, out, gate, up);
  }

  swigluBackward(dgate: Tensor, dup: Tensor, dout: Tensor, gate: Tensor, up: Tensor): void {
    ew.swigluBackward(this, dgate, dup, dout, gate, up);
  }

  crossEntropy(losses: Tensor, logits: Tensor, targets: Tensor, dlogits?: Tensor, gradScale = 1): void {
    rows.crossEntropy(this, losses, logits, targets, dlogits, gradScale);
  }

  // ---- optimizer ----

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    ew.adamw(this, param, grad, m, v, o);
  }

  // ---- inference ----

  matmulBatch(outs: readonly Tensor[], as: readonly Tensor[], bs: readonly Tensor[], opts: MatmulOptions = {}): void {
    mm.matmulBatch(this, outs, as, bs, opts);
  }

  matmulMany(
    outs: readonly Tensor[],
    a: Tensor,
    bs: readonly Tensor[],
    biases: readonly (Tensor | null)[] = [],
    accumulate = false,
  ): void {
    mm.matmulMany(this, outs, a, bs, biases, accumulate);
  }

  matmulSum(out: Tensor, as: readonly Tensor[], bs: readonly Tensor[], accumulate = false): void {
    mm.matmulSum(this, out, as, bs, accumulate);
  }

  downloadAsync(t: Tensor): PendingDownload {
    return transfers.downloadAsync(this, t);
  }

  addI32(x: Tensor, value: number): void {
    decode.addI32(this, x, value);
  }

  gatherRows(out: Tensor, src: Tensor, index: Tensor): void {
    decode.copyRows(this, 'gatherRows', out, src, index, false);
  }

  scatterRows(out: Tensor, src: Tensor, index: Tensor): void {
    decode.copyRows(this, 'scatterRows', out, src, index, true);
  }

  argmaxRows(out: Tensor, x: Tensor): void {
    decode.argmaxRows(this, out, x);
  }

  addRmsNorm(sum: Tensor, out: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor, eps: number): void {
    rows.addRmsNorm(this, sum, out, rstd, a, b, weight, eps);
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
    rope.ropeAppendKv(this, kCache, vCache, q, k, v, positions, offset, theta);
  }

  synchronize(): void {
    this.device.synchronize();
  }

  memoryStats(): MemoryStats {
    return this.device.allocator.stats();
  }

  /** @internal MatmulHost: an uninitialized tensor from the allocator. */
  scratch(shape: readonly number[], dtype: GemmDType): CudaTensor {
    return this.raw(shape, dtype, 'scratch');
  }

  /** @internal */
  releaseScratch(t: CudaTensor): void {
    this.free(t);
  }

  /** @internal dst = src converted between float dtypes (same size). */
  convert(dst: CudaTensor, src: CudaTensor): void {
    elementwise(this.device, 'convert', dst.size, [
      ...floatArg(dst, 'convert dst'),
      ...floatArg(src, 'convert src'),
      dst.size,
    ]);
  }

  /** @internal dsts[i] = the dequantized NF4 weights ws[i] (see nf4-dequant.ts). */
  dequantizeNf4Many(dsts: readonly CudaTensor[], ws: readonly CudaTensor[]): void {
    nf4.dequantizeNf4Many(this, dsts, ws);
  }

  /** @internal dst (float, w's size) = the dequantized NF4 weight w. */
  dequantizeNf4(dst: CudaTensor, w: CudaTensor): void {
    nf4.dequantizeNf4(this, dst, w);
  }

  /** @internal An uninitialized tensor from the allocator. */
  raw(shape: readonly number[], dtype: TensorDType, what: string): CudaTensor {
    if (dtype === 'nf4') throw new TypeError(`${what}: nf4 tensors come from uploadNf4`);
    if (!isFloat(dtype) && dtype !== 'i32') throw new TypeError(`${what}: unknown dtype ${String(dtype)}`);
    const block = this.device.allocator.alloc(shapeSize(shape) * elementBytes(dtype));
    return new CudaTensor([...shape], dtype, block.ptr, [block]);
  }
}

/** Like asCuda, but accepts freed tensors (free is idempotent). */
function asCudaAny(t: Tensor): CudaTensor {
  if (!(t instanceof CudaTensor)) throw new TypeError('free: not a CUDA tensor');
  return t;
}
