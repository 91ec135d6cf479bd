/**
 * NF4 blocks, the 4-bit weight format of QLoRA, as bitsandbytes' CUDA kernels compute them (with
 * IEEE float32 arithmetic). Values are split into blocks (row-major, across row boundaries); per
 * block, absmax = max |w| and x = f32(w * f32(1 / absmax)); a value's code is the nearest of the
 * 16 NF4 values, decided by comparing x with the float32 midpoints between neighbouring values
 * (strictly above a midpoint -> upper; a zero block gives NaN, which lands on code 0). Two codes
 * per byte, the first element in the high nibble; an odd tail is padded with 0. Element e then
 * dequantizes to code[nibble e] * scale[block] (the scales may be double-quantized: quant/nf4.ts).
 */

/** bitsandbytes' NF4 code book (quantiles of N(0, 1), normalized to [-1, 1]). */
export const NF4_CODE = Float32Array.of(
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
);

/** bitsandbytes' default block size, QLoRA's. */
export const NF4_BLOCKSIZE = 64;

/** Float32 midpoints between neighbouring NF4 values: the kernel's decision thresholds. */
export const NF4_MIDS = Float32Array.from({ length: 15 }, (_, i) =>
  Math.fround(Math.fround(NF4_CODE[i] + NF4_CODE[i + 1]) * 0.5),
);

// Plain constants: nf4Code runs once per weight (tens of millions of times per model).
const [M0, M1, M2, M3, M4, M5, M6, M7, M8, M9, M10, M11, M12, M13, M14] = NF4_MIDS;

/**
 * NF4 code of a normalized value: how many midpoints it is strictly above. Same answer as the
 * kernel's comparison tree (NaN is above none: code 0), but branch-free, which matters with
 * random weights: a tree's branches are unpredictable.
 */
function nf4Code(x: number): number {
  return (
    +(x > M0) +
    +(x > M1) +
    +(x > M2) +
    +(x > M3) +
    +(x > M4) +
    +(x > M5) +
    +(x > M6) +
    +(x > M7) +
    +(x > M8) +
    +(x > M9) +
    +(x > M10) +
    +(x > M11) +
    +(x > M12) +
    +(x > M13) +
    +(x > M14)
  );
}

export interface Nf4Blocks {
  /** ceil(n / 2) bytes; element 2i in the high nibble of byte i. */
  packed: Uint8Array;
  /** max |w| of each block (NaNs ignored). */
  absmax: Float32Array;
}

/** The codes and absmax of row-major f32 values (bf16 weights convert exactly) in blocks of `blocksize` (even). */
export function nf4Blocks(values: Float32Array, blocksize = NF4_BLOCKSIZE): Nf4Blocks {
  if (blocksize % 2 !== 0 || blocksize <= 0)
    throw new RangeError(`nf4Blocks: blocksize must be even, got ${blocksize}`);
  const n = values.length;
  const blocks = Math.ceil(n / blocksize);
  const absmax = new Float32Array(blocks);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(start + blocksize, n);
    let amax = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(values[i]);
      if (a > amax) amax = a;
    }
    absmax[b] = amax;
    const inv = Math.fround(1 / amax); // Infinity for a zero block: 0 * Infinity = NaN -> code 0
    // blocksize is even, so a block starts on a byte boundary.
    for (let i = start; i < end; i += 2) {
      const hi = nf4Code(Math.fround(values[i] * inv));
      const lo = nf4Code(Math.fround((i + 1 < end ? values[i + 1] : 0) * inv));
      packed[i >> 1] = (hi << 4) | lo;
    }
  }
  return { packed, absmax };
}
