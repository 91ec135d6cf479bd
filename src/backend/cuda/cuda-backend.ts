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
import { f16ToF32, bf16ToF32, f32ToBf16Bits, f32ToF16Bits } from '../../tensor/dtype.js';
import { NF4_BLOCKSIZE, NF4_CODE } from '../../tensor/nf4-blocks.js';
import { UserError } from '../../util/errors.js';
import {
  checkNf4Payload,
  checkNf4Values,
  checkSameSize,
  copyRowsDims,
  expectShape,
  loraDownGradsDims,
  loraGroupDims,
  loraUpDims,
  matmulDims,
  ropeAppendKvDims,
  ropeInvFreq,
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
import { attentionBackwardCuda, attentionForwardCuda, type RopeTables } from './attention.js';
import { Cublas, type GemmDType } from './cublas.js';
import { asCuda, cudaOff, CudaTensor, elementBytes, floatArg, isFloat, ptrOf, type Block } from './cuda-tensor.js';
import { CudaDevice } from './device.js';
import { nvrtcApi } from './ffi.js';
import { DEVICE_ERRORS, DTYPE_CODE } from './kernels/common.js';
import { DECODE } from './kernels/decode.js';
import { ELEMENTWISE } from './kernels/elementwise.js';
import { loraDownComposed, loraDownGradsComposed, loraUpBackwardComposed } from '../lora-composed.js';
import {
  LORA,
  LORA_DOWN,
  LORA_GRAD_A,
  LORA_RANKS,
  LORA_UP_BWD,
  loraDropoutArgs,
  loraGroupMax,
  loraSeedMix,
} from './kernels/lora.js';
import { CE_CLUSTER, NORM_ROW_CHUNKS, ROWS } from './kernels/rows.js';
import { HostCopies } from './host-copies.js';
import type { MemoryStats } from './memory.js';
import { cudaMatmul, type MatmulHost } from './matmul.js';

export interface CudaBackendOptions {
  /** Device ordinal (default 0). */
  device?: number;
  /** Float dtype of activations and frozen weights (default bf16; f32 runs the model in full precision). */
  computeDType?: FloatDType;
}

/** RoPE's device tables for one (theta, head dim): see CudaBackend.ropeCache. */
interface RopeCache {
  invFreq: CudaTensor;
  /** rope_table's (cosine, sine) [P, hd / 2, 2] of positions [0, P); null until the attention backward's fused RoPE asks. */
  cosSin: CudaTensor | null;
}

/** Elements converted per staged upload chunk (64 MiB of f32). */
const UPLOAD_CHUNK = 1 << 24;

export class CudaBackend implements Backend, MatmulHost {
  readonly name: string;
  readonly computeDType: FloatDType;
  readonly device: CudaDevice;
  readonly gemm: Cublas;
  private readonly errorWord: Block;
  private readonly errorHost = new Int32Array(1);
  /** RoPE's device tables by (theta, head dim). */
  private readonly ropeCaches = new Map<string, RopeCache>();
  private readonly hostCopies: HostCopies;
  /** Device arrays of matrix addresses for matmulMany, by their contents (a decoding loop repeats a few). */
  private readonly addressArrays = new Map<string, Block>();

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
    this.errorWord = this.device.allocator.alloc(4);
    this.device.memset(this.errorWord.ptr, 32, 0, 1);
    this.hostCopies = new HostCopies(this.device.api, this.device.stream);
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
    const n = shapeSize(shape);
    if (data.length !== n) throw new Error(`upload: ${data.length} values for shape [${shape.join(', ')}]`);
    const t = this.raw(shape, dtype, 'upload');
    if (dtype === 'i32') {
      this.device.upload(t.ptr, data instanceof Int32Array ? data : Int32Array.from(data));
    } else if (dtype === 'f32') {
      this.device.upload(t.ptr, data instanceof Float32Array ? data : Float32Array.from(data));
    } else {
      // 16-bit floats: stage f32 chunks on the device and convert there (rounding to nearest even).
      const src = data instanceof Float32Array ? data : Float32Array.from(data);
      const stage = this.device.allocator.alloc(Math.min(n, UPLOAD_CHUNK) * 4);
      const fn = this.device.kernel(ELEMENTWISE, 'convert');
      for (let i = 0; i < n; i += UPLOAD_CHUNK) {
        const m = Math.min(UPLOAD_CHUNK, n - i);
        this.device.upload(stage.ptr, src.subarray(i, i + m));
        this.device.launch(fn, [this.gridFor(m)], 256, 0, [
          t.ptr + i * 2,
          DTYPE_CODE[dtype as FloatDType],
          stage.ptr,
          DTYPE_CODE.f32,
          m,
        ]);
      }
      this.device.allocator.release(stage.ptr, stage.size);
    }
    return t;
  }

  uploadNf4(w: Nf4Weight): Tensor {
    checkNf4Payload(w);
    const n = w.shape[0] * w.shape[1];
    const put = (data: Uint8Array | Float32Array): Block => {
      const b = this.device.allocator.alloc(data.byteLength);
      this.device.upload(b.ptr, data);
      return b;
    };
    const codes = put(w.codes.subarray(0, Math.ceil(n / 2)));
    const absmax = put(w.absmax.subarray(0, Math.ceil(n / w.blockSize)));
    const code = put(Float32Array.from(w.code));
    return new CudaTensor([...w.shape], 'nf4', codes.ptr, [codes, absmax, code], null, {
      absmax: absmax.ptr,
      code: code.ptr,
      blockSize: w.blockSize,
    });
  }

  quantizeNf4(values: Float32Array, shape: [number, number], scales: (absmax: Float32Array) => Float32Array): Tensor {
    checkNf4Values(values, shape);
    const n = values.length,
      blocks = Math.ceil(n / NF4_BLOCKSIZE);
    const alloc = this.device.allocator;
    const src = this.upload(values, [n]);
    const codes = alloc.alloc(Math.ceil(n / 2)),
      code = alloc.alloc(NF4_CODE.byteLength);
    const absmax = this.raw([blocks], 'f32', 'quantizeNf4');
    this.device.upload(code.ptr, NF4_CODE);
    // One warp (32 threads) per block of 64.
    this.elementwise('nf4_quantize64', 32 * blocks, [codes.ptr, absmax.ptr, ptrArg(src), code.ptr, n]);
    this.free(src);
    // The scales from the absmax on the host (double quantization is a few operations per 64 weights), written over them.
    this.device.upload(absmax.ptr, scales(this.download(absmax) as Float32Array));
    return new CudaTensor([...shape], 'nf4', codes.ptr, [codes, ...absmax.blocks, code], null, {
      absmax: absmax.ptr,
      code: code.ptr,
      blockSize: NF4_BLOCKSIZE,
    });
  }

  download(t: Tensor): HostFloats {
    const c = asCuda(t, 'download');
    if (c.dtype === 'nf4') throw new TypeError('download: nf4 tensors are write-only');
    const n = c.size;
    let out: Float32Array;
    if (c.dtype === 'f32') {
      out = new Float32Array(n);
      this.device.download(out, c.ptr);
      this.finish();
    } else if (c.dtype === 'i32') {
      const ints = new Int32Array(n);
      this.device.download(ints, c.ptr);
      this.finish();
      out = Float32Array.from(ints);
    } else {
      const bits = new Uint16Array(n);
      this.device.download(bits, c.ptr);
      this.finish();
      out = c.dtype === 'bf16' ? bf16ToF32(bits) : f16ToF32(bits);
    }
    return out;
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
    if (c.dtype === 'nf4') throw new TypeError('rows: nf4 tensors cannot be sliced');
    const rowSize = c.size / c.shape[0];
    if (start < 0 || count < 0 || start + count > c.shape[0]) {
      throw new RangeError(`rows: [${start}, ${start + count}) outside dimension 0 of [${c.shape.join(', ')}]`);
    }
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
    if (shapeSize(shape) !== c.size)
      throw new Error(
        `reshape: [${c.shape.join(', ')}] has ${c.size} elements, [${shape.join(', ')}] needs ${shapeSize(shape)}`,
      );
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
    const D = bias.size;
    if (x.size % D !== 0) throw new Error(`addBias: bias of ${D} does not divide [${x.shape.join(', ')}]`);
    if (D % 8 === 0 && this.bf16x8(x, bias))
      this.elementwise('add_bias_bf16x8', x.size / 8, [ptrArg(x), ptrArg(bias), x.size / 8, D / 8]);
    else
      this.elementwise('add_bias', x.size, [...floatArg(x, 'addBias x'), ...floatArg(bias, 'addBias bias'), x.size, D]);
  }

  // ---- elementwise and reductions ----

  add(out: Tensor, a: Tensor, b: Tensor): void {
    checkSameSize('add', out, a, b);
    if (this.bf16x8(out, a, b))
      this.elementwise('add_bf16x8', out.size / 8, [ptrArg(out), ptrArg(a), ptrArg(b), out.size / 8]);
    else
      this.elementwise('add', out.size, [
        ...floatArg(out, 'add out'),
        ...floatArg(a, 'add a'),
        ...floatArg(b, 'add b'),
        out.size,
      ]);
  }

  axpy(y: Tensor, x: Tensor, alpha: number): void {
    checkSameSize('axpy', y, x);
    this.elementwise('axpy', y.size, [...floatArg(y, 'axpy y'), ...floatArg(x, 'axpy x'), alpha, y.size]);
  }

  scale(x: Tensor, s: number): void {
    this.elementwise('scale', x.size, [...floatArg(x, 'scale x'), s, x.size]);
  }

  sum(out: Tensor, x: Tensor, accumulate = false): void {
    this.reduce(out, x, false, accumulate);
  }

  sumSquares(out: Tensor, x: Tensor, accumulate = false): void {
    this.reduce(out, x, true, accumulate);
  }

  clipByNorm(x: Tensor, sumSquares: Tensor, maxNorm: number): void {
    this.elementwise('clip_by_norm', x.size, [
      ...floatArg(x, 'clipByNorm x'),
      ptrOf(sumSquares, 'f32', 'clipByNorm sumSquares'),
      maxNorm,
      x.size,
    ]);
  }

  dropout(out: Tensor, x: Tensor, p: number, seed: number): void {
    checkSameSize('dropout', out, x);
    if (!(p >= 0 && p < 1)) throw new RangeError(`dropout: p must be in [0, 1), got ${p}`);
    const o = asCuda(out, 'dropout out'),
      s = asCuda(x, 'dropout x');
    if (p === 0) {
      if (o.ptr !== s.ptr || o.dtype !== s.dtype) this.copy(out, x);
      return;
    }
    const seedMix = loraSeedMix(seed);
    if (this.bf16x8(out, x))
      this.elementwise('dropout_bf16x8', out.size / 8, [o.ptr, s.ptr, p, 1 / (1 - p), seedMix, out.size / 8]);
    else
      this.elementwise('dropout', out.size, [
        ...floatArg(out, 'dropout out'),
        ...floatArg(x, 'dropout x'),
        p,
        1 / (1 - p),
        seedMix,
        out.size,
      ]);
  }

  loraDown(us: readonly Tensor[], x: Tensor, as: readonly Tensor[], p: number, seeds: readonly number[]): void {
    const { N, r, D } = loraGroupDims('loraDown', us, as, seeds, x);
    if (!this.fusedLora([...us, x, ...as], r, [D], 'lora-down')) {
      loraDownComposed(this, us, x, as, p, seeds);
      return;
    }
    if (N === 0) return;
    for (const c of loraChunks(us.length, r)) {
      const M = c.length;
      this.device.launch(
        this.device.kernel(LORA, `lora_down_${r}_${M}`),
        [Math.ceil(N / LORA_DOWN.rows)],
        LORA_DOWN.threads,
        LORA_DOWN.sharedBytes(r, M),
        [
          ...pad3(c.map((m) => ptrArg(us[m]))),
          ptrArg(x),
          ...pad3(c.map((m) => ptrArg(as[m]))),
          N,
          D,
          ...dropoutArgs(
            p,
            c.map((m) => seeds[m]),
          ),
        ],
      );
    }
  }

  loraUpBackward(
    gradBs: readonly Tensor[],
    gs: readonly Tensor[],
    dys: readonly Tensor[],
    us: readonly Tensor[],
    bs: readonly Tensor[],
    alpha: number,
  ): void {
    const { N, r, outs } = loraUpDims(gradBs, gs, dys, us, bs);
    if (
      r > LORA_UP_BWD.rankPad ||
      !this.fusedLora([...gs, ...dys, ...us, ...bs], r, outs, 'lora-up-bwd') ||
      gradBs.some((t) => asCuda(t, 'loraUpBackward gradB').dtype !== 'f32')
    ) {
      loraUpBackwardComposed(this, gradBs, gs, dys, us, bs, alpha);
      return;
    }
    if (N === 0) return;
    const part = LORA_UP_BWD.rankPad * 4;
    for (const c of loraChunks(gs.length, r)) {
      const M = c.length;
      const O = pad3(c.map((m) => outs[m])),
        Omax = Math.max(...O);
      const rowBlocks = Math.ceil(N / LORA_UP_BWD.rows),
        colBlocks = Math.ceil(Omax / LORA_UP_BWD.cols);
      const gpart = this.device.allocator.alloc(M * colBlocks * N * part),
        bpart = this.device.allocator.alloc(M * rowBlocks * Omax * part);
      this.device.launch(
        this.device.kernel(LORA, 'lora_up_bwd'),
        [rowBlocks, colBlocks, M],
        LORA_UP_BWD.threads,
        LORA_UP_BWD.sharedBytes,
        [
          gpart.ptr,
          bpart.ptr,
          ...pad3(c.map((m) => ptrArg(dys[m]))),
          ...pad3(c.map((m) => ptrArg(us[m]))),
          ...pad3(c.map((m) => ptrArg(bs[m]))),
          ...O,
          N,
          r,
        ],
      );
      this.device.launch(this.device.kernel(LORA, 'lora_up_bwd_sum'), [this.gridFor(M * (N + Omax) * r)], 256, 0, [
        ...pad3(c.map((m) => ptrArg(gs[m]))),
        ...pad3(c.map((m) => ptrOf(gradBs[m], 'f32', 'loraUpBackward gradB'))),
        gpart.ptr,
        bpart.ptr,
        ...O,
        N,
        r,
        M,
        colBlocks,
        rowBlocks,
        alpha,
      ]);
      this.device.allocator.release(gpart.ptr, gpart.size);
      this.device.allocator.release(bpart.ptr, bpart.size);
    }
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
    const { N, r, D } = loraDownGradsDims(gradAs, gs, x, seeds, input);
    const operands = [...gs, x, ...(input ? [input.dx, ...input.as] : [])];
    if (
      !this.fusedLora(operands, r, [D], 'lora-grads') ||
      gradAs.some((t) => asCuda(t, 'loraDownGrads gradA').dtype !== 'f32')
    ) {
      loraDownGradsComposed(this, gradAs, gs, x, p, seeds, alpha, input);
      return;
    }
    if (N === 0) return;
    const d = loraDropoutArgs(p);
    loraChunks(gs.length, r).forEach((c, i) => {
      const M = c.length;
      const chunks = Math.ceil(N / LORA_GRAD_A.rows);
      const part = this.device.allocator.alloc(chunks * M * r * D * 4);
      const grid = [Math.ceil(D / LORA_GRAD_A.cols), chunks];
      const g = pad3(c.map((m) => ptrArg(gs[m]))),
        seedMix = pad3(c.map((m) => loraSeedMix(seeds[m])));
      if (input) {
        // Both gradients from one pass over x's tiles, the masks computed once.
        this.device.launch(
          this.device.kernel(LORA, `lora_grads_${r}_${M}`),
          grid,
          LORA_GRAD_A.threads,
          LORA_GRAD_A.sharedBytes(r, M, true),
          [
            part.ptr,
            ptrArg(input.dx),
            ...g,
            ptrArg(x),
            ...pad3(c.map((m) => ptrArg(input.as[m]))),
            N,
            D,
            d.keepFrom,
            alpha * d.keepScale,
            ...seedMix,
            d.drop,
            input.accumulate || i > 0 ? 1 : 0,
          ],
        );
      } else {
        this.device.launch(
          this.device.kernel(LORA, `lora_grad_a_${r}_${M}`),
          grid,
          LORA_GRAD_A.threads,
          LORA_GRAD_A.sharedBytes(r, M, false),
          [part.ptr, ...g, ptrArg(x), N, D, d.keepFrom, ...seedMix, d.drop],
        );
      }
      // The kernels sum masked, unscaled values: dropout's 1 / (1 - p) joins alpha.
      this.device.launch(this.device.kernel(LORA, 'lora_grad_a_sum'), [this.gridFor(M * r * D)], 256, 0, [
        ...pad3(c.map((m) => ptrOf(gradAs[m], 'f32', 'loraDownGrads gradA'))),
        part.ptr,
        chunks,
        M,
        r * D,
        alpha * d.keepScale,
      ]);
      this.device.allocator.release(part.ptr, part.size);
    });
  }

  // ---- model layers ----

  embedding(out: Tensor, table: Tensor, ids: Tensor): void {
    const [V, D] = table.shape;
    expectShape('embedding out', out, [ids.size, D]);
    if (ids.size === 0) return;
    const fn = this.device.kernel(ELEMENTWISE, 'embedding');
    this.device.launch(fn, [ids.size], Math.min(256, 32 * Math.ceil(D / 32)), 0, [
      ...floatArg(out, 'embedding out'),
      ...floatArg(table, 'embedding table'),
      ptrOf(ids, 'i32', 'embedding ids'),
      D,
      V,
      this.errorWord.ptr,
    ]);
  }

  rmsNormForward(out: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    checkSameSize('rmsNormForward', out, x);
    if (rstd.size * weight.size !== x.size) throw new Error('rmsNormForward: rstd must have one entry per row of x');
    if (rstd.size === 0) return;
    const D = weight.size;
    if (this.normRows8(D) && this.bf16x8(out, x, weight)) {
      this.device.launch(this.device.kernel(ROWS, 'rmsnorm_fwd_bf16x8'), [rstd.size], this.rowThreads8(D / 8), 0, [
        ptrArg(out),
        ptrOf(rstd, 'f32', 'rmsNorm rstd'),
        ptrArg(x),
        ptrArg(weight),
        D / 8,
        eps,
      ]);
      return;
    }
    this.device.launch(this.device.kernel(ROWS, 'rmsnorm_fwd'), [rstd.size], this.rowThreads(D), 0, [
      ...floatArg(out, 'rmsNorm out'),
      ptrOf(rstd, 'f32', 'rmsNorm rstd'),
      ...floatArg(x, 'rmsNorm x'),
      ...floatArg(weight, 'rmsNorm weight'),
      D,
      eps,
    ]);
  }

  rmsNormBackward(dx: Tensor, dout: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, accumulate = false): void {
    checkSameSize('rmsNormBackward', dx, dout, x);
    if (rstd.size * weight.size !== x.size) throw new Error('rmsNormBackward: rstd must have one entry per row of x');
    if (rstd.size === 0) return;
    const D = weight.size;
    if (D % 8 === 0 && this.bf16x8(dx, dout, x, weight)) {
      this.device.launch(this.device.kernel(ROWS, 'rmsnorm_bwd_bf16x8'), [rstd.size], this.rowThreads8(D / 8), 0, [
        ptrArg(dx),
        ptrArg(dout),
        ptrArg(x),
        ptrArg(weight),
        ptrOf(rstd, 'f32', 'rmsNorm rstd'),
        D / 8,
        accumulate ? 1 : 0,
      ]);
      return;
    }
    this.device.launch(this.device.kernel(ROWS, 'rmsnorm_bwd'), [rstd.size], this.rowThreads(D), 0, [
      ...floatArg(dx, 'rmsNorm dx'),
      ...floatArg(dout, 'rmsNorm dout'),
      ...floatArg(x, 'rmsNorm x'),
      ...floatArg(weight, 'rmsNorm weight'),
      ptrOf(rstd, 'f32', 'rmsNorm rstd'),
      D,
      accumulate ? 1 : 0,
    ]);
  }

  ropeForward(out: Tensor, x: Tensor, positions: Tensor, theta: number, bias?: Tensor): void {
    checkSameSize('ropeForward', out, x);
    if (this.rope(out, x, positions, theta, 1, bias) || !bias) return;
    // No fused kernel with a bias for these dtypes: add the bias (in out), then rotate in place
    // (as x's [N, heads, head dim], which out need not share).
    if (asCuda(out, 'ropeForward out').ptr !== asCuda(x, 'ropeForward x').ptr) this.copy(out, x);
    this.addBias(out, bias);
    this.rope(out, this.reshape(out, x.shape), positions, theta, 1);
  }

  ropeBackward(dx: Tensor, dout: Tensor, positions: Tensor, theta: number): void {
    checkSameSize('ropeBackward', dx, dout);
    this.rope(dx, dout, positions, theta, -1);
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
    const tables = rope && hd % 2 === 0 ? this.ropeCosSin(rope.theta, hd, k.shape[1] ?? 0) : null;
    if (
      !attentionBackwardCuda(this.device, this.gemm, dq, dk, dv, dout, q, k, v, out, lse, keyMask, opts, tables) &&
      rope
    ) {
      this.ropeBackward(dq, dq, rope.positions, rope.theta);
      this.ropeBackward(dk, dk, rope.positions, rope.theta);
    }
  }

  swigluForward(out: Tensor, gate: Tensor, up: Tensor): void {
    checkSameSize('swigluForward', out, gate, up);
    if (this.bf16x8(out, gate, up))
      this.elementwise('swiglu_fwd_bf16x8', out.size / 8, [ptrArg(out), ptrArg(gate), ptrArg(up), out.size / 8]);
    else
      this.elementwise('swiglu_fwd', out.size, [
        ...floatArg(out, 'swiglu out'),
        ...floatArg(gate, 'swiglu gate'),
        ...floatArg(up, 'swiglu up'),
        out.size,
      ]);
  }

  swigluBackward(dgate: Tensor, dup: Tensor, dout: Tensor, gate: Tensor, up: Tensor): void {
    checkSameSize('swigluBackward', dgate, dup, dout, gate, up);
    if (this.bf16x8(dgate, dup, dout, gate, up)) {
      this.elementwise('swiglu_bwd_bf16x8', dout.size / 8, [
        ptrArg(dgate),
        ptrArg(dup),
        ptrArg(dout),
        ptrArg(gate),
        ptrArg(up),
        dout.size / 8,
      ]);
      return;
    }
    this.elementwise('swiglu_bwd', dout.size, [
      ...floatArg(dgate, 'swiglu dgate'),
      ...floatArg(dup, 'swiglu dup'),
      ...floatArg(dout, 'swiglu dout'),
      ...floatArg(gate, 'swiglu gate'),
      ...floatArg(up, 'swiglu up'),
      dout.size,
    ]);
  }

  crossEntropy(losses: Tensor, logits: Tensor, targets: Tensor, dlogits?: Tensor, gradScale = 1): void {
    const N = targets.size;
    if (logits.size % N !== 0 || losses.size !== N)
      throw new Error('crossEntropy: logits must be [N, V] with N targets and N losses');
    if (dlogits) checkSameSize('crossEntropy dlogits', dlogits, logits);
    if (N === 0) return;
    const V = logits.size / N;
    if (V % 8 === 0 && this.bf16x8(logits, ...(dlogits ? [dlogits] : []))) {
      // One read of the logits where a cluster of blocks (sm_90) can hold the row in registers.
      const threads = 32 * Math.ceil(V / 8 / CE_CLUSTER.blocks / CE_CLUSTER.perThread / 32);
      if (this.device.cc >= 90 && threads <= 1024) {
        this.device.launch(
          this.device.kernel(ROWS, 'cross_entropy_bf16x8_cluster'),
          [N * CE_CLUSTER.blocks],
          threads,
          0,
          [
            ptrOf(losses, 'f32', 'crossEntropy losses'),
            ptrArg(logits),
            ptrOf(targets, 'i32', 'crossEntropy targets'),
            dlogits ? ptrArg(dlogits) : 0,
            dlogits ? 1 : 0,
            gradScale,
            V / 8,
            this.errorWord.ptr,
          ],
        );
        return;
      }
      this.device.launch(
        this.device.kernel(ROWS, 'cross_entropy_bf16x8'),
        [N],
        Math.min(1024, 32 * Math.ceil(V / 256)),
        0,
        [
          ptrOf(losses, 'f32', 'crossEntropy losses'),
          ptrArg(logits),
          ptrOf(targets, 'i32', 'crossEntropy targets'),
          dlogits ? ptrArg(dlogits) : 0,
          dlogits ? 1 : 0,
          gradScale,
          V / 8,
          this.errorWord.ptr,
        ],
      );
      return;
    }
    const [dPtr, dCode] = dlogits ? floatArg(dlogits, 'crossEntropy dlogits') : [0, 0];
    this.device.launch(this.device.kernel(ROWS, 'cross_entropy'), [N], Math.min(1024, 32 * Math.ceil(V / 64)), 0, [
      ptrOf(losses, 'f32', 'crossEntropy losses'),
      ...floatArg(logits, 'crossEntropy logits'),
      ptrOf(targets, 'i32', 'crossEntropy targets'),
      dPtr,
      dCode,
      dlogits ? 1 : 0,
      gradScale,
      V,
      this.errorWord.ptr,
    ]);
  }

  // ---- optimizer ----

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    checkSameSize('adamw', param, grad, m, v);
    const bc1 = 1 - o.beta1 ** o.step;
    this.elementwise('adamw', param.size, [
      ptrOf(param, 'f32', 'adamw param'),
      ptrOf(grad, 'f32', 'adamw grad'),
      ptrOf(m, 'f32', 'adamw m'),
      ptrOf(v, 'f32', 'adamw v'),
      param.size,
      o.beta1,
      o.beta2,
      1 - o.lr * o.weightDecay,
      o.lr / bc1,
      Math.sqrt(1 - o.beta2 ** o.step),
      o.eps,
    ]);
  }

  // ---- inference ----

  matmulBatch(outs: readonly Tensor[], as: readonly Tensor[], bs: readonly Tensor[], opts: MatmulOptions = {}): void {
    if (outs.length !== as.length || as.length !== bs.length)
      throw new Error(`matmulBatch: ${outs.length} outputs for ${as.length} and ${bs.length} operands`);
    if (outs.length === 0) return;
    const [A0, B0, O0] = [as[0], bs[0], outs[0]].map((t) => asCuda(t, 'matmulBatch'));
    /** Every tensor of ts 2-D with first's shape and dtype. */
    const like = (ts: readonly Tensor[], first: CudaTensor): boolean =>
      ts.every((t) => {
        const c = asCuda(t, 'matmulBatch');
        return (
          c.shape.length === 2 &&
          c.dtype === first.dtype &&
          c.shape[0] === first.shape[0] &&
          c.shape[1] === first.shape[1]
        );
      });
    // One batched product: 16-bit operands of one dtype, outputs in it or f32, equal shapes.
    const batched =
      outs.length > 1 &&
      (A0.dtype === 'bf16' || A0.dtype === 'f16') &&
      B0.dtype === A0.dtype &&
      (O0.dtype === A0.dtype || O0.dtype === 'f32') &&
      like(as, A0) &&
      like(bs, B0) &&
      like(outs, O0);
    if (!batched) {
      outs.forEach((out, i) => this.matmul(out, as[i], bs[i], opts));
      return;
    }
    const { M, K, N } = matmulDims(O0, A0, B0, opts);
    const n = outs.length;
    const arrays = this.addressArray([...as, ...bs, ...outs].map((t) => asCuda(t, 'matmulBatch').ptr));
    this.gemm.gemmArrays({
      M,
      N,
      K,
      transA: opts.transA ?? false,
      transB: opts.transB ?? false,
      dtype: A0.dtype as GemmDType,
      outDtype: O0.dtype as GemmDType,
      aArray: arrays,
      lda: A0.shape[1],
      bArray: arrays + 8 * n,
      ldb: B0.shape[1],
      cArray: arrays + 16 * n,
      ldc: N,
      alpha: opts.alpha ?? 1,
      beta: opts.accumulate ? 1 : 0,
      batch: n,
    });
  }

  matmulMany(
    outs: readonly Tensor[],
    a: Tensor,
    bs: readonly Tensor[],
    biases: readonly (Tensor | null)[] = [],
    accumulate = false,
  ): void {
    if (outs.length !== bs.length) throw new Error(`matmulMany: ${outs.length} outputs for ${bs.length} weights`);
    this.productsSharingInput(outs, a, bs, accumulate);
    // The biases, three outputs per launch; 16 bytes at a time where every tensor allows.
    const pairs = outs.flatMap((out, i) => {
      const bias = biases[i];
      if (!bias) return [];
      if (out.size % bias.size !== 0)
        throw new Error(`matmulMany: bias of ${bias.size} does not divide [${out.shape.join(', ')}]`);
      return out.size > 0 ? [{ out, bias }] : [];
    });
    const wide = pairs.every(({ out, bias }) => bias.size % 8 === 0 && this.bf16x8(out, bias));
    const args = pairs.map(({ out, bias }) =>
      wide
        ? [ptrArg(out), ptrArg(bias), out.size / 8, bias.size / 8]
        : [...floatArg(out, 'matmulMany out'), ...floatArg(bias, 'matmulMany bias'), out.size, bias.size],
    );
    const absent = wide ? [0, 0, 0, 1] : [0, 0, 0, 0, 0, 1];
    for (let i = 0; i < args.length; i += 3) {
      const part = args.slice(i, i + 3);
      const total = part.reduce((n, a) => n + a[a.length - 2], 0);
      while (part.length < 3) part.push(absent);
      this.device.launch(
        this.device.kernel(DECODE, wide ? 'add_bias3_bf16x8' : 'add_bias3'),
        [this.gridFor(total)],
        256,
        0,
        part.flat(),
      );
    }
  }

  /**
   * The products of matmulMany: one batched product per group of equally shaped weights, dense
   * in the dtype of a and the outputs, or nf4 (dequantized together into one scratch block).
   */
  private productsSharingInput(outs: readonly Tensor[], a: Tensor, bs: readonly Tensor[], accumulate: boolean): void {
    const A = asCuda(a, 'matmulMany a');
    const groups = new Map<string, number[]>();
    bs.forEach((b, i) => {
      const B = asCuda(b, 'matmulMany b'),
        O = asCuda(outs[i], 'matmulMany out');
      const batchable =
        (A.dtype === 'bf16' || A.dtype === 'f16' || A.dtype === 'f32') &&
        a.shape.length === 2 &&
        b.shape.length === 2 &&
        (B.dtype === A.dtype || (B.dtype === 'nf4' && A.dtype !== 'f32')) &&
        O.dtype === A.dtype &&
        a.shape[1] > 0;
      const key = batchable ? `${B.dtype} ${b.shape.join('x')}` : `alone ${i}`;
      const group = groups.get(key);
      if (group) group.push(i);
      else groups.set(key, [i]);
    });
    for (const group of groups.values()) {
      if (group.length === 1) {
        this.matmul(outs[group[0]], a, bs[group[0]], { transB: true, accumulate });
        continue;
      }
      const [M, K] = a.shape,
        [N, Kb] = bs[group[0]].shape;
      if (Kb !== K)
        throw new Error(`matmulMany: a [${a.shape.join(', ')}] and b [${bs[group[0]].shape.join(', ')}]ᵀ do not match`);
      for (const i of group) expectShape('matmulMany out', outs[i], [M, N]);
      const n = group.length,
        dtype = A.dtype as GemmDType;
      const nf4 = asCuda(bs[group[0]], 'matmulMany b').dtype === 'nf4';
      const dense = nf4
        ? this.dequantizedTogether(
            group.map((i) => asCuda(bs[i], 'matmulMany b')),
            dtype,
          )
        : null;
      const weights = dense ? dense.views.map((v) => v.ptr) : group.map((i) => asCuda(bs[i], 'matmulMany b').ptr);
      const arrays = this.addressArray([
        ...group.map(() => A.ptr),
        ...weights,
        ...group.map((i) => asCuda(outs[i], 'matmulMany out').ptr),
      ]);
      this.gemm.gemmArrays({
        M,
        N,
        K,
        transA: false,
        transB: true,
        dtype,
        outDtype: dtype,
        aArray: arrays,
        lda: K,
        bArray: arrays + 8 * n,
        ldb: K,
        cArray: arrays + 16 * n,
        ldc: N,
        alpha: 1,
        beta: accumulate ? 1 : 0,
        batch: n,
      });
      if (dense) this.releaseScratch(dense.scratch);
    }
  }

  matmulSum(out: Tensor, as: readonly Tensor[], bs: readonly Tensor[], accumulate = false): void {
    if (as.length !== bs.length) throw new Error(`matmulSum: ${as.length} inputs for ${bs.length} weights`);
    const O = asCuda(out, 'matmulSum out');
    const nf4 = bs.flatMap((b, i) =>
      asCuda(b, 'matmulSum b').dtype === 'nf4' && asCuda(as[i], 'matmulSum a').dtype === 'bf16' ? [i] : [],
    );
    // The nf4 weights of a bf16 product dequantized together (matmul would take them one by one).
    const together =
      O.dtype === 'bf16' && nf4.length > 1
        ? this.dequantizedTogether(
            nf4.map((i) => asCuda(bs[i], 'matmulSum b')),
            'bf16',
          )
        : null;
    const dense: Tensor[] = [...bs];
    together?.views.forEach((v, j) => {
      dense[nf4[j]] = v;
    });
    dense.forEach((b, i) => this.matmul(out, as[i], b, { accumulate: accumulate || i > 0 }));
    if (together) this.releaseScratch(together.scratch);
  }

  /** NF4 weights dequantized into one scratch block (the caller releases it): a view of it per weight, in order. */
  private dequantizedTogether(
    ws: readonly CudaTensor[],
    dtype: GemmDType,
  ): { scratch: CudaTensor; views: CudaTensor[] } {
    const scratch = this.scratch([ws.reduce((n, w) => n + w.size, 0)], dtype);
    let offset = 0;
    const views = ws.map((w) => {
      const v = new CudaTensor([...w.shape], dtype, scratch.ptr + offset * elementBytes(dtype), [], scratch);
      offset += w.size;
      return v;
    });
    this.dequantizeNf4Many(views, ws);
    return { scratch, views };
  }

  downloadAsync(t: Tensor): PendingDownload {
    const c = asCuda(t, 'downloadAsync');
    if (c.dtype === 'nf4') throw new TypeError('downloadAsync: nf4 tensors are write-only');
    const dtype = c.dtype;
    const bytes = c.size * elementBytes(dtype);
    // The error word comes along, so kernels' reports surface here as they do in download().
    const copy = this.hostCopies.start([
      { src: c.ptr, bytes },
      { src: this.errorWord.ptr, bytes: 4 },
    ]);
    let values: HostFloats | null = null;
    return {
      wait: () => {
        if (values) return values;
        const raw = this.hostCopies.wait(copy);
        this.throwDeviceError(new DataView(raw.buffer).getInt32(bytes, true));
        const data = raw.buffer.slice(0, bytes);
        values =
          dtype === 'f32'
            ? new Float32Array(data)
            : dtype === 'i32'
              ? Float32Array.from(new Int32Array(data))
              : dtype === 'bf16'
                ? bf16ToF32(new Uint16Array(data))
                : f16ToF32(new Uint16Array(data));
        return values;
      },
    };
  }

  addI32(x: Tensor, value: number): void {
    const p = ptrOf(x, 'i32', 'addI32 x');
    if (x.size > 0)
      this.device.launch(this.device.kernel(DECODE, 'add_i32'), [this.gridFor(x.size)], 256, 0, [p, value | 0, x.size]);
  }

  gatherRows(out: Tensor, src: Tensor, index: Tensor): void {
    this.copyRows('gatherRows', out, src, index, false);
  }

  scatterRows(out: Tensor, src: Tensor, index: Tensor): void {
    this.copyRows('scatterRows', out, src, index, true);
  }

  /** Rows index[i] of src to rows i of out (gather), or rows i of src to rows index[i] of out (scatter). */
  private copyRows(what: string, out: Tensor, src: Tensor, index: Tensor, scatter: boolean): void {
    const o = asCuda(out, `${what} out`),
      s = asCuda(src, `${what} src`);
    const { rows, width } = copyRowsDims(what, out, src, index, scatter);
    const N = index.size,
      listed = scatter ? s : o;
    if (N === 0 || width === 0) return;
    const rowBytes = width * elementBytes(o.dtype as Exclude<TensorDType, 'nf4'>);
    const unit = [16, 4, 2, 1].find((u) => rowBytes % u === 0 && o.ptr % u === 0 && s.ptr % u === 0) ?? 1;
    const words = rowBytes / unit;
    const idx = ptrOf(index, 'i32', `${what} index`);
    // A launch takes up to 65535 listed rows (the grid's y); more go in further launches.
    for (let r0 = 0; r0 < N; r0 += 65535) {
      const n = Math.min(65535, N - r0),
        listedPtr = listed.ptr + r0 * rowBytes;
      this.device.launch(this.device.kernel(DECODE, 'copy_rows'), [Math.min(Math.ceil(words / 256), 1024), n], 256, 0, [
        scatter ? o.ptr : listedPtr,
        scatter ? listedPtr : s.ptr,
        idx + 4 * r0,
        words,
        unit,
        rows,
        scatter ? 1 : 0,
        this.errorWord.ptr,
      ]);
    }
  }

  argmaxRows(out: Tensor, x: Tensor): void {
    const o = ptrOf(out, 'i32', 'argmaxRows out');
    const N = out.size;
    if (N === 0) return;
    if (x.size % N !== 0) throw new Error(`argmaxRows: x [${x.shape.join(', ')}] is not ${N} rows`);
    if (N > 65535) throw new RangeError(`argmaxRows: at most 65535 rows at once, got ${N}`);
    const V = x.size / N;
    // Rows are split into chunks so that a few rows still fill the GPU; a second kernel picks per row.
    const chunk = 4096,
      chunks = Math.ceil(V / chunk);
    const values = this.device.allocator.alloc(N * chunks * 4),
      indices = this.device.allocator.alloc(N * chunks * 4);
    this.device.launch(this.device.kernel(DECODE, 'argmax_partial'), [chunks, N], 256, 0, [
      ...floatArg(x, 'argmaxRows x'),
      V,
      chunk,
      values.ptr,
      indices.ptr,
    ]);
    this.device.launch(this.device.kernel(DECODE, 'argmax_final'), [Math.ceil(N / 8)], 256, 0, [
      o,
      values.ptr,
      indices.ptr,
      chunks,
      N,
    ]);
    this.device.allocator.release(values.ptr, values.size);
    this.device.allocator.release(indices.ptr, indices.size);
  }

  addRmsNorm(sum: Tensor, out: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor, eps: number): void {
    checkSameSize('addRmsNorm', sum, out, a, b);
    if (rstd.size * weight.size !== sum.size) throw new Error('addRmsNorm: rstd must have one entry per row');
    if (rstd.size === 0) return;
    const D = weight.size;
    if (this.normRows8(D) && this.bf16x8(sum, out, a, b, weight)) {
      this.device.launch(this.device.kernel(ROWS, 'add_rmsnorm_bf16x8'), [rstd.size], this.rowThreads8(D / 8), 0, [
        ptrArg(sum),
        ptrArg(out),
        ptrOf(rstd, 'f32', 'addRmsNorm rstd'),
        ptrArg(a),
        ptrArg(b),
        ptrArg(weight),
        D / 8,
        eps,
      ]);
      return;
    }
    this.device.launch(this.device.kernel(DECODE, 'add_rmsnorm'), [rstd.size], this.rowThreads(D), 0, [
      ...floatArg(sum, 'addRmsNorm sum'),
      ...floatArg(out, 'addRmsNorm out'),
      ptrOf(rstd, 'f32', 'addRmsNorm rstd'),
      ...floatArg(a, 'addRmsNorm a'),
      ...floatArg(b, 'addRmsNorm b'),
      ...floatArg(weight, 'addRmsNorm weight'),
      D,
      eps,
    ]);
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
    const N = d.B * d.T,
      half = d.hd / 2;
    if (N === 0) return;
    if (d.hd % 2 !== 0) throw new Error(`ropeAppendKv: head dim ${d.hd} is odd`);
    this.device.launch(this.device.kernel(DECODE, 'rope_append_kv'), [Math.ceil((N * half) / 256)], 256, 0, [
      ...floatArg(kCache, 'ropeAppendKv kCache'),
      ...floatArg(vCache, 'ropeAppendKv vCache'),
      ...floatArg(q, 'ropeAppendKv q'),
      ...floatArg(k, 'ropeAppendKv k'),
      ...floatArg(v, 'ropeAppendKv v'),
      ptrOf(positions, 'i32', 'ropeAppendKv positions'),
      this.ropeCache(theta, d.hd).invFreq.ptr,
      N,
      d.T,
      d.S,
      offset,
      d.H,
      d.Hkv,
      d.hd,
    ]);
  }

  // ---- beyond the interface ----

  /** Waits until all queued work is done (for timing). */
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
    this.elementwise('convert', dst.size, [...floatArg(dst, 'convert dst'), ...floatArg(src, 'convert src'), dst.size]);
  }

  /** The block shift of the 16-element bf16 dequantization kernels for dst = w, or -1 where they do not apply. */
  private nf4Shift16(dst: CudaTensor, w: CudaTensor): number {
    const parts = w.nf4;
    if (!parts) throw new TypeError('dequantizeNf4: not an nf4 tensor');
    const shift = Number.isInteger(Math.log2(parts.blockSize)) ? Math.log2(parts.blockSize) : -1;
    return dst.dtype === 'bf16' && shift >= 4 && w.size % 16 === 0 && dst.ptr % 16 === 0 && w.ptr % 8 === 0
      ? shift
      : -1;
  }

  /**
   * @internal dsts[i] = the dequantized NF4 weight ws[i] (see dequantizeNf4), three weights a
   * launch where the 16-element kernel applies to all of them with one block size.
   */
  dequantizeNf4Many(dsts: readonly CudaTensor[], ws: readonly CudaTensor[]): void {
    const shifts = ws.map((w, i) => this.nf4Shift16(dsts[i], w));
    if (ws.length < 2 || shifts.some((sh) => sh < 0 || sh !== shifts[0])) {
      ws.forEach((w, i) => this.dequantizeNf4(dsts[i], w));
      return;
    }
    for (let i = 0; i < ws.length; i += 3) {
      const part = ws.slice(i, i + 3).map((w, j) => {
        const parts = w.nf4 as NonNullable<CudaTensor['nf4']>;
        return [dsts[i + j].ptr, w.ptr, parts.absmax, parts.code, w.size / 16];
      });
      const total = part.reduce((n, args) => n + args[4], 0);
      while (part.length < 3) part.push([0, 0, 0, 0, 0]);
      this.elementwise('nf4_dequant_bf16x16_3', total, [...part.flat(), shifts[0]]);
    }
  }

  /** @internal dst (float, w's size) = the dequantized NF4 weight w. */
  dequantizeNf4(dst: CudaTensor, w: CudaTensor): void {
    const parts = w.nf4;
    if (!parts) throw new TypeError('dequantizeNf4: not an nf4 tensor');
    const shift = this.nf4Shift16(dst, w);
    if (shift >= 0) {
      this.elementwise('nf4_dequant_bf16x16', w.size / 16, [
        dst.ptr,
        w.ptr,
        parts.absmax,
        parts.code,
        w.size / 16,
        shift,
      ]);
      return;
    }
    this.elementwise('nf4_dequant', Math.ceil(w.size / 8), [
      ...floatArg(dst, 'dequantize dst'),
      w.ptr,
      parts.absmax,
      parts.code,
      w.size,
      parts.blockSize,
      shift,
    ]);
  }

  private raw(shape: readonly number[], dtype: TensorDType, what: string): CudaTensor {
    if (dtype === 'nf4') throw new TypeError(`${what}: nf4 tensors come from uploadNf4`);
    if (!isFloat(dtype) && dtype !== 'i32') throw new TypeError(`${what}: unknown dtype ${String(dtype)}`);
    const block = this.device.allocator.alloc(shapeSize(shape) * elementBytes(dtype));
    return new CudaTensor([...shape], dtype, block.ptr, [block]);
  }

  /**
   * Whether the fused LoRA kernels apply: bf16 throughout, a compiled rank, rows (of each width)
   * of whole 16-byte groups, and `kernel` (lora-down, lora-grads, lora-up-bwd) not
   * listed in SQLORA_CUDA_OFF (a comma list, for diagnosis: the composed products and dropout
   * kernels run instead).
   */
  private fusedLora(ts: Tensor[], r: number, widths: readonly number[], kernel: string): boolean {
    if (cudaOff(kernel)) return false;
    return (
      (LORA_RANKS as readonly number[]).includes(r) &&
      widths.every((w) => w % 8 === 0) &&
      ts.every((t) => {
        const c = asCuda(t, 'lora');
        return c.dtype === 'bf16' && c.ptr % 16 === 0;
      })
    );
  }

  /** Whether the bf16 norm kernels holding a row in registers take rows of D (see rows.ts). */
  private normRows8(D: number): boolean {
    return D % 8 === 0 && D / 8 <= NORM_ROW_CHUNKS * this.rowThreads8(D / 8);
  }

  /** Whether the all-bf16 kernels moving 8 elements per access apply. */
  private bf16x8(...ts: Tensor[]): boolean {
    return (
      ts.every((t) => {
        const c = asCuda(t, 'elementwise');
        return c.dtype === 'bf16' && c.ptr % 16 === 0;
      }) && ts[0].size % 8 === 0
    );
  }

  private gridFor(n: number): number {
    return Math.max(1, Math.min(Math.ceil(n / 256), this.device.smCount * 32));
  }

  private elementwise(name: string, n: number, args: number[]): void {
    if (n === 0) return;
    this.device.launch(this.device.kernel(ELEMENTWISE, name), [this.gridFor(n)], 256, 0, args);
  }

  /** Threads of a row kernel moving 8 elements per access over D8 groups. */
  private rowThreads8(D8: number): number {
    return Math.min(256, 32 * Math.ceil(D8 / 32));
  }

  private rowThreads(D: number): number {
    return Math.min(512, 32 * Math.ceil(D / 256));
  }

  private reduce(out: Tensor, x: Tensor, squares: boolean, accumulate: boolean): void {
    const o = ptrOf(out, 'f32', squares ? 'sumSquares out' : 'sum out');
    const blocks = Math.max(1, Math.min(256, Math.ceil(x.size / 1024)));
    const partial = this.device.allocator.alloc(blocks * 8);
    this.device.launch(this.device.kernel(ROWS, 'reduce_partial'), [blocks], 256, 0, [
      ...floatArg(x, 'sum x'),
      x.size,
      squares ? 1 : 0,
      partial.ptr,
    ]);
    this.device.launch(this.device.kernel(ROWS, 'reduce_final'), [1], 256, 0, [
      partial.ptr,
      blocks,
      o,
      accumulate ? 1 : 0,
    ]);
    this.device.allocator.release(partial.ptr, partial.size);
  }

  /**
   * Rotates x into out. With a bias (added first), only the bf16 kernel applies: returns false
   * when it does not, having done nothing.
   */
  private rope(out: Tensor, x: Tensor, positions: Tensor, theta: number, sign: number, bias?: Tensor): boolean {
    const hd = x.shape[x.shape.length - 1];
    const N = positions.size;
    if (N === 0 || x.size === 0) return true;
    if (hd % 2 !== 0 || x.size % (N * hd) !== 0)
      throw new Error(`rope: x [${x.shape.join(', ')}] is not [N=${N}, heads, even head dim]`);
    const half = hd / 2,
      H = x.size / (N * hd);
    if (bias && bias.size !== H * hd) throw new Error(`ropeForward: bias of ${bias.size} for ${H} heads of ${hd}`);
    if (half % 8 === 0 && this.bf16x8(out, x, ...(bias ? [bias] : []))) {
      this.device.launch(this.device.kernel(ROWS, 'rope_bf16x8'), [Math.ceil((N * half) / 8 / 256)], 256, 0, [
        ptrArg(out),
        ptrArg(x),
        bias ? ptrArg(bias) : 0,
        ptrOf(positions, 'i32', 'rope positions'),
        this.ropeCache(theta, hd).invFreq.ptr,
        N,
        H,
        hd,
        sign,
      ]);
      return true;
    }
    if (bias) return false;
    this.device.launch(this.device.kernel(ROWS, 'rope'), [Math.ceil((N * half) / 256)], 256, 0, [
      ...floatArg(out, 'rope out'),
      ...floatArg(x, 'rope x'),
      ptrOf(positions, 'i32', 'rope positions'),
      this.ropeCache(theta, hd).invFreq.ptr,
      N,
      H,
      hd,
      sign,
    ]);
    return true;
  }

  /** A device array of these addresses (uint64), uploaded on first use and kept. */
  private addressArray(addresses: readonly number[]): number {
    const key = addresses.join(',');
    let block = this.addressArrays.get(key);
    if (!block) {
      // Bounded: freed blocks are reused only by work queued after everything that read them.
      if (this.addressArrays.size >= 1024) {
        for (const b of this.addressArrays.values()) this.device.allocator.release(b.ptr, b.size);
        this.addressArrays.clear();
      }
      block = this.device.uploadAddresses(addresses);
      this.addressArrays.set(key, block);
    }
    return block.ptr;
  }

  /** RoPE's device tables for (theta, head dim), the inverse frequencies uploaded on first use. */
  private ropeCache(theta: number, hd: number): RopeCache {
    const key = `${theta}/${hd}`;
    let c = this.ropeCaches.get(key);
    if (!c)
      this.ropeCaches.set(
        key,
        (c = { invFreq: this.upload(ropeInvFreq(theta, hd), [hd / 2]) as CudaTensor, cosSin: null }),
      );
    return c;
  }

  /** The inverse frequencies and rope_table's (cosine, sine) for positions [0, P), P >= minP (grown as needed). */
  private ropeCosSin(theta: number, hd: number, minP: number): RopeTables {
    const c = this.ropeCache(theta, hd);
    let table = c.cosSin;
    if (!table || table.shape[0] < minP) {
      if (table) this.free(table);
      const P = Math.max(4096, Math.ceil(minP / 1024) * 1024),
        half = hd / 2;
      table = this.empty([P, half, 2], 'f32') as CudaTensor;
      this.device.launch(this.device.kernel(ROWS, 'rope_table'), [Math.ceil((P * half) / 256)], 256, 0, [
        table.ptr,
        c.invFreq.ptr,
        P,
        half,
      ]);
      c.cosSin = table;
    }
    return { cosSin: table.ptr, P: table.shape[0], invFreq: c.invFreq.ptr };
  }

  /** Waits for queued work and reports any invalid input the kernels flagged on the device. */
  private finish(): void {
    this.device.download(this.errorHost, this.errorWord.ptr);
    this.device.synchronize();
    this.throwDeviceError(this.errorHost[0]);
  }

  /** Clears and reports a device error word read back to the host (0 = none). */
  private throwDeviceError(code: number): void {
    if (code === 0) return;
    this.device.memset(this.errorWord.ptr, 32, 0, 1);
    throw new RangeError(DEVICE_ERRORS[code] ?? `a kernel reported error ${code}`);
  }
}

/** keepFrom, keepScale, the three members' seed terms (zeros past the chunk) and drop: the LoRA kernels' dropout arguments. */
function dropoutArgs(p: number, seeds: readonly number[]): number[] {
  const d = loraDropoutArgs(p);
  return [d.keepFrom, d.keepScale, ...pad3(seeds.map(loraSeedMix)), d.drop];
}

/** Three kernel arguments from up to three values (zeros for absent members). */
function pad3(values: readonly number[]): number[] {
  return [0, 1, 2].map((i) => values[i] ?? 0);
}

/** Member indices of a group in chunks one kernel call takes. */
function loraChunks(members: number, r: number): number[][] {
  const size = loraGroupMax(r),
    out: number[][] = [];
  for (let i = 0; i < members; i += size)
    out.push(Array.from({ length: Math.min(size, members - i) }, (_, j) => i + j));
  return out;
}

function ptrArg(t: Tensor): number {
  return asCuda(t, 'elementwise').ptr;
}

/** Like asCuda, but accepts freed tensors (free is idempotent). */
function asCudaAny(t: Tensor): CudaTensor {
  if (!(t instanceof CudaTensor)) throw new TypeError('free: not a CUDA tensor');
  return t;
}
