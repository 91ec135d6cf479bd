/**
 * Launch helpers the CUDA backend's operations share: grid sizes, the elementwise module's
 * one-dimensional launches, and the tests for the bf16 kernels that move 8 elements per access.
 */
import type { Tensor } from '../backend.js';
import { asCuda } from './cuda-tensor.js';
import type { CudaDevice } from './device.js';
import { ELEMENTWISE } from './kernels/elementwise.js';
import { NORM_ROW_CHUNKS } from './kernels/rows.js';

/** Blocks of 256 threads for n elements, capped at 32 per multiprocessor (the kernels loop over the rest). */
export function gridFor(device: CudaDevice, n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / 256), device.smCount * 32));
}

/** One launch of the elementwise module's kernel `name` over n elements (none for n = 0). */
export function elementwise(device: CudaDevice, name: string, n: number, args: number[]): void {
  if (n === 0) return;
  device.launch(device.kernel(ELEMENTWISE, name), [gridFor(device, n)], 256, 0, args);
}

/** Threads of a row kernel moving 8 elements per access over D8 groups. */
export function rowThreads8(D8: number): number {
  return Math.min(256, 32 * Math.ceil(D8 / 32));
}

export function rowThreads(D: number): number {
  return Math.min(512, 32 * Math.ceil(D / 256));
}

/** Whether the bf16 norm kernels holding a row in registers take rows of D (see rows.ts). */
export function normRows8(D: number): boolean {
  return D % 8 === 0 && D / 8 <= NORM_ROW_CHUNKS * rowThreads8(D / 8);
}

/** Whether the all-bf16 kernels moving 8 elements per access apply. */
export function bf16x8(...ts: Tensor[]): boolean {
  return (
    ts.every((t) => {
      const c = asCuda(t, 'elementwise');
      return c.dtype === 'bf16' && c.ptr % 16 === 0;
    }) && ts[0].size % 8 === 0
  );
}

export function ptrArg(t: Tensor): number {
  return asCuda(t, 'elementwise').ptr;
}

/** Three kernel arguments from up to three values (zeros for absent members). */
export function pad3(values: readonly number[]): number[] {
  return [0, 1, 2].map((i) => values[i] ?? 0);
}
