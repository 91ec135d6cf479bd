/**
 * The LoRA group operations of the Backend interface (loraDown, loraDownGrads, loraUpBackward)
 * composed from dropout and matmul: the CPU backend's implementation and the CUDA backend's where
 * its fused kernels do not apply.
 */
import type { Backend, LoraInputGradient, Tensor } from './backend.js';

/** fn(dropout(x, p, seed)), through a temporary unless p = 0. */
function withDropout(be: Backend, x: Tensor, p: number, seed: number, fn: (xd: Tensor) => void): void {
  if (p === 0) return fn(x);
  const xd = be.empty(x.shape, x.dtype);
  be.dropout(xd, x, p, seed);
  fn(xd);
  be.free(xd);
}

export function loraDownComposed(
  be: Backend,
  us: readonly Tensor[],
  x: Tensor,
  as: readonly Tensor[],
  p: number,
  seeds: readonly number[],
): void {
  us.forEach((u, m) => withDropout(be, x, p, seeds[m], (xd) => be.matmul(u, xd, as[m], { transB: true })));
}

export function loraDownGradsComposed(
  be: Backend,
  gradAs: readonly Tensor[],
  gs: readonly Tensor[],
  x: Tensor,
  p: number,
  seeds: readonly number[],
  alpha: number,
  input: LoraInputGradient | null,
): void {
  gs.forEach((g, m) =>
    withDropout(be, x, p, seeds[m], (xd) => be.matmul(gradAs[m], g, xd, { transA: true, alpha, accumulate: true })),
  );
  if (!input) return;
  const { dx, as } = input;
  if (!input.accumulate) be.fill(dx, 0);
  const t = be.empty(dx.shape, dx.dtype);
  gs.forEach((g, m) => {
    be.matmul(t, g, as[m]);
    if (p > 0) be.dropout(t, t, p, seeds[m]);
    be.axpy(dx, t, alpha);
  });
  be.free(t);
}

export function loraUpBackwardComposed(
  be: Backend,
  gradBs: readonly Tensor[],
  gs: readonly Tensor[],
  dys: readonly Tensor[],
  us: readonly Tensor[],
  bs: readonly Tensor[],
  alpha: number,
): void {
  be.matmulBatch(gradBs, dys, us, { transA: true, alpha, accumulate: true });
  be.matmulBatch(gs, dys, bs);
}
