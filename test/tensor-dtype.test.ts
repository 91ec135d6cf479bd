import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToBf16Bits, f32ToF16, f32ToF16Bits } from '../src/tensor/dtype.js';

/** f32 value of a raw bit pattern, for inputs that must be exact. */
const fromBits = (bits: number): number => new Float32Array(Uint32Array.of(bits).buffer)[0];

describe('bf16', () => {
  it('rounds to nearest, ties to even (hand-checked bit patterns)', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(-2.5)).toBe(0xc020);
    expect(f32ToBf16Bits(fromBits(0x40490fdb))).toBe(0x4049); // pi: dropped half 0x0FDB < 0x8000
    expect(f32ToBf16Bits(fromBits(0x3f808000))).toBe(0x3f80); // 1 + 2^-8: tie, 0x3F80 is even
    expect(f32ToBf16Bits(fromBits(0x3f818000))).toBe(0x3f82); // 1 + 3*2^-8: tie, round up to even
    expect(f32ToBf16Bits(fromBits(0x3f808001))).toBe(0x3f81); // just above the tie
    expect(f32ToBf16Bits(fromBits(0x7f7fffff))).toBe(0x7f80); // f32 max rounds to +inf
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(fromBits(0x000116c2))).toBe(0x0001); // subnormal
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
  });

  it('keeps NaN a NaN, even with a payload only in the low bits', () => {
    const out = f32ToBf16(Float32Array.of(NaN, fromBits(0x7f800001), fromBits(0xffffffff)));
    for (const h of out) expect(Number.isNaN(bf16ToF32(Uint16Array.of(h))[0])).toBe(true);
    expect(out[0]).toBe(0x7fc0);
  });

  it('decodes exactly and round-trips every non-NaN bit pattern', () => {
    expect(Array.from(bf16ToF32(Uint16Array.of(0x3f80, 0xc020, 0x4049, 0x7f80)))).toEqual([
      1,
      -2.5,
      3.140625,
      Infinity,
    ]);
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToBf16(bf16ToF32(all));
    const wrong = [...all].filter((i) => !((i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0) && back[i] !== i);
    expect(wrong).toEqual([]);
  });
});

describe('f16', () => {
  it('rounds to nearest even, with subnormals and overflow (hand-checked bit patterns)', () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00],
      [2 ** -14, 0x0400],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [3 * 2 ** -26, 0x0001],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [-0, 0x8000],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [Infinity, 0x7c00],
      [-1e10, 0xfc00],
      [1e-10, 0x0000],
    ];
    for (const [v, bits] of cases) expect([v, f32ToF16Bits(v)]).toEqual([v, bits]);
    expect(f32ToF16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16Bits(NaN) & 0x3ff).not.toBe(0);
  });

  it('decodes exactly and round-trips every non-NaN bit pattern', () => {
    expect(Array.from(f16ToF32(Uint16Array.of(0x3555, 0x0001, 0xfbff, 0x7c00, 0x0400)))).toEqual([
      0.333251953125,
      2 ** -24,
      -65504,
      Infinity,
      2 ** -14,
    ]);
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    const wrong = [...all].filter((i) => !((i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0) && back[i] !== i);
    expect(wrong).toEqual([]);
  });

  it('matches exact rounding of random values computed in float64', () => {
    // Independent oracle: round x to the f16 grid with float64 arithmetic (exact for f32 inputs).
    const oracle = (x: number): number => {
      const a = Math.abs(x);
      const e = Math.max(Math.floor(Math.log2(a)), -14);
      const ulp = 2 ** (e - 10);
      const q = a / ulp;
      let r = Math.floor(q);
      if (q - r > 0.5 || (q - r === 0.5 && r % 2 === 1)) r++;
      return Math.sign(x) * r * ulp;
    };
    let seed = 12345;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const xs = new Float32Array(5000).map(() => (rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 26));
    const got = f16ToF32(f32ToF16(xs));
    const wrong = [...xs.keys()].filter((i) => got[i] !== oracle(xs[i])).map((i) => xs[i]);
    expect(wrong).toEqual([]);
  });
});
