/**
 * Weights that exercise every rule of the NF4 block quantizer (tensor/nf4-blocks.ts): Gaussian
 * values, then blocks that are all zero, that hold each code midpoint exactly (absmax 1, so x = w),
 * that are subnormal (1 / absmax overflows to infinity), that hold a NaN and a -0, and a short
 * last block ending on a lone high nibble when the count is odd.
 */
import { NF4_MIDS } from '../../src/tensor/nf4-blocks.js';

export function nf4EdgeValues(rows: number, cols: number, seed = 11): Float32Array {
  const n = rows * cols;
  if (n < 64 * 5) throw new RangeError('nf4EdgeValues: needs at least five blocks of 64');
  let s = seed;
  const uniform = (): number => (s = (s * 48271) % 2147483647) / 2147483647;
  const v = new Float32Array(n).map(() =>
    Math.fround(0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())),
  );
  v.fill(0, 0, 64);
  v[64] = 1;
  NF4_MIDS.forEach((mid, i) => {
    v[65 + i] = mid;
    v[80 + i] = -mid;
  });
  for (let i = 128; i < 192; i++) v[i] = ((i % 3) - 1) * 1e-40;
  v[200] = Number.NaN;
  v[201] = -0;
  return v;
}
