/**
 * The CUDA backend's decoding kernels against the CPU reference (test/helpers/decode-parity.ts),
 * with f32 and bf16 storage, and downloadAsync: a copy waited for while later work is queued.
 * Without a GPU it runs on the CUDA emulator (test/helpers/cuda-device.ts).
 */
import { describe, expect, it } from 'vitest';
import type { FloatDType } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { CudaBackend } from '../src/backend/cuda/cuda-backend.js';
import { compareOutputs, toleranceFor } from './helpers/backend-parity.js';
import { DECODE_PARITY_CASES } from './helpers/decode-parity.js';
import { cudaTarget } from './helpers/cuda-device.js';

const probe = cudaTarget('backend-cuda-decode');

describe.skipIf(!probe.available)('CUDA decoding kernels against the CPU backend', () => {
  const cpu = new CpuBackend();
  const cuda: Partial<Record<FloatDType, CudaBackend>> = {};
  const backend = (dt: FloatDType): CudaBackend => (cuda[dt] ??= new CudaBackend({ computeDType: dt }));

  for (const c of DECODE_PARITY_CASES) {
    it(c.name, () => {
      const ref = c.run(cpu, 'f32');
      for (const dt of ['f32', 'bf16'] as const) {
        const tol = toleranceFor(c, dt);
        for (const r of compareOutputs(c.run(backend(dt), dt), ref))
          expect(r.rel, `${dt} ${r.output}`).toBeLessThanOrEqual(tol);
      }
    });
  }

  it('gatherRows and scatterRows take more rows than one launch grid holds (65,535)', () => {
    const be = backend('f32');
    const N = 65535 + 3,
      R = 8;
    const table = be.upload(
      Float32Array.from({ length: R * 4 }, (_, i) => i),
      [R, 4],
    );
    const index = be.upload(
      Int32Array.from({ length: N }, (_, i) => (i * 5) % R),
      [N],
      'i32',
    );
    const picked = be.alloc([N, 4]);
    be.gatherRows(picked, table, index);
    const got = be.download(picked);
    for (const i of [0, 1, 65534, 65535, N - 1])
      expect(Array.from(got.subarray(4 * i, 4 * i + 4)), `row ${i}`).toEqual(
        [0, 1, 2, 3].map((c) => 4 * ((i * 5) % R) + c),
      );
    // Scattered back into N rows by the identity order reversed: row N - 1 - i gets row i.
    const back = be.alloc([N, 4]);
    be.scatterRows(
      back,
      picked,
      be.upload(
        Int32Array.from({ length: N }, (_, i) => N - 1 - i),
        [N],
        'i32',
      ),
    );
    const again = be.download(back);
    for (const i of [0, 2, 3, N - 1])
      expect(Array.from(again.subarray(4 * (N - 1 - i), 4 * (N - i))), `row ${i}`).toEqual(
        Array.from(got.subarray(4 * i, 4 * i + 4)),
      );
    for (const x of [table, index, picked, back]) be.free(x);
  });

  it('downloadAsync returns the values as of its call while later work runs, and reports device errors', () => {
    const be = backend('bf16');
    const t = be.upload(Float32Array.of(1.5, -2, 3), [3], 'bf16'),
      ids = be.upload(Int32Array.of(7, 9), [2], 'i32');
    const first = be.downloadAsync(t),
      firstIds = be.downloadAsync(ids);
    be.scale(t, 2);
    be.addI32(ids, 1);
    const second = be.downloadAsync(t);
    expect([...firstIds.wait()]).toEqual([7, 9]);
    expect([...second.wait()]).toEqual([3, -4, 6]);
    expect([...first.wait()]).toEqual([1.5, -2, 3]);
    const table = be.upload(new Float32Array(8), [2, 4], 'bf16'),
      out = be.alloc([2, 4], 'bf16');
    be.embedding(out, table, ids);
    expect(() => be.downloadAsync(out).wait()).toThrow(/token id is outside the vocabulary/);
    expect(be.download(ids)).toEqual(Float32Array.of(8, 10));
    for (const x of [t, ids, table, out]) be.free(x);
  });
});
