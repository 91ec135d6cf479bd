/**
 * Host-side batch preparation: token ids and masks as the tokenizer produced them, rotary
 * positions derived from the attention mask, and HF's label shift for the causal LM loss.
 */
import { UserError } from '../util/errors.js';

/** B sequences of T tokens, row-major. */
export interface TokenBatch {
  batchSize: number;
  seqLen: number;
  /** i32 [B*T]. */
  inputIds: Int32Array;
  /** [B*T], 1 for real tokens and 0 for padding (left or right); default all ones. */
  attentionMask?: Int32Array;
  /** [B*T] rotary positions; default derived from the mask (see positionsFromMask). */
  positionIds?: Int32Array;
}

/** A batch with labels in HF's convention: same shape as inputIds, unshifted, -100 = ignore. */
export interface TrainBatch extends TokenBatch {
  labels: Int32Array;
}

export const IGNORE_INDEX = -100;

export function checkBatch(b: TokenBatch, vocabSize: number): void {
  const n = b.batchSize * b.seqLen;
  if (!(b.batchSize > 0 && b.seqLen > 0))
    throw new UserError(`batch must have at least one token (got ${b.batchSize} x ${b.seqLen})`);
  for (const [name, arr] of [
    ['inputIds', b.inputIds],
    ['attentionMask', b.attentionMask],
    ['positionIds', b.positionIds],
  ] as const) {
    if (arr && arr.length !== n)
      throw new UserError(`batch ${name} has ${arr.length} entries, expected ${b.batchSize} x ${b.seqLen} = ${n}`);
  }
  for (let i = 0; i < n; i++) {
    const id = b.inputIds[i];
    if (id < 0 || id >= vocabSize)
      throw new UserError(`batch inputIds[${i}] = ${id} is outside the vocabulary (${vocabSize} tokens)`);
  }
}

export function maskOrOnes(b: TokenBatch): Int32Array {
  return b.attentionMask ?? new Int32Array(b.batchSize * b.seqLen).fill(1);
}

/**
 * Positions as HF's generate() derives them: the count of real tokens before each one
 * (cumsum(mask) - 1), so left-padded prompts start at 0; padding slots get 1 (never attended).
 * `start` gives each row's count of real tokens already seen (incremental decoding).
 */
export function positionsFromMask(mask: Int32Array, B: number, T: number, start?: Int32Array): Int32Array {
  const pos = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let seen = start ? start[b] : 0;
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (mask[i]) pos[i] = seen++;
      else pos[i] = 1;
    }
  }
  return pos;
}

/**
 * Targets for position t are labels at t + 1 (HF shifts inside the model); the last position
 * of each row has none. Returns the targets and the number of non-ignored ones.
 */
export function shiftLabels(labels: Int32Array, B: number, T: number): { targets: Int32Array; count: number } {
  if (labels.length !== B * T) throw new UserError(`labels has ${labels.length} entries, expected ${B} x ${T}`);
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = labels[b * T + t + 1];
      if (y === IGNORE_INDEX) continue;
      if (y < 0) throw new UserError(`labels[${b}][${t + 1}] = ${y}: only ${IGNORE_INDEX} may be negative`);
      targets[b * T + t] = y;
      count++;
    }
  }
  return { targets, count };
}
