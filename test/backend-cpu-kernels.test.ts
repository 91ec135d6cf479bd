/**
 * Every backward kernel of the CPU backend against central finite differences in f64, and every
 * forward kernel against a direct (naive) formula written here.
 */
import { describe, expect, it } from 'vitest';
import { dropoutUniform, type Tensor } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { randomArray, rng } from './helpers/random-qwen2.js';

const be = new CpuBackend({ float64: true });
const rand = rng(42);

function up(data: ArrayLike<number>, shape: number[]): Tensor {
  return be.upload(Float64Array.from(data), shape);
}
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Checks the analytic gradient of L(x) = <R, f(x)> against central differences, element by
 * element. `f` returns f(x) as host values; `grad` the analytic dL/dx.
 */
function gradCheck(
  x: Float64Array,
  f: (x: Float64Array) => ArrayLike<number>,
  grad: ArrayLike<number>,
  R: ArrayLike<number>,
): void {
  const h = 1e-5;
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const xp = Float64Array.from(x),
      xm = Float64Array.from(x);
    xp[i] += h;
    xm[i] -= h;
    const fd = (dot(R, f(xp)) - dot(R, f(xm))) / (2 * h);
    worst = Math.max(worst, Math.abs(fd - grad[i]) / Math.max(1, Math.abs(fd)));
  }
  expect(worst).toBeLessThan(1e-7);
}

