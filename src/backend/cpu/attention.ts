/**
 * Causal grouped-query attention on the CPU, one (batch, head, query) row at a time. The forward
 * pass keeps only each row's log-sum-exp; the backward pass recomputes the probabilities from
 * it (as flash attention does), so no [T, S] matrix is ever stored.
 */
import type { AttentionDims, HostFloats as Floats } from '../backend.js';

let scoreScratch = new Float64Array(0);

function scratch(n: number): Float64Array {
  if (scoreScratch.length < n) scoreScratch = new Float64Array(n);
  return scoreScratch;
}

/** Row (b, t, h) sees key slots s < its limit whose mask is set. */
function visibleLimit(d: AttentionDims, t: number): number {
  return d.kvLen - d.T + t + 1;
}

export function attentionForwardCpu(
  out: Floats,
  lse: Floats,
  q: Floats,
  k: Floats,
  v: Floats,
  mask: Int32Array,
  d: AttentionDims,
): void {
  const { B, T, S, H, Hkv, hd, scale } = d;
  const group = H / Hkv;
  const p = scratch(S);
  const acc = new Float64Array(hd);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const limit = visibleLimit(d, t);
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / group);
        const qo = ((b * T + t) * H + h) * hd;
        let max = -Infinity;
        for (let s = 0; s < limit; s++) {
          if (mask[b * S + s] === 0) {
            p[s] = -Infinity;
            continue;
          }
          const ko = ((b * S + s) * Hkv + kh) * hd;
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[qo + i] * k[ko + i];
          p[s] = dot * scale;
          if (p[s] > max) max = p[s];
        }
        const row = (b * T + t) * H + h;
        if (max === -Infinity) {
          out.fill(0, qo, qo + hd);
          lse[row] = -Infinity;
          continue;
        }
        let sum = 0;
        acc.fill(0);
        for (let s = 0; s < limit; s++) {
          if (p[s] === -Infinity) continue;
          const e = Math.exp(p[s] - max);
          sum += e;
          const vo = ((b * S + s) * Hkv + kh) * hd;
          for (let i = 0; i < hd; i++) acc[i] += e * v[vo + i];
        }
        for (let i = 0; i < hd; i++) out[qo + i] = acc[i] / sum;
        lse[row] = max + Math.log(sum);
      }
    }
  }
}

export function attentionBackwardCpu(
  dq: Floats,
  dk: Floats,
  dv: Floats,
  dout: Floats,
  q: Floats,
  k: Floats,
  v: Floats,
  out: Floats,
  lse: Floats,
  mask: Int32Array,
  d: AttentionDims,
): void {
  const { B, T, S, H, Hkv, hd, scale } = d;
  const group = H / Hkv;
  dq.fill(0);
  dk.fill(0);
  dv.fill(0);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const limit = visibleLimit(d, t);
      for (let h = 0; h < H; h++) {
        const row = (b * T + t) * H + h;
        const l = lse[row];
        if (l === -Infinity) continue;
        const kh = Math.floor(h / group);
        const qo = row * hd;
        // D = sum_s p_s (dout . v_s) = dout . out
        let D = 0;
        for (let i = 0; i < hd; i++) D += dout[qo + i] * out[qo + i];
        for (let s = 0; s < limit; s++) {
          if (mask[b * S + s] === 0) continue;
          const ko = ((b * S + s) * Hkv + kh) * hd;
          let dot = 0,
            dp = 0;
          for (let i = 0; i < hd; i++) {
            dot += q[qo + i] * k[ko + i];
            dp += dout[qo + i] * v[ko + i];
          }
          const prob = Math.exp(dot * scale - l);
          const ds = prob * (dp - D) * scale;
          for (let i = 0; i < hd; i++) {
            dq[qo + i] += ds * k[ko + i];
            dk[ko + i] += ds * q[qo + i];
            dv[ko + i] += prob * dout[qo + i];
          }
        }
      }
    }
  }
}
