import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { nf4Of } from '../src/backend/cpu/cpu-tensor.js';
import { doubleQuantizedScales, dynamicMap, nf4Absmax, nf4Dequantize, nf4Quantize } from '../src/quant/nf4.js';
import { nf4FromStateDict, nf4ToStateDict, pythonFloatRepr } from '../src/quant/nf4State.js';
import { NF4_CODE } from '../src/tensor/nf4-blocks.js';
import { SafetensorsFile } from '../src/tensor/safetensors.js';
import { hostTensor, tensorBytes, type HostTensor } from '../src/tensor/tensor.js';
import { nf4EdgeValues } from './helpers/nf4-values.js';

// Written by tools/reference/nf4_reference.py (an independent plain-Python implementation).
const FIXTURE = 'test/fixtures/nf4/nf4_cases.safetensors';
const CASES = ['gauss_64x256', 'gauss_33x100', 'tiny_7x9', 'mixed_300x64'];

function withFixture<T>(fn: (f: SafetensorsFile) => T): T {
  const f = SafetensorsFile.open(FIXTURE);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}

describe('NF4 against the reference fixture', () => {
  it.each(CASES)('%s: every bitsandbytes state-dict tensor is bit-identical', (name) => {
    withFixture((f) => {
      const input = f.info(`${name}.input`);
      const q = nf4Quantize(f.readF32(`${name}.input`), input.shape);
      const ours = nf4ToStateDict(`${name}.weight`, q);
      const theirs = f.names().filter((n) => n.startsWith(`${name}.weight`));
      expect(Object.keys(ours).sort()).toEqual(theirs.sort());
      for (const key of theirs) {
        const want = f.read(key);
        expect([key, ours[key].dtype, ours[key].shape]).toEqual([key, want.dtype, want.shape]);
        expect(Buffer.from(tensorBytes(ours[key])).equals(Buffer.from(tensorBytes(want))), key).toBe(true);
      }
    });
  });

  it('loads the stored state back and dequantizes it like our own quantization', () => {
    withFixture((f) => {
      for (const name of CASES) {
        const loaded = nf4FromStateDict(`${name}.weight`, (k) => (f.has(k) ? f.read(k) : undefined), FIXTURE);
        expect(loaded.shape).toEqual(f.info(`${name}.input`).shape);
        const ours = nf4Quantize(f.readF32(`${name}.input`), loaded.shape);
        expect(Array.from(nf4Dequantize(loaded))).toEqual(Array.from(nf4Dequantize(ours)));
      }
    });
  });
});

describe('NF4 quantization', () => {
  it('packs the first element of each pair into the high nibble', () => {
    // One block, absmax 1: values sit exactly on code-book entries 15, 0, 7, 8.
    const q = nf4Quantize(Float32Array.of(1, -1, 0, NF4_CODE[8]), [2, 2], { doubleQuant: false });
    expect(Array.from(q.packed)).toEqual([0xf0, 0x78]);
    expect(Array.from(nf4Dequantize(q))).toEqual([1, -1, 0, NF4_CODE[8]]);
  });

  it('reconstructs each value as its nearest code times the block absmax (plain absmax)', () => {
    const values = new Float32Array(640).map((_, i) => Math.fround(Math.sin(i * 1.7) * (1 + (i % 64) / 8)));
    const q = nf4Quantize(values, [10, 64], { doubleQuant: false });
    const deq = nf4Dequantize(q);
    const absmax = nf4Absmax(q);
    for (let i = 0; i < values.length; i++) {
      const x = values[i] / absmax[Math.floor(i / 64)];
      const best = Math.min(...Array.from(NF4_CODE, (c) => Math.abs(c - x)));
      expect(Math.abs(deq[i] / absmax[Math.floor(i / 64)] - x)).toBeCloseTo(best, 6);
    }
  });

  it('keeps double-quantized absmax close to the true absmax', () => {
    const values = new Float32Array(64 * 600).map((_, i) =>
      Math.fround(Math.sin(i * 0.37) * 0.02 * (1 + (i % 997) / 500)),
    );
    const plain = nf4Absmax(nf4Quantize(values, [600, 64], { doubleQuant: false }));
    const nested = nf4Absmax(nf4Quantize(values, [600, 64]));
    for (let b = 0; b < plain.length; b++) expect(Math.abs(nested[b] - plain[b])).toBeLessThan(plain[b] * 0.02);
  });

  it('gives Gaussian weights (std 0.02) a relative Frobenius error near 10%', () => {
    let seed = 7;
    const uniform = (): number => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const w = new Float32Array(256 * 512).map(() =>
      Math.fround(0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())),
    );
    const deq = nf4Dequantize(nf4Quantize(w, [256, 512]));
    let num = 0;
    let den = 0;
    for (let i = 0; i < w.length; i++) {
      num += (deq[i] - w[i]) ** 2;
      den += w[i] ** 2;
    }
    const rel = Math.sqrt(num / den);
    expect(rel).toBeGreaterThan(0.05);
    expect(rel).toBeLessThan(0.12);
  });

  it('builds the signed dynamic 8-bit map (sorted, 0 and 1 included, 10^-6..1 range)', () => {
    const map = dynamicMap();
    expect(map.length).toBe(256);
    for (let i = 1; i < 256; i++) expect(map[i]).toBeGreaterThan(map[i - 1]);
    expect(map[127]).toBe(0);
    expect(map[255]).toBe(1);
    // 1e-6 times the mean of linspace(0.1, 1, 2) = [f32(0.1), 1], all in float32.
    expect(map[128]).toBe(Math.fround(Math.fround(1e-6) * Math.fround((Math.fround(0.1) + 1) / 2)));
    expect(map[0]).toBeCloseTo(-(1 - 0.9 / 128), 6); // mean of the last two points of linspace(0.1, 1, 65)
  });
});

