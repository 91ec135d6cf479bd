/**
 * The CUDA backend's grouped products: matmulBatch (independent products of equal shapes),
 * matmulMany (weights sharing one input, with their biases) and matmulSum, each as few cuBLAS
 * batched calls as the shapes allow. NF4 weights of a group are dequantized together into one
 * scratch block.
 */
import {
  checkMatmulBatch,
  checkMatmulMany,
  checkMatmulSum,
  expectShape,
  matmulDims,
  type MatmulOptions,
  type Tensor,
} from '../backend.js';
import type { GemmDType } from './cublas.js';
import type { CudaBackend } from './cuda-backend.js';
import { asCuda, CudaTensor, elementBytes, floatArg, type Block } from './cuda-tensor.js';
import type { CudaDevice } from './device.js';
import { DECODE } from './kernels/decode.js';
import { bf16x8, gridFor, ptrArg } from './launch.js';

export function matmulBatch(
  cb: CudaBackend,
  outs: readonly Tensor[],
  as: readonly Tensor[],
  bs: readonly Tensor[],
  opts: MatmulOptions = {},
): void {
  checkMatmulBatch(outs, as, bs);
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
    outs.forEach((out, i) => cb.matmul(out, as[i], bs[i], opts));
    return;
  }
  const { M, K, N } = matmulDims(O0, A0, B0, opts);
  const n = outs.length;
  const arrays = cb.addressArrays.get([...as, ...bs, ...outs].map((t) => asCuda(t, 'matmulBatch').ptr));
  cb.gemm.gemmArrays({
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

export function matmulMany(
  cb: CudaBackend,
  outs: readonly Tensor[],
  a: Tensor,
  bs: readonly Tensor[],
  biases: readonly (Tensor | null)[] = [],
  accumulate = false,
): void {
  checkMatmulMany(outs, bs);
  productsSharingInput(cb, outs, a, bs, accumulate);
  // The biases, three outputs per launch; 16 bytes at a time where every tensor allows.
  const pairs = outs.flatMap((out, i) => {
    const bias = biases[i];
    if (!bias) return [];
    if (out.size % bias.size !== 0)
      throw new Error(`matmulMany: bias of ${bias.size} does not divide [${out.shape.join(', ')}]`);
    return out.size > 0 ? [{ out, bias }] : [];
  });
  const wide = pairs.every(({ out, bias }) => bias.size % 8 === 0 && bf16x8(out, bias));
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
    cb.device.launch(
      cb.device.kernel(DECODE, wide ? 'add_bias3_bf16x8' : 'add_bias3'),
      [gridFor(cb.device, total)],
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
function productsSharingInput(
  cb: CudaBackend,
  outs: readonly Tensor[],
  a: Tensor,
  bs: readonly Tensor[],
  accumulate: boolean,
): void {
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
      cb.matmul(outs[group[0]], a, bs[group[0]], { transB: true, accumulate });
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
      ? dequantizedTogether(
          cb,
          group.map((i) => asCuda(bs[i], 'matmulMany b')),
          dtype,
        )
      : null;
    const weights = dense ? dense.views.map((v) => v.ptr) : group.map((i) => asCuda(bs[i], 'matmulMany b').ptr);
    const arrays = cb.addressArrays.get([
      ...group.map(() => A.ptr),
      ...weights,
      ...group.map((i) => asCuda(outs[i], 'matmulMany out').ptr),
    ]);
    cb.gemm.gemmArrays({
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
    if (dense) cb.releaseScratch(dense.scratch);
  }
}

export function matmulSum(
  cb: CudaBackend,
  out: Tensor,
  as: readonly Tensor[],
  bs: readonly Tensor[],
  accumulate = false,
): void {
  checkMatmulSum(as, bs);
  const O = asCuda(out, 'matmulSum out');
  const nf4 = bs.flatMap((b, i) =>
    asCuda(b, 'matmulSum b').dtype === 'nf4' && asCuda(as[i], 'matmulSum a').dtype === 'bf16' ? [i] : [],
  );
  // The nf4 weights of a bf16 product dequantized together (matmul would take them one by one).
  const together =
    O.dtype === 'bf16' && nf4.length > 1
      ? dequantizedTogether(
          cb,
          nf4.map((i) => asCuda(bs[i], 'matmulSum b')),
          'bf16',
        )
      : null;
  const dense: Tensor[] = [...bs];
  together?.views.forEach((v, j) => {
    dense[nf4[j]] = v;
  });
  dense.forEach((b, i) => cb.matmul(out, as[i], b, { accumulate: accumulate || i > 0 }));
  if (together) cb.releaseScratch(together.scratch);
}

/** NF4 weights dequantized into one scratch block (the caller releases it): a view of it per weight, in order. */
function dequantizedTogether(
  cb: CudaBackend,
  ws: readonly CudaTensor[],
  dtype: GemmDType,
): { scratch: CudaTensor; views: CudaTensor[] } {
  const scratch = cb.scratch([ws.reduce((n, w) => n + w.size, 0)], dtype);
  let offset = 0;
  const views = ws.map((w) => {
    const v = new CudaTensor([...w.shape], dtype, scratch.ptr + offset * elementBytes(dtype), [], scratch);
    offset += w.size;
    return v;
  });
  cb.dequantizeNf4Many(views, ws);
  return { scratch, views };
}

/** Device arrays of matrix addresses for the batched products, by their contents (a decoding loop repeats a few). */
export class AddressArrays {
  private readonly blocks = new Map<string, Block>();

  constructor(private readonly device: CudaDevice) {}

  /** A device array of these addresses (uint64), uploaded on first use and kept. */
  get(addresses: readonly number[]): number {
    const key = addresses.join(',');
    let block = this.blocks.get(key);
    if (!block) {
      // Bounded: freed blocks are reused only by work queued after everything that read them.
      if (this.blocks.size >= 1024) {
        for (const b of this.blocks.values()) this.device.allocator.release(b.ptr, b.size);
        this.blocks.clear();
      }
      block = this.device.uploadAddresses(addresses);
      this.blocks.set(key, block);
    }
    return block.ptr;
  }
}
