/**
 * Element types as safetensors names them, and fast conversions between the float formats.
 * All buffers are little-endian (the byte order of every platform Node runs on), so a
 * Uint16Array over a file's bytes holds bf16/f16 bit patterns directly.
 */

export type DType =
  'F64' | 'F32' | 'BF16' | 'F16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  BF16: 2,
  F16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

/** bf16 bit patterns -> f32: bf16 is the top half of an f32, so this is exact. */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkLengths(src.length, out.length);
  const u32 = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) u32[i] = src[i] << 16;
  return out;
}

/**
 * f32 -> bf16 with round-to-nearest-even (as torch's `.to(torch.bfloat16)`): add 0x7FFF plus
 * the lowest kept bit, then truncate. NaN stays NaN (quiet bit forced so the payload cannot
 * round into infinity).
 */
export function f32ToBf16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src.length, out.length);
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u32[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x0040;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

let f16Table: Float32Array | undefined;

/** All 65,536 f16 values as f32, built once: a table lookup beats bit twiddling per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 31) table[h] = mant ? NaN : sign * Infinity;
    else table[h] = sign * (1024 + mant) * 2 ** (exp - 25);
  }
  f16Table = table;
  return table;
}

/** f16 bit patterns -> f32 (exact). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkLengths(src.length, out.length);
  const table = halfTable();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/**
 * f32 -> f16 with round-to-nearest-even, including subnormals; values beyond the f16 range
 * become ±Infinity (as IEEE conversion does).
 */
export function f32ToF16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src.length, out.length);
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16(u32[i]);
  return out;
}

function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal result: value = m * 2^-(shift) in units of 2^-24.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** Converts one f32 value to bf16 bits (RNE); handy for tests and constants. */
export function f32ToBf16Bits(v: number): number {
  return f32ToBf16(Float32Array.of(v))[0];
}

/** Converts one f32 value to f16 bits (RNE). */
export function f32ToF16Bits(v: number): number {
  const u = new Uint32Array(Float32Array.of(v).buffer);
  return f32BitsToF16(u[0]);
}

function checkLengths(src: number, out: number): void {
  if (out < src) throw new RangeError(`output holds ${out} elements, need ${src}`);
}