describe('CPU kernels, forward against direct formulas', () => {
  it('rmsNormForward matches x / sqrt(mean(x^2) + eps) * w', () => {
    const N = 3,
      D = 8;
    const x = randomArray(N * D, 2, rand),
      w = randomArray(D, 0.5, rand, 1);
    const out = be.alloc([N, D]),
      rstd = be.alloc([N]);
    be.rmsNormForward(out, rstd, up(x, [N, D]), up(w, [D]), 1e-6);
    const got = be.download(out);
    for (let n = 0; n < N; n++) {
      let ms = 0;
      for (let i = 0; i < D; i++) ms += x[n * D + i] ** 2 / D;
      for (let i = 0; i < D; i++) expect(got[n * D + i]).toBeCloseTo((x[n * D + i] / Math.sqrt(ms + 1e-6)) * w[i], 10);
    }
  });

  it('ropeForward rotates pairs (i, i + hd/2) by pos * theta^(-2i/hd)', () => {
    const N = 3,
      H = 2,
      hd = 8;
    const x = randomArray(N * H * hd, 1, rand);
    const pos = Int32Array.from([0, 5, 17]);
    const out = be.alloc([N, H, hd]);
    be.ropeForward(out, up(x, [N, H, hd]), be.upload(pos, [N], 'i32'), 10000);
    const got = be.download(out);
    for (let n = 0; n < N; n++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < hd / 2; i++) {
          const a = pos[n] * 10000 ** (-(2 * i) / hd);
          const o = (n * H + h) * hd;
          expect(got[o + i]).toBeCloseTo(x[o + i] * Math.cos(a) - x[o + i + hd / 2] * Math.sin(a), 5);
          expect(got[o + i + hd / 2]).toBeCloseTo(x[o + i + hd / 2] * Math.cos(a) + x[o + i] * Math.sin(a), 5);
        }
  });

  it('attentionForward matches explicit softmax(QK^T/sqrt(d) + mask) V with GQA and a KV offset', () => {
    const B = 2,
      T = 2,
      S = 4,
      H = 4,
      Hkv = 2,
      hd = 3,
      kvLen = 3;
    const q = randomArray(B * T * H * hd, 1, rand),
      k = randomArray(B * S * Hkv * hd, 1, rand),
      v = randomArray(B * S * Hkv * hd, 1, rand);
    const mask = Int32Array.from([1, 1, 1, 1, 0, 1, 1, 1]);
    const out = be.alloc([B, T, H, hd]),
      lse = be.alloc([B, T, H]);
    be.attentionForward(
      out,
      lse,
      up(q, [B, T, H, hd]),
      up(k, [B, S, Hkv, hd]),
      up(v, [B, S, Hkv, hd]),
      be.upload(mask, [B, S], 'i32'),
      { kvLen },
    );
    const got = be.download(out);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let h = 0; h < H; h++) {
          const kh = Math.floor(h / 2);
          const scores: number[] = [];
          for (let s = 0; s < S; s++) {
            const visible = s <= kvLen - T + t && mask[b * S + s] === 1;
            let d = 0;
            for (let i = 0; i < hd; i++) d += q[((b * T + t) * H + h) * hd + i] * k[((b * S + s) * Hkv + kh) * hd + i];
            scores.push(visible ? d / Math.sqrt(hd) : -Infinity);
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, c) => a + c, 0);
          for (let i = 0; i < hd; i++) {
            let want = 0;
            for (let s = 0; s < S; s++) want += (e[s] / z) * v[((b * S + s) * Hkv + kh) * hd + i];
            expect(got[((b * T + t) * H + h) * hd + i]).toBeCloseTo(want, 10);
          }
        }
  });

  it('attention gives a zero output and -inf lse to a query with no visible key', () => {
    const out = be.alloc([1, 2, 1, 2]),
      lse = be.alloc([1, 2, 1]);
    const mask = be.upload(Int32Array.from([0, 1]), [1, 2], 'i32');
    be.attentionForward(
      out,
      lse,
      up([1, 2, 3, 4], [1, 2, 1, 2]),
      up([1, 1, 1, 1], [1, 2, 1, 2]),
      up([5, 6, 7, 8], [1, 2, 1, 2]),
      mask,
    );
    expect(Array.from(be.download(out))).toEqual([0, 0, 7, 8]);
    expect(be.download(lse)[0]).toBe(-Infinity);
  });

  it('crossEntropy matches -log softmax and ignores negative targets', () => {
    const N = 3,
      V = 5;
    const logits = randomArray(N * V, 3, rand);
    const losses = be.alloc([N]);
    be.crossEntropy(losses, up(logits, [N, V]), be.upload(Int32Array.from([2, -100, 4]), [N], 'i32'));
    const got = be.download(losses);
    for (const [n, t] of [
      [0, 2],
      [2, 4],
    ]) {
      const row = Array.from(logits.subarray(n * V, n * V + V));
      const lse = Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
      expect(got[n]).toBeCloseTo(lse - row[t], 10);
    }
    expect(got[1]).toBe(0);
  });

  it('embedding, sum and sumSquares', () => {
    const table = randomArray(4 * 3, 1, rand);
    const out = be.alloc([2, 3]);
    be.embedding(out, up(table, [4, 3]), be.upload(Int32Array.from([3, 1]), [2], 'i32'));
    expect(Array.from(be.download(out))).toEqual([...table.subarray(9, 12), ...table.subarray(3, 6)]);
    const s = be.alloc([1]);
    be.sumSquares(s, up([1, 2, 3], [3]));
    be.sum(s, up([1, 2, 3], [3]), true);
    expect(be.download(s)[0]).toBe(14 + 6);
  });

  it('dropout keeps elements with probability 1-p, scales them, and is reproducible from its seed', () => {
    const n = 20000,
      p = 0.25;
    const x = up(new Float32Array(n).fill(1), [n]);
    const out = be.alloc([n]);
    be.dropout(out, x, p, 7);
    const got = be.download(out);
    const kept = got.filter((v) => v !== 0);
    expect(kept.length / n).toBeGreaterThan(0.74);
    expect(kept.length / n).toBeLessThan(0.76);
    expect(kept.every((v) => Math.abs(v - 1 / (1 - p)) < 1e-12)).toBe(true);
    for (let i = 0; i < 100; i++) expect(got[i] !== 0).toBe(dropoutUniform(7, i) >= p);
    const again = be.alloc([n]);
    be.dropout(again, x, p, 7);
    expect(be.download(again)).toEqual(got);
    be.dropout(again, x, p, 8);
    expect(be.download(again)).not.toEqual(got);
  });

  it('adamw follows torch.optim.AdamW step by step', () => {
    const n = 6;
    const p0 = randomArray(n, 1, rand);
    const param = up(p0, [n]),
      m = be.alloc([n]),
      v = be.alloc([n]);
    const o = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const P = Array.from(p0),
      M = new Array(n).fill(0),
      Vv = new Array(n).fill(0);
    for (let step = 1; step <= 3; step++) {
      const g = randomArray(n, 1, rand);
      be.adamw(param, up(g, [n]), m, v, { ...o, step });
      for (let i = 0; i < n; i++) {
        P[i] *= 1 - o.lr * o.weightDecay;
        M[i] = o.beta1 * M[i] + (1 - o.beta1) * g[i];
        Vv[i] = o.beta2 * Vv[i] + (1 - o.beta2) * g[i] * g[i];
        const mhat = M[i] / (1 - o.beta1 ** step),
          vhat = Vv[i] / (1 - o.beta2 ** step);
        P[i] -= (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
      }
    }
    const got = be.download(param);
    for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(P[i], 9);
  });
});

