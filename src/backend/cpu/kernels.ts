/**
 * Row-wise and elementwise kernels of the CPU backend over plain arrays: RMSNorm, RoPE, SwiGLU,
 * cross-entropy, embedding lookup, dropout and AdamW. Reductions run in JS doubles.
 */
import { dropoutUniform, ropeInvFreq, type AdamWOptions, type HostFloats as Floats } from '../backend.js';

export function rmsNormForwardCpu(out: Floats, rstd: Floats, x: Floats, w: Floats, eps: number): void {
  const D = w.length;
  const N = x.length / D;
  for (let n = 0; n < N; n++) {
    const o = n * D;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[o + i] * x[o + i];
    const r = 1 / Math.sqrt(ss / D + eps);
    rstd[n] = r;
    for (let i = 0; i < D; i++) out[o + i] = x[o + i] * r * w[i];
  }
}

/** y_i = x_i r w_i with r = (mean x^2 + eps)^-1/2: dx_i = r w_i dy_i - x_i r^3 / D * sum_j w_j dy_j x_j. */
export function rmsNormBackwardCpu(
  dx: Floats,
  dout: Floats,
  x: Floats,
  w: Floats,
  rstd: Floats,
  accumulate: boolean,
): void {
  const D = w.length;
  const N = x.length / D;
  for (let n = 0; n < N; n++) {
    const o = n * D;
    const r = rstd[n];
    let dot = 0;
    for (let i = 0; i < D; i++) dot += w[i] * dout[o + i] * x[o + i];
    const c = (dot * r * r * r) / D;
    for (let i = 0; i < D; i++) {
      const g = r * w[i] * dout[o + i] - x[o + i] * c;
      dx[o + i] = accumulate ? dx[o + i] + g : g;
    }
  }
}

/**
 * rotate_half RoPE: for i < hd/2, (x_i, x_{i+hd/2}) -> (x_i c - x_{i+h} s, x_{i+h} c + x_i s),
 * angle = pos * inv_freq_i rounded to f32 as HF's f32 matmul of positions by frequencies.
 * sign = -1 applies the inverse rotation (the backward pass).
 */
export function ropeCpu(out: Floats, x: Floats, pos: Int32Array, headDim: number, theta: number, sign: number): void {
  const half = headDim / 2;
  const inv = ropeInvFreq(theta, headDim);
  const N = pos.length;
  const heads = x.length / (N * headDim);
  const cos = new Float64Array(half),
    sin = new Float64Array(half);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(pos[n] * inv[i]);
      cos[i] = Math.cos(a);
      sin[i] = sign * Math.sin(a);
    }
    for (let h = 0; h < heads; h++) {
      const o = (n * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const x1 = x[o + i],
          x2 = x[o + i + half];
        out[o + i] = x1 * cos[i] - x2 * sin[i];
        out[o + i + half] = x2 * cos[i] + x1 * sin[i];
      }
    }
  }
}

export function swigluForwardCpu(out: Floats, gate: Floats, up: Floats): void {
  for (let i = 0; i < out.length; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

export function swigluBackwardCpu(dgate: Floats, dup: Floats, dout: Floats, gate: Floats, up: Floats): void {
  for (let i = 0; i < dout.length; i++) {
    const g = gate[i],
      u = up[i],
      d = dout[i];
    const sig = 1 / (1 + Math.exp(-g));
    const silu = g * sig;
    dgate[i] = d * u * sig * (1 + g * (1 - sig));
    dup[i] = d * silu;
  }
}

export function crossEntropyCpu(
  losses: Floats,
  logits: Floats,
  targets: Int32Array,
  dlogits: Floats | null,
  gradScale: number,
): void {
  const N = targets.length;
  const V = logits.length / N;
  for (let n = 0; n < N; n++) {
    const o = n * V;
    const t = targets[n];
    if (t < 0) {
      losses[n] = 0;
      if (dlogits) dlogits.fill(0, o, o + V);
      continue;
    }
    if (t >= V) throw new RangeError(`crossEntropy: target ${t} outside the vocabulary of ${V}`);
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j] - max);
    const lse = max + Math.log(sum);
    losses[n] = lse - logits[o + t];
    if (dlogits) {
      for (let j = 0; j < V; j++) dlogits[o + j] = Math.exp(logits[o + j] - lse) * gradScale;
      dlogits[o + t] -= gradScale;
    }
  }
}

export function embeddingCpu(out: Floats, table: Floats, ids: Int32Array, D: number): void {
  const V = table.length / D;
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    if (id < 0 || id >= V) throw new RangeError(`embedding: token id ${id} outside the vocabulary of ${V}`);
    out.set(table.subarray(id * D, id * D + D), n * D);
  }
}

export function dropoutCpu(out: Floats, x: Floats, p: number, seed: number): void {
  if (p === 0) {
    if (out !== x) out.set(x);
    return;
  }
  const keepScale = 1 / (1 - p);
  for (let i = 0; i < x.length; i++) out[i] = dropoutUniform(seed, i) >= p ? x[i] * keepScale : 0;
}

/** torch.optim.AdamW (foreach=False): p -= lr*wd*p; m, v moments; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). */
export function adamwCpu(p: Floats, g: Floats, m: Floats, v: Floats, o: AdamWOptions): void {
  const decay = 1 - o.lr * o.weightDecay;
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2Sqrt = Math.sqrt(1 - o.beta2 ** o.step);
  const stepSize = o.lr / bc1;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    m[i] = m[i] + (gi - m[i]) * (1 - o.beta1);
    v[i] = v[i] * o.beta2 + (1 - o.beta2) * gi * gi;
    p[i] = p[i] * decay - (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + o.eps);
  }
}

/** out[n] = first index of the largest value of row n of x [N, V]. */
export function argmaxRowsCpu(out: Int32Array, x: Floats): void {
  const V = x.length / out.length;
  for (let n = 0; n < out.length; n++) {
    const o = n * V;
    let best = 0;
    for (let j = 1; j < V; j++) if (x[o + j] > x[o + best]) best = j;
    out[n] = best;
  }
}

/**
 * Rotates q [N, H, hd] in place and writes k rotated and v into the cache slots of their tokens:
 * token n = b*T + t goes to slot offset + t of sequence b in caches [B, S, Hkv, hd].
 */
export function ropeAppendKvCpu(
  kCache: Floats,
  vCache: Floats,
  q: Floats,
  k: Floats,
  v: Floats,
  pos: Int32Array,
  T: number,
  S: number,
  offset: number,
  headDim: number,
  theta: number,
): void {
  const N = pos.length;
  const kvWidth = k.length / N;
  ropeCpu(q, q, pos, headDim, theta, 1);
  const rotated = new Float64Array(k.length);
  ropeCpu(rotated, k, pos, headDim, theta, 1);
  for (let n = 0; n < N; n++) {
    const b = Math.floor(n / T),
      t = n % T;
    const dst = (b * S + offset + t) * kvWidth;
    for (let i = 0; i < kvWidth; i++) {
      kCache[dst + i] = rotated[n * kvWidth + i];
      vCache[dst + i] = v[n * kvWidth + i];
    }
  }
}
