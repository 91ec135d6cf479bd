/**
 * ggml's block formats, as laid out in ggml-common.h (all little-endian, blocks back to back
 * along a row of ne0 values; a row is a whole number of blocks):
 *
 * - Q8_0 (32 values, 34 bytes): f16 d, int8 q[32];                      x = d * q
 * - Q5_0 (32 values, 22 bytes): f16 d, u32 qh, u8 qs[16];               x = d * (q - 16), q 5 bits:
 *   low nibbles of qs are values 0..15, high nibbles 16..31, bit j of qh is bit 4 of value j.
 * - Q4_K (256 values, 144 bytes): f16 d, f16 dmin, u8 scales[12], u8 qs[128]; eight sub-blocks
 *   of 32 with a 6-bit scale and a 6-bit min each: x = d * sc * q - dmin * m. Each 32 bytes of
 *   qs hold two sub-blocks (low nibbles the first, high nibbles the second). The 12 scale bytes
 *   pack sc and m for sub-blocks 0-3 in the low 6 bits of bytes 0-3 (sc) and 4-7 (m); for 4-7
 *   the low 4 bits in bytes 8-11 (sc low nibble, m high nibble) and the top 2 bits in the high
 *   2 bits of bytes 0-3 (sc) and 4-7 (m).
 * - Q6_K (256 values, 210 bytes): u8 ql[128], u8 qh[64], int8 scales[16], f16 d; sixteen
 *   sub-blocks of 16: x = d * scale * (q - 32), q 6 bits. Per half of 128 values, ql's 64
 *   bytes hold the low nibbles (values 0-31 and 32-63 low, 64-95 and 96-127 high) and qh's 32
 *   bytes the top two bits of values l, l+32, l+64, l+96 at bits 0, 2, 4, 6.
 *
 * The quantizers are ours (written from the format, not ported): Q8_0 and Q5_0 scale by the
 * block's largest magnitude; Q4_K fits each sub-block's scale and min by least squares over a
 * few candidate grids; Q6_K fits each sub-block's scale by least squares from the absmax start.
 */
import { f32ToF16Bits } from '../tensor/dtype.js';

export const QK8_0 = 32;
export const QK5_0 = 32;
export const QK_K = 256;
export const Q8_0_BYTES = 34;
export const Q5_0_BYTES = 22;
export const Q4_K_BYTES = 144;
export const Q6_K_BYTES = 210;

