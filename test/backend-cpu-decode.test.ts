/**
 * The CPU backend's decoding kernels against what they replace: argmax as torch.argmax picks,
 * row gathers, the fused residual add + RMSNorm against add then rmsNormForward, and
 * ropeAppendKv against ropeForward plus copies into the cache slots.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { rng } from './helpers/random-qwen2.js';

const be = new CpuBackend();

function randoms(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

const values = (t: Parameters<CpuBackend['download']>[0]): number[] => [...be.download(t)];

describe('CPU decoding kernels', () => {
  it('argmaxRows takes the largest value of each row, the first one on ties', () => {
    const x = be.upload(Float32Array.from([1, 7, 7, 2, /* row 2 */ -3, -1, -2, -1, /* row 3 */ 0, 0, 0, 0]), [3, 4]);
    const out = be.alloc([3], 'i32');
    be.argmaxRows(out, x);
    expect(values(out)).toEqual([1, 1, 0]);
  });

  it('gatherRows copies whole rows by index, for floats and ints, and refuses an index outside the source', () => {
    const src = be.upload(
      Float32Array.from({ length: 12 }, (_, i) => i),
      [4, 3],
    );
    const out = be.alloc([3, 3]);
    be.gatherRows(out, src, be.upload(Int32Array.of(3, 0, 3), [3], 'i32'));
    expect(values(out)).toEqual([9, 10, 11, 0, 1, 2, 9, 10, 11]);
    const ints = be.upload(Int32Array.of(5, 6, 7), [3], 'i32'),
      picked = be.alloc([2], 'i32');
    be.gatherRows(picked, ints, be.upload(Int32Array.of(2, 1), [2], 'i32'));
    expect(values(picked)).toEqual([7, 6]);
    expect(() => be.gatherRows(picked, ints, be.upload(Int32Array.of(0, 3), [2], 'i32'))).toThrow(
      /index 3 is outside the 3 source rows/,
    );
  });

  it('scatterRows puts rows back by index, keeps the others, and refuses an index outside the destination', () => {
    const dst = be.upload(
      Float32Array.from({ length: 12 }, (_, i) => -i),
      [4, 3],
    );
    be.scatterRows(
      dst,
      be.upload(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]),
      be.upload(Int32Array.of(3, 1), [2], 'i32'),
    );
    expect(values(dst)).toEqual([-0, -1, -2, 4, 5, 6, -6, -7, -8, 1, 2, 3]);
    expect(() =>
      be.scatterRows(dst, be.upload(Float32Array.of(1, 2, 3), [1, 3]), be.upload(Int32Array.of(4), [1], 'i32')),
    ).toThrow(/index 4 is outside the 4 destination rows/);
    expect(() =>
      be.scatterRows(dst, be.upload(Float32Array.of(1, 2, 3), [1, 3]), be.upload(Int32Array.of(0, 1), [2], 'i32')),
    ).toThrow(/src \[1, 3\] is not 2 rows of 3/);
  });

  it('addI32 adds to every element', () => {
    const t = be.upload(Int32Array.of(0, 4, -2), [3], 'i32');
    be.addI32(t, 1);
    expect(values(t)).toEqual([1, 5, -1]);
  });

  it('addRmsNorm equals add followed by rmsNormForward, also with the sum written over an input', () => {
    const D = 24,
      N = 5;
    const a = randoms(N * D, 1),
      b = randoms(N * D, 2),
      w = randoms(D, 3);
    const sum = be.alloc([N, D]),
      out = be.alloc([N, D]),
      rstd = be.alloc([N]);
    const ta = be.upload(a, [N, D]),
      tb = be.upload(b, [N, D]),
      tw = be.upload(w, [D]);
    be.add(sum, ta, tb);
    be.rmsNormForward(out, rstd, sum, tw, 1e-6);
    const fused = be.alloc([N, D]),
      fusedRstd = be.alloc([N]);
    be.addRmsNorm(ta, fused, fusedRstd, ta, tb, tw, 1e-6);
    expect(values(ta)).toEqual(values(sum));
    expect(values(fused)).toEqual(values(out));
    expect(values(fusedRstd)).toEqual(values(rstd));
  });

  it('ropeAppendKv rotates q in place and writes rotated k and v into the cache slots of each sequence', () => {
    const B = 2,
      T = 3,
      H = 4,
      Hkv = 2,
      hd = 8,
      S = 7,
      offset = 2,
      theta = 10000;
    const q = randoms(B * T * H * hd, 4),
      k = randoms(B * T * Hkv * hd, 5),
      v = randoms(B * T * Hkv * hd, 6);
    const pos = Int32Array.of(0, 1, 2, 5, 6, 7);
    const kCache = be.upload(randoms(B * S * Hkv * hd, 7), [B, S, Hkv, hd]),
      vCache = be.upload(randoms(B * S * Hkv * hd, 8), [B, S, Hkv, hd]);
    const before = { k: values(kCache), v: values(vCache) };
    const qT = be.upload(q, [B, T, H, hd]),
      kT = be.upload(k, [B, T, Hkv, hd]),
      vT = be.upload(v, [B, T, Hkv, hd]),
      posT = be.upload(pos, [B * T], 'i32');
    be.ropeAppendKv(kCache, vCache, qT, kT, vT, posT, offset, theta);

    const qRef = be.upload(q, [B * T, H, hd]),
      kRef = be.upload(k, [B * T, Hkv, hd]);
    be.ropeForward(qRef, qRef, posT, theta);
    be.ropeForward(kRef, kRef, posT, theta);
    expect(values(qT)).toEqual(values(qRef));
    expect(values(kT)).toEqual([...k]);
    const width = Hkv * hd,
      kRot = values(kRef);
    const got = { k: values(kCache), v: values(vCache) };
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        const t = s - offset,
          at = (b * S + s) * width;
        const want =
          t >= 0 && t < T
            ? {
                k: kRot.slice((b * T + t) * width, (b * T + t + 1) * width),
                v: [...v.subarray((b * T + t) * width, (b * T + t + 1) * width)],
              }
            : { k: before.k.slice(at, at + width), v: before.v.slice(at, at + width) };
        expect(got.k.slice(at, at + width), `k b${b} s${s}`).toEqual(want.k);
        expect(got.v.slice(at, at + width), `v b${b} s${s}`).toEqual(want.v);
      }
    }
    expect(() => be.ropeAppendKv(kCache, vCache, qT, kT, vT, posT, 5, theta)).toThrow(
      /slots \[5, 8\) outside a cache of 7/,
    );
  });

  it('downloadAsync hands back the values the tensor had when it was called', () => {
    const t = be.upload(Float32Array.of(1, 2), [2]);
    const pending = be.downloadAsync(t);
    be.scale(t, 10);
    expect([...pending.wait()]).toEqual([1, 2]);
  });
});
