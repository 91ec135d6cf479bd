/**
 * Choosing the next token from a row of logits, as HF's generate() does: repetition penalty,
 * then temperature, top-k and top-p (in that order), then a draw from the remaining
 * distribution; temperature 0 is greedy (the first maximal logit, like torch.argmax).
 * Scratch buffers are allocated once per vocabulary size, not per token.
 */
import type { HostFloats } from '../backend/backend.js';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (0 = all). */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP: number;
  /** HF's repetition_penalty over the prompt and the tokens so far (1 = off). */
  repetitionPenalty: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

/** Index of the first maximal value of logits[offset, offset + n). */
export function argmax(logits: HostFloats, offset: number, n: number): number {
  let best = 0;
  let bestValue = logits[offset];
  for (let j = 1; j < n; j++) {
    const v = logits[offset + j];
    if (v > bestValue) {
      bestValue = v;
      best = j;
    }
  }
  return best;
}

/**
 * HF's RepetitionPenaltyLogitsProcessor on one row, in place: every token in `seen` has its
 * logit divided by the penalty when positive, multiplied when negative.
 */
export function applyRepetitionPenalty(
  logits: HostFloats,
  offset: number,
  seen: Iterable<number>,
  penalty: number,
): void {
  if (penalty === 1) return;
  for (const id of seen) {
    const v = logits[offset + id];
    logits[offset + id] = v < 0 ? v * penalty : v / penalty;
  }
}

export class Sampler {
  private readonly work: Float64Array;
  private readonly probs: Float64Array;
  private readonly idx: Int32Array;

  constructor(
    readonly vocabSize: number,
    readonly opts: SamplingOptions,
  ) {
    const sampling = opts.temperature > 0;
    this.work = new Float64Array(sampling ? vocabSize : 0);
    this.probs = new Float64Array(sampling ? vocabSize : 0);
    this.idx = new Int32Array(sampling ? vocabSize : 0);
  }

  /** The next token from logits[offset, offset + V); `random` gives uniforms in [0, 1). */
  pick(logits: HostFloats, offset: number, random: () => number): number {
    const V = this.vocabSize;
    const { temperature, topK, topP } = this.opts;
    if (!(temperature > 0)) return argmax(logits, offset, V);
    const p = this.probs;
    let max = -Infinity;
    for (let j = 0; j < V; j++) {
      const v = logits[offset + j] / temperature;
      p[j] = v;
      if (v > max) max = v;
    }
    // top-k: drop logits below the k-th largest (ties with it stay, as in HF).
    const cut = topK > 0 && topK < V ? this.kthLargest(p, topK) : -Infinity;
    let sum = 0;
    for (let j = 0; j < V; j++) {
      const e = p[j] >= cut ? Math.exp(p[j] - max) : 0;
      p[j] = e;
      sum += e;
    }
    for (let j = 0; j < V; j++) p[j] /= sum;
    let u = random() * (topP < 1 ? this.topP(p, topP) : 1);
    let last = 0;
    for (let j = 0; j < V; j++) {
      if (p[j] <= 0) continue;
      last = j;
      u -= p[j];
      if (u < 0) return j;
    }
    return last;
  }

  /**
   * HF's TopPLogitsWarper: sorted ascending, tokens whose cumulative probability is <= 1 - p
   * are dropped (the most likely token always stays). Returns the mass that remains.
   */
  private topP(p: Float64Array, topP: number): number {
    const idx = this.idx;
    let n = 0;
    for (let j = 0; j < p.length; j++) if (p[j] > 0) idx[n++] = j;
    const live = idx.subarray(0, n).sort((a, b) => p[a] - p[b] || b - a);
    let cum = 0;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      cum += p[live[i]];
      if (cum <= 1 - topP && i < n - 1) p[live[i]] = 0;
      else kept += p[live[i]];
    }
    return kept;
  }

  /** The k-th largest value of `values` (quickselect on a copy). */
  private kthLargest(values: Float64Array, k: number): number {
    const a = this.work;
    a.set(values);
    let lo = 0;
    let hi = a.length - 1;
    const target = k - 1;
    while (lo < hi) {
      const pivot = a[(lo + hi) >>> 1];
      let i = lo;
      let j = hi;
      while (i <= j) {
        while (a[i] > pivot) i++;
        while (a[j] < pivot) j--;
        if (i <= j) {
          const t = a[i];
          a[i] = a[j];
          a[j] = t;
          i++;
          j--;
        }
      }
      if (target <= j) hi = j;
      else if (target >= i) lo = i;
      else break;
    }
    return a[target];
  }
}
