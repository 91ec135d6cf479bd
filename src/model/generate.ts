/**
 * Text generation with a Qwen2Model over its KV cache: prompts as token ids, batched with left
 * padding (rows sorted by length so a batch wastes little padding), greedy or sampled (see
 * sampling.ts), each row stopping at its first stop id. A finished row leaves the batch: the
 * cache is compacted to the rows still running, so short answers do not pay for long ones.
 * Results equal HF generate() with left padding (positions from the attention mask).
 */
import type { Backend, HostFloats } from '../backend/backend.js';
import { UserError } from '../util/errors.js';
import { mixSeed, mulberry32 } from '../util/random.js';
import type { Qwen2Model } from './qwen2.js';
import type { KvCache } from './qwen2-kv-cache.js';
import { applyRepetitionPenalty, GREEDY, Sampler, type SamplingOptions } from './sampling.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** A row stops after producing any of these ids (eos, `<|im_end|>`); the id is part of its output. */
  stopIds: readonly number[];
  /** Left-padding id (masked out; any id works). */
  padId: number;
  /** Prompts decoded together. */
  batchSize: number;
  sampling?: SamplingOptions;
  /** Sampling seed: prompt i draws from its own generator seeded by (seed, i), so results do not depend on batching. */
  seed?: number;
  /** Called with each prompt's result as soon as it is complete (in completion order). */
  onResult?(index: number, result: Generation): void;
  /** Called with every new token as it is chosen. */
  onToken?(index: number, id: number): void;
}

export interface Generation {
  promptIds: readonly number[];
  /** New tokens, ending with the stop id when finishReason is "stop". */
  newIds: number[];
  finishReason: 'stop' | 'length';
}

interface Row {
  index: number;
  newIds: number[];
  seen: Set<number> | null;
  random: () => number;
}

/** Generates a continuation of every prompt; results are in the order of `prompts`. */
export async function generate(model: Qwen2Model, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<Generation[]> {
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens > 0)) throw new UserError(`max new tokens must be a positive integer, got ${opts.maxNewTokens}`);
  if (!(Number.isInteger(opts.batchSize) && opts.batchSize > 0)) throw new UserError(`batch size must be a positive integer, got ${opts.batchSize}`);
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new UserError(`prompt ${i + 1} is empty: generation needs at least one token`);
  });
  const sampling = opts.sampling ?? GREEDY;
  const sampler = new Sampler(model.config.vocabSize, sampling);
  const results: Generation[] = new Array(prompts.length);
  // Longest first: a batch holds prompts of similar length, and the largest batch runs first.
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[b].length - prompts[a].length || a - b);
  for (let start = 0; start < order.length; start += opts.batchSize) {
    await generateBatch(model, prompts, order.slice(start, start + opts.batchSize), sampler, opts, results);
  }
  return results;
}

async function generateBatch(
  model: Qwen2Model, prompts: readonly (readonly number[])[], indices: number[], sampler: Sampler, opts: GenerateOptions, results: Generation[],
): Promise<void> {
  const be = model.backend;
  const V = model.config.vocabSize;
  const B = indices.length;
  const T = Math.max(...indices.map((i) => prompts[i].length));
  const inputIds = new Int32Array(B * T).fill(opts.padId);
  const attentionMask = new Int32Array(B * T);
  indices.forEach((i, b) => {
    const p = prompts[i];
    inputIds.set(p, b * T + T - p.length);
    attentionMask.fill(1, b * T + T - p.length, (b + 1) * T);
  });
  const stop = new Set(opts.stopIds);
  const penalty = sampler.opts.repetitionPenalty;
  let rows: Row[] = indices.map((index) => ({
    index,
    newIds: [],
    seen: penalty !== 1 ? new Set(prompts[index]) : null,
    random: mulberry32(mixSeed(opts.seed ?? 0, index)),
  }));
  let cache = model.createKvCache(B, T + opts.maxNewTokens);
  const next = new Int32Array(B);
  try {
    let logits = downloadAndFree(be, model.prefill(cache, { batchSize: B, seqLen: T, inputIds, attentionMask }));
    for (let step = 0; ; step++) {
      const keep: number[] = [];
      rows.forEach((row, r) => {
        if (row.seen) applyRepetitionPenalty(logits, r * V, row.seen, penalty);
        const id = sampler.pick(logits, r * V, row.random);
        row.newIds.push(id);
        row.seen?.add(id);
        opts.onToken?.(row.index, id);
        const stopped = stop.has(id);
        if (stopped || step + 1 === opts.maxNewTokens) finish(row, stopped ? 'stop' : 'length');
        else keep.push(r);
      });
      if (keep.length === 0) break;
      if (keep.length < rows.length) {
        cache = compactCache(model, cache, keep);
        rows = keep.map((r) => rows[r]);
      }
      rows.forEach((row, r) => (next[r] = row.newIds[row.newIds.length - 1]));
      logits = downloadAndFree(be, model.decodeStep(cache, next.subarray(0, rows.length)));
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    cache.free();
  }

  function finish(row: Row, reason: Generation['finishReason']): void {
    const g: Generation = { promptIds: prompts[row.index], newIds: row.newIds, finishReason: reason };
    results[row.index] = g;
    opts.onResult?.(row.index, g);
  }
}

function downloadAndFree(be: Backend, t: Parameters<Backend['free']>[0]): HostFloats {
  const host = be.download(t);
  be.free(t);
  return host;
}

/** A cache holding only rows `keep` of `cache` (which is freed): their filled slots, mask and positions. */
function compactCache(model: Qwen2Model, cache: KvCache, keep: readonly number[]): KvCache {
  const be = model.backend;
  const cap = cache.capacity;
  const out = model.createKvCache(keep.length, cap);
  const filled = cache.length;
  for (let layer = 0; layer < cache.k.length; layer++) {
    for (const [src, dst] of [[cache.k[layer], out.k[layer]], [cache.v[layer], out.v[layer]]]) {
      const width = src.size / (cache.batchSize * cap);
      const from = be.reshape(src, [cache.batchSize * cap, width]);
      const to = be.reshape(dst, [keep.length * cap, width]);
      keep.forEach((b, j) => be.copy(be.rows(to, j * cap, filled), be.rows(from, b * cap, filled)));
    }
  }
  keep.forEach((b, j) => {
    out.mask.set(cache.mask.subarray(b * cap, b * cap + filled), j * cap);
    out.seen[j] = cache.seen[b];
  });
  out.length = filled;
  cache.free();
  return out;
}