let halfTable: Float32Array | undefined;
/** f16 bits -> value, all 65,536 precomputed. */
function halves(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    t[h] =
      exp === 0
        ? sign * mant * 2 ** -24
        : exp === 31
          ? mant
            ? NaN
            : sign * Infinity
          : sign * (1024 + mant) * 2 ** (exp - 25);
  }
  halfTable = t;
  return t;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** f32 -> f16 bits, round to nearest even (scales are normal numbers well inside f16's range, or 0). */
function halfBits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 112;
  if (exp <= 0 || exp >= 31) return f32ToF16Bits(v); // zero, subnormal, overflow: the general path
  const mant = x & 0x7fffff;
  let r = (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** The f16 bits of v and the value they hold. */
function toHalf(v: number): [number, number] {
  const bits = halfBits(v);
  return [bits, halves()[bits]];
}

/** Rounds to nearest, halves away from zero (C's roundf, which ggml uses); |v| < 2^31. */
const roundf = (v: number): number => (v + (v < 0 ? -0.5 : 0.5)) | 0;

function checkRow(n: number, block: number, what: string): void {
  if (n % block !== 0) throw new RangeError(`${what}: ${n} values is not a multiple of ${block}`);
}

// ---------------------------------------------------------------------------------------- Q8_0

export function quantizeQ8_0(
  x: Float32Array,
  out: Uint8Array = new Uint8Array((x.length / QK8_0) * Q8_0_BYTES),
): Uint8Array {
  checkRow(x.length, QK8_0, 'Q8_0');
  for (let b = 0, o = 0; b < x.length; b += QK8_0, o += Q8_0_BYTES) {
    let amax = 0;
    for (let i = 0; i < QK8_0; i++) {
      const a = Math.abs(x[b + i]);
      if (a > amax) amax = a;
    }
    // In f32 as ggml computes it, so the codes are ggml's own.
    const d = Math.fround(amax / 127);
    const inv = d > 0 ? Math.fround(1 / d) : 0;
    const bits = halfBits(d);
    out[o] = bits & 0xff;
    out[o + 1] = bits >>> 8;
    // Uint8Array stores the low byte: the int8's two's complement.
    for (let i = 0; i < QK8_0; i++) out[o + 2 + i] = roundf(Math.fround(x[b + i] * inv));
  }
  return out;
}

export function dequantizeQ8_0(src: Uint8Array, out: Float32Array): Float32Array {
  const h = halves();
  for (let b = 0, o = 0; b < out.length; b += QK8_0, o += Q8_0_BYTES) {
    const d = h[src[o] | (src[o + 1] << 8)];
    for (let i = 0; i < QK8_0; i++) out[b + i] = d * ((src[o + 2 + i] << 24) >> 24);
  }
  return out;
}

// ---------------------------------------------------------------------------------------- Q5_0

export function quantizeQ5_0(
  x: Float32Array,
  out: Uint8Array = new Uint8Array((x.length / QK5_0) * Q5_0_BYTES),
): Uint8Array {
  checkRow(x.length, QK5_0, 'Q5_0');
  for (let b = 0, o = 0; b < x.length; b += QK5_0, o += Q5_0_BYTES) {
    // The value of largest magnitude maps to -16, the one end of the range reached exactly.
    let max = 0;
    for (let i = 0; i < QK5_0; i++) if (Math.abs(x[b + i]) > Math.abs(max)) max = x[b + i];
    // The codes from the f32 scale (not its f16 rounding), truncating x / d + 16.5, as ggml does.
    const d = Math.fround(max / -16);
    const inv = d !== 0 ? Math.fround(1 / d) : 0;
    const bits = halfBits(d);
    out[o] = bits & 0xff;
    out[o + 1] = bits >>> 8;
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(31, Math.fround(Math.fround(x[b + j] * inv) + 16.5) | 0);
      const q1 = Math.min(31, Math.fround(Math.fround(x[b + j + 16] * inv) + 16.5) | 0);
      out[o + 6 + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
    }
    out[o + 2] = qh & 0xff;
    out[o + 3] = (qh >>> 8) & 0xff;
    out[o + 4] = (qh >>> 16) & 0xff;
    out[o + 5] = qh >>> 24;
  }
  return out;
}

export function dequantizeQ5_0(src: Uint8Array, out: Float32Array): Float32Array {
  const h = halves();
  for (let b = 0, o = 0; b < out.length; b += QK5_0, o += Q5_0_BYTES) {
    const d = h[src[o] | (src[o + 1] << 8)];
    const qh = (src[o + 2] | (src[o + 3] << 8) | (src[o + 4] << 16) | (src[o + 5] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const byte = src[o + 6 + j];
      out[b + j] = d * (((byte & 15) | (((qh >>> j) & 1) << 4)) - 16);
      out[b + j + 16] = d * (((byte >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------- Q4_K

/** Refinement rounds per sub-block: round to the grid, refit the grid to those codes. */
const Q4K_ROUNDS = 2;

/**
 * Scale s >= 0 and offset m >= 0 with x ~ s * q - m, q in 0..15, for 32 values: start from the
 * grid spanning [min, max], then alternate rounding to the grid and refitting s and m by least
 * squares to the codes (each round can only lower the squared error of the fit). The min is
 * clamped at 0 (m >= 0), as the format wants.
 */
function fitSubBlock(x: Float32Array, at: number, res: Float64Array): void {
  let lo = 0,
    hi = -Infinity;
  for (let i = 0; i < 32; i++) {
    const v = x[at + i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi <= lo) {
    res[0] = 0;
    res[1] = -lo;
    return;
  }
  let s = (hi - lo) / 15;
  let b = lo;
  let sx = 0;
  for (let i = 0; i < 32; i++) sx += x[at + i];
  for (let round = 0; round < Q4K_ROUNDS; round++) {
    const inv = 1 / s;
    let sq = 0,
      sqq = 0,
      sxq = 0;
    for (let i = 0; i < 32; i++) {
      const v = x[at + i];
      let c = ((v - b) * inv + 0.5) | 0;
      c = c < 0 ? 0 : c > 15 ? 15 : c;
      sq += c;
      sqq += c * c;
      sxq += v * c;
    }
    // Least squares of x = s * q + b over the codes, then b (= -m) clamped to <= 0.
    const det = 32 * sqq - sq * sq;
    if (det <= 0) break;
    let ns = (32 * sxq - sq * sx) / det;
    let nb = (sx - ns * sq) / 32;
    if (nb > 0) {
      nb = 0;
      ns = sxq / sqq;
    }
    if (!(ns > 0)) break;
    s = ns;
    b = nb;
  }
  res[0] = s;
  res[1] = -b;
}

export function quantizeQ4_K(
  x: Float32Array,
  out: Uint8Array = new Uint8Array((x.length / QK_K) * Q4_K_BYTES),
): Uint8Array {
  checkRow(x.length, QK_K, 'Q4_K');
  const scales = new Float64Array(8);
  const mins = new Float64Array(8);
  const fit = new Float64Array(2);
  const sc = new Uint8Array(8);
  const mn = new Uint8Array(8);
  const h = halves();
  for (let b = 0, o = 0; b < x.length; b += QK_K, o += Q4_K_BYTES) {
    let maxS = 0,
      maxM = 0;
    for (let j = 0; j < 8; j++) {
      fitSubBlock(x, b + 32 * j, fit);
      scales[j] = fit[0];
      mins[j] = fit[1];
      if (fit[0] > maxS) maxS = fit[0];
      if (fit[1] > maxM) maxM = fit[1];
    }
    const [dBits, d] = toHalf(maxS / 63);
    const [mBits, dmin] = toHalf(maxM / 63);
    for (let j = 0; j < 8; j++) {
      sc[j] = d > 0 ? Math.min(63, Math.round(scales[j] / d)) : 0;
      mn[j] = dmin > 0 ? Math.min(63, Math.round(mins[j] / dmin)) : 0;
    }
    out[o] = dBits & 0xff;
    out[o + 1] = dBits >>> 8;
    out[o + 2] = mBits & 0xff;
    out[o + 3] = mBits >>> 8;
    const s = o + 4;
    for (let j = 0; j < 4; j++) {
      out[s + j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
      out[s + j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6);
      out[s + j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
    }
    // Codes against the stored (rounded) scales, so rounding the scales costs as little as it can.
    const qs = o + 16;
    for (let pair = 0; pair < 4; pair++) {
      for (let half = 0; half < 2; half++) {
        const j = 2 * pair + half;
        const step = h[dBits] * sc[j];
        const off = h[mBits] * mn[j];
        const inv = step > 0 ? 1 / step : 0;
        const at = b + 32 * j;
        const q = qs + 32 * pair;
        const shift = 4 * half;
        for (let l = 0; l < 32; l++) {
          let c = ((x[at + l] + off) * inv + 0.5) | 0;
          c = c < 0 ? 0 : c > 15 ? 15 : c;
          out[q + l] = half === 0 ? c : out[q + l] | (c << shift);
        }
      }
    }
  }
  return out;
}

export function dequantizeQ4_K(src: Uint8Array, out: Float32Array): Float32Array {
  const h = halves();
  for (let b = 0, o = 0; b < out.length; b += QK_K, o += Q4_K_BYTES) {
    const d = h[src[o] | (src[o + 1] << 8)];
    const dmin = h[src[o + 2] | (src[o + 3] << 8)];
    const s = o + 4;
    const qs = o + 16;
    for (let j = 0; j < 8; j++) {
      let sc: number, m: number;
      if (j < 4) {
        sc = src[s + j] & 63;
        m = src[s + j + 4] & 63;
      } else {
        sc = (src[s + j + 4] & 15) | ((src[s + j - 4] >> 6) << 4);
        m = (src[s + j + 4] >> 4) | ((src[s + j] >> 6) << 4);
      }
      const step = d * sc;
      const off = dmin * m;
      const q = qs + 32 * (j >> 1);
      const shift = (j & 1) * 4;
      for (let l = 0; l < 32; l++) out[b + 32 * j + l] = step * ((src[q + l] >> shift) & 15) - off;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------- Q6_K

/** Refinement rounds of a Q6_K sub-block's scale. */
const Q6K_ROUNDS = 2;

/**
 * Scale s for x ~ s * q, q in -32..31, for 16 values: start with the value of largest
 * magnitude at -32 (the end of the range reached exactly), then alternate rounding and the
 * least-squares scale of the codes.
 */
function fitQ6(x: Float32Array, at: number): number {
  let max = 0;
  for (let i = 0; i < 16; i++) if (Math.abs(x[at + i]) > Math.abs(max)) max = x[at + i];
  if (max === 0) return 0;
  let s = max / -32;
  for (let round = 0; round < Q6K_ROUNDS; round++) {
    const inv = 1 / s;
    let sxq = 0,
      sqq = 0;
    for (let i = 0; i < 16; i++) {
      let c = roundf(x[at + i] * inv);
      c = c < -32 ? -32 : c > 31 ? 31 : c;
      sxq += x[at + i] * c;
      sqq += c * c;
    }
    const ns = sqq > 0 ? sxq / sqq : 0;
    if (ns === 0) break;
    s = ns;
  }
  return s;
}

export function quantizeQ6_K(
  x: Float32Array,
  out: Uint8Array = new Uint8Array((x.length / QK_K) * Q6_K_BYTES),
): Uint8Array {
  checkRow(x.length, QK_K, 'Q6_K');
  const scales = new Float64Array(16);
  const codes = new Uint8Array(QK_K);
  const h = halves();
  for (let b = 0, o = 0; b < x.length; b += QK_K, o += Q6_K_BYTES) {
    // Signed scales: the one of largest magnitude maps to -128 (the int8 end reached exactly).
    let maxS = 0;
    for (let j = 0; j < 16; j++) {
      scales[j] = fitQ6(x, b + 16 * j);
      if (Math.abs(scales[j]) > Math.abs(maxS)) maxS = scales[j];
    }
    const [dBits] = toHalf(maxS / -128);
    const d = h[dBits];
    out[o + 208] = dBits & 0xff;
    out[o + 209] = dBits >>> 8;
    for (let j = 0; j < 16; j++) {
      const si = d !== 0 ? Math.max(-128, Math.min(127, Math.round(scales[j] / d))) : 0;
      out[o + 192 + j] = si & 0xff;
      const step = d * si;
      const inv = step !== 0 ? 1 / step : 0;
      for (let l = 0; l < 16; l++) {
        let c = roundf(x[b + 16 * j + l] * inv);
        c = c < -32 ? -32 : c > 31 ? 31 : c;
        codes[16 * j + l] = c + 32;
      }
    }
    for (let half = 0; half < 2; half++) {
      const ql = o + 64 * half;
      const qh = o + 128 + 32 * half;
      const c = 128 * half;
      for (let l = 0; l < 32; l++) {
        const c0 = codes[c + l],
          c1 = codes[c + l + 32],
          c2 = codes[c + l + 64],
          c3 = codes[c + l + 96];
        out[ql + l] = (c0 & 15) | ((c2 & 15) << 4);
        out[ql + l + 32] = (c1 & 15) | ((c3 & 15) << 4);
        out[qh + l] = (c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6);
      }
    }
  }
  return out;
}

export function dequantizeQ6_K(src: Uint8Array, out: Float32Array): Float32Array {
  const h = halves();
  for (let b = 0, o = 0; b < out.length; b += QK_K, o += Q6_K_BYTES) {
    const d = h[src[o + 208] | (src[o + 209] << 8)];
    for (let half = 0; half < 2; half++) {
      const ql = o + 64 * half;
      const qh = o + 128 + 32 * half;
      const sc = o + 192 + 8 * half;
      const y = b + 128 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const hb = src[qh + l];
        const q0 = ((src[ql + l] & 15) | ((hb & 3) << 4)) - 32;
        const q1 = ((src[ql + l + 32] & 15) | (((hb >> 2) & 3) << 4)) - 32;
        const q2 = ((src[ql + l] >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        const q3 = ((src[ql + l + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32;
        out[y + l] = d * ((src[sc + is] << 24) >> 24) * q0;
        out[y + l + 32] = d * ((src[sc + is + 2] << 24) >> 24) * q1;
        out[y + l + 64] = d * ((src[sc + is + 4] << 24) >> 24) * q2;
        out[y + l + 96] = d * ((src[sc + is + 6] << 24) >> 24) * q3;
      }
    }
  }
  return out;
}
