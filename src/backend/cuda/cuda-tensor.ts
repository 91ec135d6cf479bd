/**
 * Device tensor handles of the CUDA backend: a device address, shape and dtype; views (rows,
 * reshape) share the owner's address at an offset. NF4 weights keep their packed codes at
 * `ptr` and point to their per-block scales and code book.
 */
import { shapeSize, type Tensor, type TensorDType } from '../backend.js';
import { DTYPE_CODE } from './kernels/common.js';

/** The device blocks an owning tensor holds (returned to the allocator by free). */
export interface Block {
  ptr: number;
  size: number;
}

export interface Nf4Parts {
  /** f32 scale per block of `blockSize` elements. */
  absmax: number;
  /** The 16 f32 code values. */
  code: number;
  blockSize: number;
}

export class CudaTensor implements Tensor {
  readonly size: number;
  freed = false;

  constructor(
    readonly shape: readonly number[],
    readonly dtype: TensorDType,
    /** Device address of element 0 (of the packed codes for nf4). */
    readonly ptr: number,
    /** Blocks owned by this tensor; empty for views. */
    readonly blocks: readonly Block[],
    readonly base: CudaTensor | null = null,
    readonly nf4: Nf4Parts | null = null,
  ) {
    this.size = shapeSize(shape);
  }

  get live(): boolean {
    return !(this.base ?? this).freed;
  }
}

/** Bytes per element (nf4 packs two per byte, so it has no whole-byte size). */
export function elementBytes(dtype: Exclude<TensorDType, 'nf4'>): number {
  return dtype === 'bf16' || dtype === 'f16' ? 2 : 4;
}

export function asCuda(t: Tensor, what: string): CudaTensor {
  if (!(t instanceof CudaTensor)) throw new TypeError(`${what}: not a CUDA tensor`);
  if (!t.live) throw new Error(`${what}: tensor was freed`);
  return t;
}

export function isFloat(dtype: TensorDType): dtype is 'f32' | 'bf16' | 'f16' {
  return dtype === 'f32' || dtype === 'bf16' || dtype === 'f16';
}

/** Address and dtype code of a float tensor, as kernels take them. */
export function floatArg(t: Tensor, what: string): [number, number] {
  const c = asCuda(t, what);
  if (!isFloat(c.dtype)) throw new TypeError(`${what}: expected a float tensor, got ${c.dtype}`);
  return [c.ptr, DTYPE_CODE[c.dtype]];
}

/** Address of a tensor of exactly this dtype. */
export function ptrOf(t: Tensor, dtype: TensorDType, what: string): number {
  const c = asCuda(t, what);
  if (c.dtype !== dtype) throw new TypeError(`${what}: expected an ${dtype} tensor, got ${c.dtype}`);
  return c.ptr;
}

/** Whether SQLORA_CUDA_OFF (a comma list, for diagnosis) names `kernel`; read on every call, as tools change it mid-run. */
export function cudaOff(kernel: string): boolean {
  return (process.env.SQLORA_CUDA_OFF ?? '').split(',').includes(kernel);
}
