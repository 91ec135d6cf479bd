/**
 * The CUDA backend kernel by kernel against the CPU reference, with f32 storage (tight: the
 * same math in another order) and bf16 storage (the training setting: one bf16 rounding of
 * each output), on identical bf16-representable inputs. Without a GPU it runs on the CUDA
 * emulator (test/helpers/cuda-device.ts).
 */
import { describe, expect, it } from 'vitest';
import type { FloatDType } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { CudaBackend } from '../src/backend/cuda/cuda-backend.js';
import type { CudaTensor } from '../src/backend/cuda/cuda-tensor.js';
import { doubleQuantizedScales, nf4Dequantize, nf4Quantize } from '../src/quant/nf4.js';
import { compareOutputs, toleranceFor, PARITY_CASES } from './helpers/backend-parity.js';
import { cudaTarget } from './helpers/cuda-device.js';
import { nf4EdgeValues } from './helpers/nf4-values.js';

const probe = cudaTarget('backend-cuda-kernels');

describe.skipIf(!probe.available)('CUDA kernels against the CPU backend', () => {
  const cpu = new CpuBackend();
  const cuda: Partial<Record<FloatDType, CudaBackend>> = {};
  const backend = (dt: FloatDType): CudaBackend => (cuda[dt] ??= new CudaBackend({ computeDType: dt }));

  for (const c of PARITY_CASES) {
    it(c.name, () => {
      const ref = c.run(cpu, 'f32');
      for (const dt of ['f32', 'bf16'] as const) {
        const tol = toleranceFor(c, dt);
        for (const r of compareOutputs(c.run(backend(dt), dt), ref))
          expect(r.rel, `${dt} ${r.output}`).toBeLessThanOrEqual(tol);
      }
    });
  }

  it('reports a token id outside the vocabulary at the next download, then works on', () => {
    const be = backend('bf16');
    const table = be.upload(new Float32Array(40), [10, 4], 'bf16'),
      ids = be.upload(Int32Array.of(3, 10), [2], 'i32'),
      out = be.alloc([2, 4], 'bf16');
    be.embedding(out, table, ids);
    expect(() => be.download(out)).toThrow(/token id is outside the vocabulary/);
    expect(be.download(out)).toHaveLength(8);
    for (const t of [table, ids, out]) be.free(t);
  });

  it("quantizes to NF4 on the device with the host quantizer's bits", () => {
    const be = backend('bf16');
    for (const [rows, cols] of [
      [5, 77],
      [33, 100],
      [6, 64],
    ] as const) {
      const values = nf4EdgeValues(rows, cols);
      const w = be.quantizeNf4(values, [rows, cols], doubleQuantizedScales) as CudaTensor;
      const out = be.alloc([rows, cols], 'f32') as CudaTensor;
      be.dequantizeNf4(out, w);
      const got = be.download(out),
        want = nf4Dequantize(nf4Quantize(values, [rows, cols]));
      const differ = Array.from(want).flatMap((x, i) => (Object.is(x, got[i]) ? [] : [`${i}: ${got[i]} vs ${x}`]));
      expect(differ, `[${rows}, ${cols}]`).toEqual([]);
      be.free(w);
      be.free(out);
    }
    expect(() => be.quantizeNf4(new Float32Array(10), [3, 4], doubleQuantizedScales)).toThrow(
      'quantizeNf4: 10 values for shape [3, 4]',
    );
  });

  it('reuses freed blocks instead of asking the driver again', () => {
    const be = backend('bf16');
    const first = be.alloc([1000, 1000], 'bf16');
    be.free(first);
    const reserved = be.memoryStats().reserved;
    for (let i = 0; i < 20; i++) be.free(be.alloc([1000, 999], 'bf16'));
    expect(be.memoryStats().reserved).toBe(reserved);
    expect(() => be.download(first)).toThrow(/freed/);
  });
});
