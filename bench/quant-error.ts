/**
 * What quantization error is measured on, and how: seeded Gaussian weights and the relative RMS
 * error. Shared by bench/quant-quality.ts and the ggml format tests.
 */
import { mulberry32 } from '../src/util/random.js';

/** n values from N(0, std^2), Box-Muller over mulberry32(seed). */
export function gaussian(n: number, seed: number, std = 1): Float32Array {
  const rand = mulberry32(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const t = 2 * Math.PI * rand();
    x[i] = std * r * Math.cos(t);
    x[i + 1] = std * r * Math.sin(t);
  }
  return x;
}

/** sqrt(sum (a - x)^2 / sum x^2): a's error relative to x. */
export function relRms(a: Float32Array, x: Float32Array): number {
  let e = 0,
    d = 0;
  for (let i = 0; i < x.length; i++) {
    e += (a[i] - x[i]) ** 2;
    d += x[i] ** 2;
  }
  return Math.sqrt(e / d);
}
