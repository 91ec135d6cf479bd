/**
 * The CUDA backend's fused LoRA kernels (down projection with dropout, the up projection's
 * backward, the A gradients), a group of up to three adapters per launch. Where they do not
 * apply (dtypes, ranks, alignment, SQLORA_CUDA_OFF) the composed products of lora-composed.ts run.
 */
import { loraDownGradsDims, loraGroupDims, loraUpDims, type LoraInputGradient, type Tensor } from '../backend.js';
import { loraDownComposed, loraDownGradsComposed, loraUpBackwardComposed } from '../lora-composed.js';
import type { CudaBackend } from './cuda-backend.js';
import { asCuda, cudaOff, ptrOf } from './cuda-tensor.js';
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
import { gridFor, pad3, ptrArg } from './launch.js';

export function loraDown(
  cb: CudaBackend,
  us: readonly Tensor[],
  x: Tensor,
  as: readonly Tensor[],
  p: number,
  seeds: readonly number[],
): void {
  const { N, r, D } = loraGroupDims('loraDown', us, as, seeds, x);
  if (!fusedLora([...us, x, ...as], r, [D], 'lora-down')) {
    loraDownComposed(cb, us, x, as, p, seeds);
    return;
  }
  if (N === 0) return;
  for (const c of loraChunks(us.length, r)) {
    const M = c.length;
    cb.device.launch(
      cb.device.kernel(LORA, `lora_down_${r}_${M}`),
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

export function loraUpBackward(
  cb: CudaBackend,
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
    !fusedLora([...gs, ...dys, ...us, ...bs], r, outs, 'lora-up-bwd') ||
    gradBs.some((t) => asCuda(t, 'loraUpBackward gradB').dtype !== 'f32')
  ) {
    loraUpBackwardComposed(cb, gradBs, gs, dys, us, bs, alpha);
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
    const gpart = cb.device.allocator.alloc(M * colBlocks * N * part),
      bpart = cb.device.allocator.alloc(M * rowBlocks * Omax * part);
    cb.device.launch(
      cb.device.kernel(LORA, 'lora_up_bwd'),
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
    cb.device.launch(cb.device.kernel(LORA, 'lora_up_bwd_sum'), [gridFor(cb.device, M * (N + Omax) * r)], 256, 0, [
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
    cb.device.allocator.release(gpart.ptr, gpart.size);
    cb.device.allocator.release(bpart.ptr, bpart.size);
  }
}

export function loraDownGrads(
  cb: CudaBackend,
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
    !fusedLora(operands, r, [D], 'lora-grads') ||
    gradAs.some((t) => asCuda(t, 'loraDownGrads gradA').dtype !== 'f32')
  ) {
    loraDownGradsComposed(cb, gradAs, gs, x, p, seeds, alpha, input);
    return;
  }
  if (N === 0) return;
  const d = loraDropoutArgs(p);
  loraChunks(gs.length, r).forEach((c, i) => {
    const M = c.length;
    const chunks = Math.ceil(N / LORA_GRAD_A.rows);
    const part = cb.device.allocator.alloc(chunks * M * r * D * 4);
    const grid = [Math.ceil(D / LORA_GRAD_A.cols), chunks];
    const g = pad3(c.map((m) => ptrArg(gs[m]))),
      seedMix = pad3(c.map((m) => loraSeedMix(seeds[m])));
    if (input) {
      // Both gradients from one pass over x's tiles, the masks computed once.
      cb.device.launch(
        cb.device.kernel(LORA, `lora_grads_${r}_${M}`),
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
      cb.device.launch(
        cb.device.kernel(LORA, `lora_grad_a_${r}_${M}`),
        grid,
        LORA_GRAD_A.threads,
        LORA_GRAD_A.sharedBytes(r, M, false),
        [part.ptr, ...g, ptrArg(x), N, D, d.keepFrom, ...seedMix, d.drop],
      );
    }
    // The kernels sum masked, unscaled values: dropout's 1 / (1 - p) joins alpha.
    cb.device.launch(cb.device.kernel(LORA, 'lora_grad_a_sum'), [gridFor(cb.device, M * r * D)], 256, 0, [
      ...pad3(c.map((m) => ptrOf(gradAs[m], 'f32', 'loraDownGrads gradA'))),
      part.ptr,
      chunks,
      M,
      r * D,
      alpha * d.keepScale,
    ]);
    cb.device.allocator.release(part.ptr, part.size);
  });
}

/**
 * Whether the fused LoRA kernels apply: bf16 throughout, a compiled rank, rows (of each width)
 * of whole 16-byte groups, and `kernel` (lora-down, lora-grads, lora-up-bwd) not
 * listed in SQLORA_CUDA_OFF (a comma list, for diagnosis: the composed products and dropout
 * kernels run instead).
 */
function fusedLora(ts: Tensor[], r: number, widths: readonly number[], kernel: string): boolean {
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

/** keepFrom, keepScale, the three members' seed terms (zeros past the chunk) and drop: the LoRA kernels' dropout arguments. */
function dropoutArgs(p: number, seeds: readonly number[]): number[] {
  const d = loraDropoutArgs(p);
  return [d.keepFrom, d.keepScale, ...pad3(seeds.map(loraSeedMix)), d.drop];
}

/** Member indices of a group in chunks one kernel call takes. */
function loraChunks(members: number, r: number): number[][] {
  const size = loraGroupMax(r),
    out: number[][] = [];
  for (let i = 0; i < members; i += size)
    out.push(Array.from({ length: Math.min(size, members - i) }, (_, j) => i + j));
  return out;
}