describe('NF4 state dict', () => {
  it('round-trips plain (not double-quantized) absmax', () => {
    const values = new Float32Array(130).map((_, i) => Math.fround(Math.cos(i) * 0.1));
    const q = nf4Quantize(values, [13, 10], { doubleQuant: false, dtype: 'float16' });
    const sd = nf4ToStateDict('m.weight', q);
    expect(new TextDecoder().decode(tensorBytes(sd['m.weight.quant_state.bitsandbytes__nf4']))).toBe(
      '{"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [13, 10]}',
    );
    const back = nf4FromStateDict('m.weight', (k) => sd[k], 'mem');
    expect(Array.from(nf4Dequantize(back))).toEqual(Array.from(nf4Dequantize(q)));
  });

  it('reports missing or inconsistent parts with the file and tensor names', () => {
    const q = nf4Quantize(new Float32Array(256).fill(0.5), [4, 64]);
    const sd: Record<string, HostTensor> = nf4ToStateDict('l.weight', q);
    const read = (patch: Record<string, HostTensor | undefined>) => (k: string) => (k in patch ? patch[k] : sd[k]);
    expect(() => nf4FromStateDict('l.weight', read({ 'l.weight.nested_absmax': undefined }), 'a.safetensors')).toThrow(
      'a.safetensors: NF4 weight l.weight lacks l.weight.nested_absmax',
    );
    expect(() =>
      nf4FromStateDict('l.weight', read({ 'l.weight': hostTensor('U8', [3, 1], new Uint8Array(3)) }), 'a.safetensors'),
    ).toThrow(/l\.weight holds 3 bytes, expected 128 for shape \[4, 64\]/);
    const fp4 = new TextEncoder().encode(
      '{"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [4, 64]}',
    );
    expect(() =>
      nf4FromStateDict(
        'l.weight',
        read({ 'l.weight.quant_state.bitsandbytes__nf4': hostTensor('U8', [fp4.length], fp4) }),
        'a.safetensors',
      ),
    ).toThrow(/has unsupported quant_type "fp4"/);
  });

  it('writes floats the way Python json.dumps does', () => {
    const cases: Array<[number, string]> = [
      [0.1, '0.1'],
      [1e-5, '1e-05'],
      [1.5e-7, '1.5e-07'],
      [123, '123.0'],
      [1e16, '1e+16'],
      [0.0001, '0.0001'],
      [1.2345678901234567e19, '1.2345678901234567e+19'],
      [0.012345678918063641, '0.012345678918063641'],
      [-2.5, '-2.5'],
      [0, '0.0'],
      [1234567890123456, '1234567890123456.0'],
      [Math.fround(0.0123), '0.012299999594688416'],
    ];
    for (const [x, text] of cases) expect(pythonFloatRepr(x)).toBe(text);
  });
});

describe('quantizeNf4 on the CPU backend', () => {
  it('stores the codes and de-double-quantized scales of nf4Quantize, edge cases included', () => {
    const be = new CpuBackend();
    for (const [rows, cols] of [
      [5, 77],
      [6, 64],
    ] as const) {
      const values = nf4EdgeValues(rows, cols);
      const q = nf4Quantize(values, [rows, cols]);
      const w = nf4Of(be.quantizeNf4(values, [rows, cols], doubleQuantizedScales));
      expect(w?.shape).toEqual([rows, cols]);
      expect(Array.from(w?.codes ?? [])).toEqual(Array.from(q.packed));
      expect(Array.from(w?.absmax ?? [])).toEqual(Array.from(nf4Absmax(q)));
    }
    // The midpoint block: exactly on a midpoint goes to the lower code, as the kernel decides.
    const q = nf4Quantize(nf4EdgeValues(5, 77), [5, 77]);
    // Element 65 + i is midpoint i (block 1 has absmax 1, element 64): code i.
    const code = (e: number): number => (e % 2 === 0 ? q.packed[e >> 1] >> 4 : q.packed[e >> 1] & 15);
    expect(Array.from({ length: 16 }, (_, i) => code(64 + i))).toEqual([
      15,
      ...Array.from({ length: 15 }, (_, i) => i),
    ]);
  });

  it('names a value count that does not fill the shape', () => {
    expect(() => new CpuBackend().quantizeNf4(new Float32Array(10), [3, 4], doubleQuantizedScales)).toThrow(
      'quantizeNf4: 10 values for shape [3, 4]',
    );
  });
});