describe('CPU kernels, backward against central differences (f64)', () => {
  it('rmsNormBackward', () => {
    const N = 3,
      D = 6;
    const x = randomArray(N * D, 2, rand),
      w = randomArray(D, 0.5, rand, 1),
      R = randomArray(N * D, 1, rand);
    const fwd = (xv: Float64Array): ArrayLike<number> => {
      const out = be.alloc([N, D]),
        rstd = be.alloc([N]);
      be.rmsNormForward(out, rstd, up(xv, [N, D]), up(w, [D]), 1e-6);
      return be.download(out);
    };
    const xt = up(x, [N, D]),
      out = be.alloc([N, D]),
      rstd = be.alloc([N]);
    be.rmsNormForward(out, rstd, xt, up(w, [D]), 1e-6);
    const dx = up(new Float32Array(N * D).fill(0.5), [N, D]);
    be.rmsNormBackward(dx, up(R, [N, D]), xt, up(w, [D]), rstd, true);
    gradCheck(
      x,
      fwd,
      Array.from(be.download(dx), (g) => g - 0.5),
      R,
    );
  });

  it('ropeBackward', () => {
    const N = 3,
      H = 2,
      hd = 4;
    const x = randomArray(N * H * hd, 1, rand),
      R = randomArray(N * H * hd, 1, rand);
    const pos = be.upload(Int32Array.from([3, 0, 9]), [N], 'i32');
    const fwd = (xv: Float64Array): ArrayLike<number> => {
      const out = be.alloc([N, H, hd]);
      be.ropeForward(out, up(xv, [N, H, hd]), pos, 100);
      return be.download(out);
    };
    const dx = be.alloc([N, H, hd]);
    be.ropeBackward(dx, up(R, [N, H, hd]), pos, 100);
    gradCheck(x, fwd, be.download(dx), R);
  });

  it('attentionBackward (GQA, padding, KV offset) for q, k and v', () => {
    const B = 2,
      T = 3,
      S = 4,
      H = 4,
      Hkv = 2,
      hd = 2,
      kvLen = 4;
    const shapesQ = [B, T, H, hd],
      shapesK = [B, S, Hkv, hd];
    const q = randomArray(B * T * H * hd, 1, rand),
      k = randomArray(B * S * Hkv * hd, 1, rand),
      v = randomArray(B * S * Hkv * hd, 1, rand);
    const R = randomArray(B * T * H * hd, 1, rand);
    const mask = be.upload(Int32Array.from([0, 1, 1, 1, 1, 1, 0, 1]), [B, S], 'i32');
    const run = (qv: Float64Array, kv: Float64Array, vv: Float64Array): { out: Tensor; lse: Tensor } => {
      const out = be.alloc(shapesQ),
        lse = be.alloc([B, T, H]);
      be.attentionForward(out, lse, up(qv, shapesQ), up(kv, shapesK), up(vv, shapesK), mask, { kvLen });
      return { out, lse };
    };
    const { out, lse } = run(q, k, v);
    const dq = be.alloc(shapesQ),
      dk = be.alloc(shapesK),
      dv = be.alloc(shapesK);
    be.attentionBackward(dq, dk, dv, up(R, shapesQ), up(q, shapesQ), up(k, shapesK), up(v, shapesK), out, lse, mask, {
      kvLen,
    });
    gradCheck(q, (x) => be.download(run(x, k, v).out), be.download(dq), R);
    gradCheck(k, (x) => be.download(run(q, x, v).out), be.download(dk), R);
    gradCheck(v, (x) => be.download(run(q, k, x).out), be.download(dv), R);
  });

  it('swigluBackward for gate and up', () => {
    const n = 7;
    const g = randomArray(n, 3, rand),
      u = randomArray(n, 2, rand),
      R = randomArray(n, 1, rand);
    const fwd = (gv: Float64Array, uv: Float64Array): ArrayLike<number> => {
      const out = be.alloc([n]);
      be.swigluForward(out, up(gv, [n]), up(uv, [n]));
      return be.download(out);
    };
    const dg = be.alloc([n]),
      du = be.alloc([n]);
    be.swigluBackward(dg, du, up(R, [n]), up(g, [n]), up(u, [n]));
    gradCheck(g, (x) => fwd(x, u), be.download(dg), R);
    gradCheck(u, (x) => fwd(g, x), be.download(du), R);
  });

  it('crossEntropy gradient (scaled, in place over the logits)', () => {
    const N = 3,
      V = 6,
      scale = 0.37;
    const logits = randomArray(N * V, 2, rand);
    const targets = be.upload(Int32Array.from([1, -100, 5]), [N], 'i32');
    const fwd = (lv: Float64Array): ArrayLike<number> => {
      const losses = be.alloc([N]);
      be.crossEntropy(losses, up(lv, [N, V]), targets);
      return be.download(losses);
    };
    const lt = up(logits, [N, V]),
      losses = be.alloc([N]);
    be.crossEntropy(losses, lt, targets, lt, scale);
    gradCheck(logits, fwd, be.download(lt), new Float32Array(N).fill(scale));
  });
});
