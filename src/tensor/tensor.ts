/**
 * A host tensor: a dtype, a row-major shape and its little-endian bytes. The data may be any
 * typed array whose byte length matches (Float32Array for F32, Uint16Array holding bit patterns
 * for BF16/F16, Uint8Array for raw bytes...), so callers keep whichever view they computed in.
 */
import { DTYPE_BYTES, bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type DType } from './dtype.js';

export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: ArrayBufferView;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function byteLengthOf(dtype: DType, shape: readonly number[]): number {
  return numel(shape) * DTYPE_BYTES[dtype];
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Builds a tensor, checking that the data has exactly the bytes the dtype and shape need. */
export function hostTensor(dtype: DType, shape: readonly number[], data: ArrayBufferView): HostTensor {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new RangeError(`invalid dimension ${d} in shape ${formatShape(shape)}`);
  }
  const want = byteLengthOf(dtype, shape);
  if (data.byteLength !== want) {
    throw new RangeError(`${dtype} tensor of shape ${formatShape(shape)} needs ${want} bytes, got ${data.byteLength}`);
  }
  return { dtype, shape: [...shape], data };
}

export function f32Tensor(shape: readonly number[], data: Float32Array): HostTensor {
  return hostTensor('F32', shape, data);
}

/** The tensor's bytes as a Uint8Array view (no copy). */
export function tensorBytes(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** A Uint16Array view when aligned, else a copy (bytes read at odd offsets are never aligned). */
function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(bytes.slice().buffer);
}

/** Float values of an F32/BF16/F16 tensor as f32 (a view for F32 when aligned, else a new array). */
export function toF32(t: HostTensor): Float32Array {
  const bytes = tensorBytes(t);
  switch (t.dtype) {
    case 'F32':
      if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      return new Float32Array(bytes.slice().buffer);
    case 'BF16':
      return bf16ToF32(u16View(bytes));
    case 'F16':
      return f16ToF32(u16View(bytes));
    default:
      throw new TypeError(`cannot read ${t.dtype} tensor as floats`);
  }
}

/** Converts f32 values to a tensor of a float dtype (rounding to nearest even for bf16/f16). */
export function fromF32(dtype: 'F32' | 'BF16' | 'F16', shape: readonly number[], values: Float32Array): HostTensor {
  if (dtype === 'F32') return hostTensor('F32', shape, values);
  return hostTensor(dtype, shape, dtype === 'BF16' ? f32ToBf16(values) : f32ToF16(values));
}
