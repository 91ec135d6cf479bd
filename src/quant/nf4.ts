import { NF4_BLOCKSIZE, NF4_CODE, nf4Blocks } from '../tensor/nf4-blocks.js';

/**
 * NF4 (4-bit NormalFloat, QLoRA) quantization with double quantization, computing exactly what
 * bitsandbytes' CUDA kernels compute (with IEEE float32 arithmetic):
 *
 * - The blocks (codes and absmax per 64 values): tensor/nf4-blocks.ts.
 * - Double quantization: offset = mean(absmax); the centred values f32(absmax - offset) are
 *   quantized to 8 bits in blocks of 256 against the signed dynamic map (create_dynamic_map),
 *   with the kernel's binary search, keeping one f32 absmax per 256-block.
 * - Dequantization: absmax = f32(f32(dyn[q] * nestedAbsmax) + offset); w = f32(nf4[c] * absmax).
 *
 * Known differences from a real bitsandbytes run: its kernels are built with --use_fast_math,
 * so 1/absmax may be off by an ulp (a code can flip for a value within ~1e-7 of a midpoint),
 * and torch's mean of the absmax values may differ from ours in the last bit. Both only pick
 * a different-but-valid neighbour; the layout and every stored tensor are bnb's.
 */

export const NESTED_BLOCKSIZE = 256;

let dynamicMapCache: Float32Array | undefined;

/**
 * bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True), 7 exponent bits):
 * for i = 0..6, 2^i values ±10^(i-6) * mean of neighbouring points of linspace(0.1, 1, 2^i + 1),
 * plus 0 and 1, sorted. Computed in float32 as torch does; checked entry by entry against torch 2.11's map.
 */
export function dynamicMap(): Float32Array {
  if (dynamicMapCache) return dynamicMapCache;
  const f = Math.fround;
  const scales = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];
  const data: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const steps = 2 ** i + 1;
    const start = f(0.1);
    const step = f(f(1 - start) / (steps - 1));
    const half = Math.floor(steps / 2);
    // One fused multiply-add per point, as torch's vectorized linspace (step * k is exact in f64).
    const bounds = Array.from({ length: steps }, (_, k) =>
      k < half ? f(start + step * k) : f(1 - step * (steps - k - 1)),
    );
    const scale = f(scales[i]);
    for (let k = 0; k < steps - 1; k++) {
      const v = f(scale * f(f(bounds[k] + bounds[k + 1]) / 2));
      data.push(v, -v);
    }
  }
  dynamicMapCache = Float32Array.from(data.sort((a, b) => a - b));
  return dynamicMapCache;
}

/**
 * The kernel's 8-bit quantizer (dQuantize, deterministic): a 7-step binary search from index
 * 127, then the nearer of the neighbours by float32 midpoint. NaN ends at code 0.
 */
function quantize8(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot];
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upperPivot === 255) upper = code[255];
  if (lowerPivot === 0) lower = code[0];
  if (x > val) return x > Math.fround(Math.fround(upper + val) * 0.5) ? upperPivot : pivot;
  return x < Math.fround(Math.fround(lower + val) * 0.5) ? lowerPivot : pivot;
}

/** The dtype the original weight had; recorded in the quant state, restored on dequantization. */
export type Nf4SourceDType = 'bfloat16' | 'float16' | 'float32';

/** Per-block scales: 8-bit codes of (absmax - offset) with nested f32 scales (double quant). */
export interface Nf4NestedAbsmax {
  codes: Uint8Array;
  offset: number;
  nestedAbsmax: Float32Array;
  nestedBlocksize: number;
  nestedCode: Float32Array;
}

export interface Nf4Tensor {
  /** Shape of the original weight, e.g. [out_features, in_features]. */
  shape: number[];
  dtype: Nf4SourceDType;
  blocksize: number;
  /** ceil(n / 2) bytes; element 2i in the high nibble of byte i. */
  packed: Uint8Array;
  /** The code book the nibbles index (NF4_CODE unless loaded from a file). */
  code: Float32Array;
  /** Plain f32 absmax per block, or its double-quantized form. */
  absmax: Float32Array | Nf4NestedAbsmax;
}

