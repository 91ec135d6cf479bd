/**
 * Host memory behind the CPU backend's tensor handles. Float tensors are Float32Array (Float64Array
 * in f64 mode), ids and
 * masks Int32Array, NF4 weights keep their packed codes and per-block scales. Views share the
 * parent's buffer through subarray(), so kernels see plain contiguous arrays.
 */
import { shapeSize, type HostFloats, type Nf4Weight, type Tensor, type TensorDType } from '../backend.js';

export class CpuTensor implements Tensor {
  readonly size: number;
  freed = false;

  constructor(
    readonly shape: readonly number[],
    readonly dtype: TensorDType,
    /** Element storage (empty for nf4); f32 tensors are Float64Array in f64 mode. */
    readonly data: HostFloats | Int32Array,
    readonly nf4: Nf4Weight | null = null,
    /** The tensor that owns the memory, for views. */
    readonly base: CpuTensor | null = null,
  ) {
    this.size = shapeSize(shape);
  }

  get live(): boolean {
    return !(this.base ?? this).freed;
  }
}

function asCpu(t: Tensor, what: string): CpuTensor {
  if (!(t instanceof CpuTensor)) throw new TypeError(`${what}: not a CPU tensor`);
  if (!t.live) throw new Error(`${what}: tensor was freed`);
  return t;
}

/** The float array of an f32 tensor. */
export function f32(t: Tensor, what = 'tensor'): HostFloats {
  const c = asCpu(t, what);
  if (c.dtype !== 'f32') throw new TypeError(`${what}: expected an f32 tensor, got ${c.dtype}`);
  return c.data as HostFloats;
}

/** The Int32Array of an i32 tensor. */
export function i32(t: Tensor, what = 'tensor'): Int32Array {
  const c = asCpu(t, what);
  if (c.dtype !== 'i32') throw new TypeError(`${what}: expected an i32 tensor, got ${c.dtype}`);
  return c.data as Int32Array;
}

/** The NF4 payload of an nf4 tensor, or null for a dense one. */
export function nf4Of(t: Tensor, what = 'tensor'): Nf4Weight | null {
  return asCpu(t, what).nf4;
}
