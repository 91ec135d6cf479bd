/**
 * Training examples and their order: completion-only labels (the answer and its end-of-turn
 * token trained, the prompt and what follows the turn masked), truncation, HF's
 * group_by_length megabatches, reproducible epochs, right padding.
 */
import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX as X } from '../src/model/qwen2-batch.js';
import {
  buildExample,
  collate,
  DataOrder,
  epochOrder,
  fingerprintExamples,
  lengthGroupedOrder,
} from '../src/train/batching.js';
import { planSteps } from '../src/train/schedule.js';
import { mulberry32 } from '../src/util/random.js';

const EOT = 9;
const opts = { maxLength: 512, lossOnPrompt: false, endOfTurnIds: new Set([EOT]) };

describe('buildExample', () => {
  // prompt: 1 2 3 | answer: 4 5 EOT | after the turn: 7 (the template's newline)
  const ids = [1, 2, 3, 4, 5, EOT, 7];

  it('masks the prompt and what follows the last end-of-turn token, and trains the answer with it', () => {
    const e = buildExample(ids, 3, opts);
    expect([...e.ids]).toEqual(ids);
    expect([...e.labels]).toEqual([X, X, X, 4, 5, EOT, X]);
    expect(e.targets).toBe(3);
  });

  it('trains the whole sequence with lossOnPrompt (position 0 is never a target after the shift)', () => {
    const e = buildExample(ids, 3, { ...opts, lossOnPrompt: true });
    expect([...e.labels]).toEqual(ids);
    expect(e.targets).toBe(6);
  });

  it('trains a completion without an end-of-turn token whole, and ignores one inside the prompt', () => {
    const e = buildExample([EOT, 2, 3, 4, 5], 3, opts);
    expect([...e.labels]).toEqual([X, X, X, 4, 5]);
  });

  it('cuts at maxLength, counting only the targets that remain', () => {
    const e = buildExample(ids, 3, { ...opts, maxLength: 5 });
    expect([...e.ids]).toEqual([1, 2, 3, 4, 5]);
    expect([...e.labels]).toEqual([X, X, X, 4, 5]);
    expect(e.targets).toBe(2);
    expect(buildExample(ids, 3, { ...opts, maxLength: 3 }).targets).toBe(0);
  });
});

describe('lengthGroupedOrder (HF get_length_grouped_indices)', () => {
  const random = mulberry32(3);
  const lengths = Array.from({ length: 100 }, () => 1 + Math.floor(random() * 500));

  it('is a permutation in megabatches of min(n / 4g, 50) groups, each longest first, the longest example first', () => {
    const order = lengthGroupedOrder(lengths, 8, mulberry32(1));
    expect([...order].sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    const size = 3 * 8; // floor(100 / 32) = 3 groups of 8
    expect(lengths[order[0]]).toBe(Math.max(...lengths));
    for (let m = 0; m < order.length; m += size) {
      const mega = order.slice(m, m + size).map((i) => lengths[i]);
      // Sorted descending, except that the first megabatch's head was swapped with the global maximum.
      const rest = m === 0 ? mega.slice(1) : mega;
      for (let i = 1; i < rest.length; i++) expect(rest[i]).toBeLessThanOrEqual(rest[i - 1]);
    }
  });

  it('uses megabatches of one group when the data is small', () => {
    const order = lengthGroupedOrder([5, 1, 9, 3, 7, 2], 4, mulberry32(2));
    expect(order.length).toBe(6);
    expect(order[0]).toBe(2); // length 9
    const tail = order.slice(4).map((i) => [5, 1, 9, 3, 7, 2][i]);
    expect(tail[0]).toBeGreaterThanOrEqual(tail[1]);
  });
});

describe('epochOrder and DataOrder', () => {
  const lengths = Array.from({ length: 26 }, (_, i) => 5 + ((i * 7) % 23));

  it('depends only on (seed, epoch)', () => {
    const a = epochOrder(lengths, 2, { seed: 5, groupByLength: true, groupSize: 8 });
    expect(epochOrder(lengths, 2, { seed: 5, groupByLength: true, groupSize: 8 })).toEqual(a);
    expect(epochOrder(lengths, 3, { seed: 5, groupByLength: true, groupSize: 8 })).not.toEqual(a);
    expect(epochOrder(lengths, 2, { seed: 6, groupByLength: true, groupSize: 8 })).not.toEqual(a);
  });

  it('visits every example once per epoch, the last step taking the leftover micro-batch', () => {
    const plan = planSteps({ examples: 26, batchSize: 4, gradAccum: 2, epochs: 2 });
    const order = new DataOrder(lengths, plan, 4, 2, { seed: 1, groupByLength: true });
    for (let epoch = 0; epoch < 2; epoch++) {
      const seen: number[] = [];
      for (let s = 0; s < plan.stepsPerEpoch; s++) {
        const micro = order.microBatches(epoch * plan.stepsPerEpoch + s);
        expect(micro.length).toBe(s < 3 ? 2 : 1);
        seen.push(...micro.flat());
      }
      expect(seen.sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    }
    expect(order.microBatches(3)).toEqual([
      epochOrder(lengths, 0, { seed: 1, groupByLength: true, groupSize: 8 }).slice(24),
    ]);
  });
});

describe('collate', () => {
  it('pads on the right with the pad id, mask 0 and label -100', () => {
    const a = buildExample([1, 2, 3], 1, opts),
      b = buildExample([4, 5], 0, { ...opts, lossOnPrompt: true });
    const batch = collate([a, b], 0);
    expect(batch.batchSize).toBe(2);
    expect(batch.seqLen).toBe(3);
    expect([...batch.inputIds]).toEqual([1, 2, 3, 4, 5, 0]);
    expect([...batch.attentionMask!]).toEqual([1, 1, 1, 1, 1, 0]);
    expect([...batch.labels]).toEqual([X, 2, 3, 4, 5, X]);
  });
});

describe('fingerprintExamples', () => {
  it('changes with any id or label', () => {
    const base = [buildExample([1, 2, 3], 1, opts)];
    const fp = fingerprintExamples(base);
    expect(fingerprintExamples([buildExample([1, 2, 3], 1, opts)])).toBe(fp);
    expect(fingerprintExamples([buildExample([1, 2, 4], 1, opts)])).not.toBe(fp);
    expect(fingerprintExamples([buildExample([1, 2, 3], 2, opts)])).not.toBe(fp);
  });
});