export interface Nf4Options {
  dtype?: Nf4SourceDType;
  blocksize?: number;
  /** Double quantization of the absmax values (QLoRA's default); true unless false. */
  doubleQuant?: boolean;
}

/** Quantizes row-major f32 values (bf16 weights convert exactly) to NF4. */
export function nf4Quantize(values: Float32Array, shape: readonly number[], opts: Nf4Options = {}): Nf4Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (values.length !== n) throw new RangeError(`nf4Quantize: ${values.length} values for shape [${shape.join(', ')}]`);
  const blocksize = opts.blocksize ?? NF4_BLOCKSIZE;
  const { packed, absmax } = nf4Blocks(values, blocksize);
  return {
    shape: [...shape],
    dtype: opts.dtype ?? 'bfloat16',
    blocksize,
    packed,
    code: NF4_CODE,
    absmax: opts.doubleQuant === false ? absmax : quantizeAbsmax(absmax),
  };
}

/** Double quantization of the per-block absmax values. */
function quantizeAbsmax(absmax: Float32Array): Nf4NestedAbsmax {
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = Math.fround(sum / absmax.length);
  const code = dynamicMap();
  const blocks = Math.ceil(absmax.length / NESTED_BLOCKSIZE);
  const nestedAbsmax = new Float32Array(blocks);
  const codes = new Uint8Array(absmax.length);
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = absmax[i] - offset;
  for (let b = 0; b < blocks; b++) {
    const start = b * NESTED_BLOCKSIZE;
    const end = Math.min(start + NESTED_BLOCKSIZE, absmax.length);
    let amax = 0;
    for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(centred[i]));
    nestedAbsmax[b] = amax;
    const inv = Math.fround(1 / amax);
    for (let i = start; i < end; i++) codes[i] = quantize8(code, Math.fround(centred[i] * inv));
  }
  return { codes, offset, nestedAbsmax, nestedBlocksize: NESTED_BLOCKSIZE, nestedCode: code };
}

/** The f32 absmax of every block, undoing double quantization as bitsandbytes does. */
export function nf4Absmax(q: Nf4Tensor): Float32Array {
  return q.absmax instanceof Float32Array ? q.absmax : nestedAbsmaxValues(q.absmax);
}

/**
 * The scales a double-quantized weight dequantizes with, from its blocks' plain absmax values:
 * what nf4Absmax gives for nf4Quantize's result (for quantizers that find the absmax elsewhere).
 */
export function doubleQuantizedScales(absmax: Float32Array): Float32Array {
  return nestedAbsmaxValues(quantizeAbsmax(absmax));
}

function nestedAbsmaxValues({
  codes,
  offset,
  nestedAbsmax,
  nestedBlocksize,
  nestedCode,
}: Nf4NestedAbsmax): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    out[i] = Math.fround(Math.fround(nestedCode[codes[i]] * nestedAbsmax[Math.floor(i / nestedBlocksize)]) + offset);
  }
  return out;
}

/**
 * Dequantizes to f32 (row-major, the original shape): w = f32(code[c] * absmax[block]).
 * bitsandbytes then casts to the original dtype; round with f32ToBf16 to match it bit for bit.
 */
export function nf4Dequantize(q: Nf4Tensor, out?: Float32Array): Float32Array {
  const n = q.shape.reduce((a, b) => a * b, 1);
  const result = out ?? new Float32Array(n);
  if (result.length < n) throw new RangeError(`nf4Dequantize: output holds ${result.length} values, need ${n}`);
  const absmax = nf4Absmax(q);
  const { code, packed, blocksize } = q;
  const lut = new Float32Array(16);
  for (let b = 0; b < absmax.length; b++) {
    for (let c = 0; c < 16; c++) lut[c] = code[c] * absmax[b];
    const end = Math.min((b + 1) * blocksize, n);
    for (let i = b * blocksize; i < end; i += 2) {
      const byte = packed[i >> 1];
      result[i] = lut[byte >> 4];
      if (i + 1 < end) result[i + 1] = lut[byte & 15];
    }
  }
  return result;
}
