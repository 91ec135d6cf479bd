/**
 * Training examples as token ids with labels, the order they are visited in (HF's
 * group_by_length scheme, seeded), and right-padded micro-batches.
 */
import { IGNORE_INDEX, type TrainBatch } from '../model/qwen2-batch.js';
import { mixSeed, mulberry32 } from '../util/random.js';

/** One tokenized example: ids and HF-style labels (unshifted, -100 = no loss). */
export interface TrainExample {
  ids: Int32Array;
  labels: Int32Array;
  /** Tokens that carry loss after the causal shift (labels at positions >= 1 that are not -100). */
  targets: number;
}

export interface ExampleOptions {
  /** Longer sequences are cut at the end (the reference tokenizer's truncation side). */
  maxLength: number;
  /** Train on every token (the reference workflow) instead of the completion only. */
  lossOnPrompt: boolean;
  /**
   * End-of-turn ids (`<|im_end|>`): the completion is trained up to and including the last
   * one, so the model learns to stop; what a chat template puts after it (a newline) is not.
   */
  endOfTurnIds: ReadonlySet<number>;
}

/**
 * Labels for `ids` whose first `promptTokens` tokens are the prompt: masked unless lossOnPrompt.
 * A completion without an end-of-turn token is trained whole.
 */
export function buildExample(ids: readonly number[], promptTokens: number, opts: ExampleOptions): TrainExample {
  const labels = Int32Array.from(ids);
  if (!opts.lossOnPrompt) {
    labels.fill(IGNORE_INDEX, 0, Math.min(promptTokens, ids.length));
    let last = -1;
    for (let i = ids.length - 1; i >= promptTokens; i--) {
      if (opts.endOfTurnIds.has(ids[i])) {
        last = i;
        break;
      }
    }
    if (last >= 0) labels.fill(IGNORE_INDEX, last + 1);
  }
  const n = Math.min(ids.length, opts.maxLength);
  const cut = labels.subarray(0, n);
  let targets = 0;
  for (let i = 1; i < n; i++) if (cut[i] !== IGNORE_INDEX) targets++;
  return { ids: Int32Array.from(ids.slice(0, n)), labels: cut.slice(), targets };
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, random: () => number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx;
}

/**
 * HF's get_length_grouped_indices: a random permutation cut into megabatches of
 * min(n / (4 * groupSize), 50) groups (at least 1), each sorted longest first (stable), and the
 * longest example of all moved to the very front so an out-of-memory error shows at once.
 * `groupSize` is what HF passes: batch size x gradient accumulation. HF draws the permutation
 * from torch's generator; ours comes from mulberry32, so the order is HF's scheme, not its bytes.
 */
export function lengthGroupedOrder(lengths: readonly number[], groupSize: number, random: () => number): number[] {
  const n = lengths.length;
  const mult = Math.max(1, Math.min(Math.floor(n / (groupSize * 4)), 50));
  const size = mult * groupSize;
  const perm = permutation(n, random);
  const megabatches: number[][] = [];
  for (let i = 0; i < n; i += size) megabatches.push(perm.slice(i, i + size).sort((a, b) => lengths[b] - lengths[a]));
  let maxIdx = 0;
  for (let m = 1; m < megabatches.length; m++)
    if (lengths[megabatches[m][0]] > lengths[megabatches[maxIdx][0]]) maxIdx = m;
  [megabatches[0][0], megabatches[maxIdx][0]] = [megabatches[maxIdx][0], megabatches[0][0]];
  return megabatches.flat();
}

export interface OrderOptions {
  seed: number;
  groupByLength: boolean;
  /** Examples per micro-batch x micro-batches per step (the length-grouping unit). */
  groupSize: number;
}

/** The order of the examples in `epoch`: a pure function of (seed, epoch), so resuming needs no RNG state. */
export function epochOrder(lengths: readonly number[], epoch: number, opts: OrderOptions): number[] {
  const random = mulberry32(mixSeed(opts.seed, epoch));
  return opts.groupByLength ? lengthGroupedOrder(lengths, opts.groupSize, random) : permutation(lengths.length, random);
}

/**
 * Which examples each optimizer step trains on: step s belongs to epoch floor(s / stepsPerEpoch),
 * whose order is cut into micro-batches of batchSize; a step takes the next gradAccum of them
 * (the last step of an epoch may take fewer). Returns example indices per micro-batch.
 */
export class DataOrder {
  private cached: { epoch: number; order: number[] } | null = null;

  constructor(
    private readonly lengths: readonly number[],
    private readonly plan: { batchesPerEpoch: number; stepsPerEpoch: number },
    private readonly batchSize: number,
    private readonly gradAccum: number,
    private readonly opts: Omit<OrderOptions, 'groupSize'>,
  ) {}

  microBatches(step: number): number[][] {
    const epoch = Math.floor(step / this.plan.stepsPerEpoch);
    if (this.cached?.epoch !== epoch) {
      this.cached = {
        epoch,
        order: epochOrder(this.lengths, epoch, { ...this.opts, groupSize: this.batchSize * this.gradAccum }),
      };
    }
    const order = this.cached.order;
    const first = (step % this.plan.stepsPerEpoch) * this.gradAccum;
    const out: number[][] = [];
    for (let b = first; b < Math.min(first + this.gradAccum, this.plan.batchesPerEpoch); b++)
      out.push(order.slice(b * this.batchSize, (b + 1) * this.batchSize));
    return out;
  }
}

/** Right-padded batch (pad = `padId`, attention mask 0, labels -100), as HF's collator builds it. */
export function collate(examples: readonly TrainExample[], padId: number): TrainBatch {
  const B = examples.length;
  const T = Math.max(...examples.map((e) => e.ids.length));
  const inputIds = new Int32Array(B * T).fill(padId);
  const attentionMask = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  examples.forEach((e, b) => {
    inputIds.set(e.ids, b * T);
    attentionMask.fill(1, b * T, b * T + e.ids.length);
    labels.set(e.labels, b * T);
  });
  return { batchSize: B, seqLen: T, inputIds, attentionMask, labels };
}

/** FNV-1a over every example's ids and labels: identifies the tokenized training data. */
export function fingerprintExamples(examples: readonly TrainExample[]): string {
  let h = 0x811c9dc5;
  const mix = (v: number): void => {
    h = Math.imul(h ^ (v & 0xffff), 0x01000193);
    h = Math.imul(h ^ (v >>> 16), 0x01000193);
  };
  mix(examples.length);
  for (const e of examples) {
    mix(e.ids.length);
    for (const v of e.ids) mix(v);
    for (const v of e.labels) mix(v);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}
