/**
 * sqlora's ggml block formats against ggml itself (libggml-base from node-llama-cpp's CPU
 * build): Q8_0 and Q5_0 codes byte for byte; ggml's Q4_K and Q6_K blocks decoded by our
 * reader with the error a correct decoder gives; our K-quant quantizers within a few percent
 * of ggml's error; and llama.cpp's own acceptance test (test-quantize-fns: RMSE of the
 * synthetic row 0.1 + 2 cos(i), over n, below 0.002) passed by every type.
 */
import { describe, expect, it } from 'vitest';
import { GgmlType, GGML_TYPES, ggmlTensorBytes } from '../src/export/gguf-format.js';
import { ggmlQuantize, haveGgml } from '../bench/ggml-lib.js';
import { gaussian, relRms } from '../bench/quant-error.js';

const ROW = 4096;
const ROWS = 16;

const roundTrip = (type: GgmlType, x: Float32Array): Float32Array =>
  GGML_TYPES[type].dequantize(GGML_TYPES[type].quantize(x), new Float32Array(x.length));

if (!haveGgml)
  console.warn('export-ggml-quants: libggml-base.so of node-llama-cpp (linux-x64) not found; ggml comparisons skipped');

describe.skipIf(!haveGgml)('ggml block formats against libggml', () => {
  const x = gaussian(ROW * ROWS, 5, 0.02);

  for (const type of [GgmlType.Q8_0, GgmlType.Q5_0]) {
    it(`${GGML_TYPES[type].name}: the same bytes as ggml_quantize_chunk`, () => {
      const theirs = ggmlQuantize(type, x, ROW, ggmlTensorBytes(type, [ROW, ROWS]));
      expect(Buffer.from(GGML_TYPES[type].quantize(x)).equals(Buffer.from(theirs))).toBe(true);
    });
  }

  for (const [type, ggmlMax] of [
    [GgmlType.Q4_K, 0.075],
    [GgmlType.Q6_K, 0.019],
  ] as const) {
    it(`${GGML_TYPES[type].name}: reads ggml's blocks, and quantizes within 5% of ggml's error`, () => {
      const theirs = ggmlQuantize(type, x, ROW, ggmlTensorBytes(type, [ROW, ROWS]));
      const ggmlErr = relRms(GGML_TYPES[type].dequantize(theirs, new Float32Array(x.length)), x);
      const ourErr = relRms(roundTrip(type, x), x);
      // A decoder misreading a field gives errors near 1, not a few percent.
      expect(ggmlErr).toBeLessThan(ggmlMax);
      expect(ggmlErr).toBeGreaterThan(ggmlMax / 2);
      expect(ourErr).toBeLessThan(ggmlErr * 1.05);
    });
  }
});

describe('llama.cpp test-quantize-fns acceptance', () => {
  // Its synthetic row and metric: sqrt(sum of squared errors) / n, below 0.002.
  const x = Float32Array.from({ length: 32 * 128 }, (_, i) => 0.1 + 2 * Math.cos(i + 0.5));
  for (const type of [GgmlType.Q8_0, GgmlType.Q5_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F16, GgmlType.BF16]) {
    it(GGML_TYPES[type].name, () => {
      const y = roundTrip(type, x);
      let sum = 0;
      for (let i = 0; i < x.length; i++) sum += (y[i] - x[i]) ** 2;
      expect(Math.sqrt(sum) / x.length).toBeLessThan(0.002);
    });
  }
});
