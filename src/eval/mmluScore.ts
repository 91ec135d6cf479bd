/**
 * Log-likelihoods of MMLU continuations on a Qwen2Model, two ways:
 *
 * - single-token (the fast path): where each of the four continuations is one token (" A" .. " D"
 *   in Qwen's tokenizer), the model reads the context once and the four log-probabilities come
 *   from the logits of its last position. Batches are left-padded and run as a KV-cache prefill
 *   (the inference pass: only the last position's logits are computed); the log-softmax runs on
 *   the device (crossEntropy against each letter), so only 4 numbers per question come back.
 * - general: any continuation length. Each (context, continuation) request is its own right-padded
 *   row through the full forward pass; the logits of the continuation's positions come back and
 *   the log-softmax sums are taken on the host in f64.
 *
 * The two share no code past the model's weights, so tests can check one against the other.
 */
import type { Tensor } from '../backend/backend.js';
import type { Qwen2Model } from '../model/qwen2.js';
import type { ScoredSequence } from './mmluPrompt.js';

/** One question for the fast path: the model input and the four continuation token ids. */
export interface SingleTokenItem {
  input: number[];
  targets: number[];
}

/** Log-likelihood of each target token after each input (rows x targets), one prefill per batch. */
export function scoreSingleToken(model: Qwen2Model, items: readonly SingleTokenItem[]): number[][] {
  const be = model.backend;
  const B = items.length;
  if (B === 0) return [];
  const T = Math.max(...items.map((it) => it.input.length));
  const K = items[0].targets.length;
  const ids = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  items.forEach((it, b) => {
    const pad = T - it.input.length;
    for (let t = 0; t < it.input.length; t++) {
      ids[b * T + pad + t] = it.input[t];
      mask[b * T + pad + t] = 1;
    }
  });
  const cache = model.createKvCache(B, T);
  const owned: Tensor[] = [];
  try {
    const logits = model.prefill(cache, { batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask });
    owned.push(logits);
    const nll: ArrayLike<number>[] = [];
    for (let k = 0; k < K; k++) {
      const targets = be.upload(
        Int32Array.from(items, (it) => it.targets[k]),
        [B],
        'i32',
      );
      const losses = be.empty([B]);
      owned.push(targets, losses);
      be.crossEntropy(losses, logits, targets);
      nll.push(be.download(losses));
    }
    return items.map((_, b) => nll.map((l) => -l[b]));
  } finally {
    for (const t of owned) be.free(t);
    cache.free();
  }
}

/** Summed log-likelihood of each sequence's continuation, by the full forward pass. */
export function scoreGeneral(model: Qwen2Model, seqs: readonly ScoredSequence[]): number[] {
  const be = model.backend;
  const B = seqs.length;
  if (B === 0) return [];
  const T = Math.max(...seqs.map((s) => s.input.length));
  const V = model.config.vocabSize;
  const ids = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  const rows: number[] = [];
  const targets: number[] = [];
  seqs.forEach((s, b) => {
    for (let t = 0; t < s.input.length; t++) {
      ids[b * T + t] = s.input[t];
      mask[b * T + t] = 1;
    }
    const first = s.input.length - s.continuation.length;
    s.continuation.forEach((tok, j) => {
      rows.push(b * T + first + j);
      targets.push(tok);
    });
  });
  const logits = model.forward({ batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask });
  const index = be.upload(Int32Array.from(rows), [rows.length], 'i32');
  const picked = be.empty([rows.length, V], logits.dtype);
  let host: ArrayLike<number>;
  try {
    be.gatherRows(picked, be.reshape(logits, [B * T, V]), index);
    host = be.download(picked);
  } finally {
    for (const t of [logits, index, picked]) be.free(t);
  }
  const out = new Array<number>(B).fill(0);
  let r = 0;
  seqs.forEach((s, b) => {
    for (let j = 0; j < s.continuation.length; j++, r++) out[b] += logSoftmaxAt(host, r * V, V, targets[r]);
  });
  return out;
}

/** log softmax(row)[target] in f64. */
function logSoftmaxAt(x: ArrayLike<number>, offset: number, V: number, target: number): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, x[offset + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(x[offset + v] - max);
  return x[offset + target] - max - Math.log(sum);
}

/** The harness's prediction: the first choice of highest log-likelihood (numpy argmax). */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}
