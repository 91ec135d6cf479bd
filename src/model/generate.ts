/**
 * Text generation with a Qwen2Model over its KV cache: prompts as token ids, batched with left
 * padding (rows sorted by length so a batch wastes little padding), greedy or sampled (see
 * sampling.ts), each row stopping at its first stop id. Results equal HF generate() with left
 * padding (positions from the attention mask).
 *
 * Greedy decoding without a repetition penalty chooses tokens on the device (argmaxRows): a
 * step's token ids stay there as the next step's input, only B ids come back per step, and
 * step n + 1 is queued before step n's ids are read, so the device never waits for the host.
 * Sampling and the repetition penalty need the logits on the host, one step at a time.
 *
 * Finished rows keep their place (their tokens are ignored) until half the batch is done: then
 * the cache is compacted to the rows still running. Decoding reads every weight once per step
 * whatever the batch, so a few idle rows cost little, and compacting rarely saves copies.
 */
import type { PendingDownload, Tensor } from '../backend/backend.js';
import { UserError } from '../util/errors.js';
import { mixSeed, mulberry32 } from '../util/random.js';
import type { Qwen2Model } from './qwen2.js';
import { decodeLogits, InferenceBuffers, prefillLogits } from './qwen2-inference.js';
import type { KvCache } from './qwen2-kv-cache.js';
import { applyRepetitionPenalty, GREEDY, Sampler, type SamplingOptions } from './sampling.js';
import { yieldToEventLoop } from '../util/yield.js';

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

/** Token ids on their way to the host, with the rows of the cache slots they belong to. */
interface PendingTokens {
  ids: PendingDownload;
  slots: Row[];
}

interface Row {
  index: number;
  newIds: number[];
  seen: Set<number> | null;
  random: () => number;
  done: boolean;
}

/** One batch being decoded: its cache rows (a finished row stays until compaction) and what it reports to. */
interface BatchRun {
  model: Qwen2Model;
  ws: InferenceBuffers;
  opts: GenerateOptions;
  prompts: readonly (readonly number[])[];
  results: Generation[];
  stop: Set<number>;
  /** Prompt slots per row (the longest prompt). */
  promptLen: number;
  cache: KvCache;
  /** The row in each cache slot. */
  slots: Row[];
}

/** Generates a continuation of every prompt; results are in the order of `prompts`. */
export async function generate(
  model: Qwen2Model,
  prompts: readonly (readonly number[])[],
  opts: GenerateOptions,
): Promise<Generation[]> {
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens > 0))
    throw new UserError(`max new tokens must be a positive integer, got ${opts.maxNewTokens}`);
  if (!(Number.isInteger(opts.batchSize) && opts.batchSize > 0))
    throw new UserError(`batch size must be a positive integer, got ${opts.batchSize}`);
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new UserError(`prompt ${i + 1} is empty: generation needs at least one token`);
  });
  const results: Generation[] = new Array(prompts.length);
  if (prompts.length === 0) return results;
  const sampling = opts.sampling ?? GREEDY;
  const onDevice = !(sampling.temperature > 0) && sampling.repetitionPenalty === 1;
  const sampler = onDevice ? null : new Sampler(model.config.vocabSize, sampling);
  // Longest first: a batch holds prompts of similar length, and the largest batch runs first,
  // so buffers sized for it serve every batch.
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[b].length - prompts[a].length || a - b);
  const B0 = Math.min(opts.batchSize, order.length);
  const ws = new InferenceBuffers(model.backend, model.config, B0 * prompts[order[0]].length, B0);
  try {
    for (let start = 0; start < order.length; start += opts.batchSize) {
      const run = startBatch(model, ws, prompts, order.slice(start, start + opts.batchSize), opts, results);
      try {
        if (sampler) await sampleOnHost(run, sampler);
        else await greedyOnDevice(run);
      } finally {
        run.cache.free();
      }
    }
  } finally {
    ws.free();
  }
  return results;
}

function startBatch(
  model: Qwen2Model,
  ws: InferenceBuffers,
  prompts: readonly (readonly number[])[],
  indices: number[],
  opts: GenerateOptions,
  results: Generation[],
): BatchRun {
  const penalty = opts.sampling?.repetitionPenalty ?? 1;
  const T = Math.max(...indices.map((i) => prompts[i].length));
  const slots = indices.map((index): Row => ({
    index,
    newIds: [],
    seen: penalty !== 1 ? new Set(prompts[index]) : null,
    random: mulberry32(mixSeed(opts.seed ?? 0, index)),
    done: false,
  }));
  const cache = model.createKvCache(indices.length, T + opts.maxNewTokens);
  return { model, ws, opts, prompts, results, stop: new Set(opts.stopIds), promptLen: T, cache, slots };
}

/** The left-padded prompt batch of a run. */
function promptBatch(run: BatchRun): {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  attentionMask: Int32Array;
} {
  const B = run.slots.length,
    T = run.promptLen;
  const inputIds = new Int32Array(B * T).fill(run.opts.padId);
  const attentionMask = new Int32Array(B * T);
  run.slots.forEach((row, b) => {
    const p = run.prompts[row.index];
    inputIds.set(p, b * T + T - p.length);
    attentionMask.fill(1, b * T + T - p.length, (b + 1) * T);
  });
  return { batchSize: B, seqLen: T, inputIds, attentionMask };
}

/** Records a row's token of step `step` and finishes the row at a stop id or the last step. */
function accept(run: BatchRun, row: Row, id: number, step: number): void {
  row.newIds.push(id);
  row.seen?.add(id);
  run.opts.onToken?.(row.index, id);
  const stopped = run.stop.has(id);
  if (!stopped && step + 1 < run.opts.maxNewTokens) return;
  row.done = true;
  const g: Generation = {
    promptIds: run.prompts[row.index],
    newIds: row.newIds,
    finishReason: stopped ? 'stop' : 'length',
  };
  run.results[row.index] = g;
  run.opts.onResult?.(row.index, g);
}

/** Cache slots of the rows still running when at most half of the slots are; null when compacting does not pay yet. */
function rowsToKeep(run: BatchRun): number[] | null {
  const keep = run.slots.flatMap((row, r) => (row.done ? [] : [r]));
  return keep.length > 0 && keep.length <= run.slots.length / 2 ? keep : null;
}

function compact(run: BatchRun, keep: number[]): void {
  run.cache = run.cache.select(keep);
  run.slots = keep.map((r) => run.slots[r]);
}

/** Lets a Ctrl-C through between steps. */
async function greedyOnDevice(run: BatchRun): Promise<void> {
  const be = run.model.backend;
  let ids: Tensor = be.empty([run.slots.length], 'i32');
  try {
    be.argmaxRows(ids, prefillLogits(run.model, run.cache, run.ws, promptBatch(run)));
    let pending: PendingTokens | null = { ids: be.downloadAsync(ids), slots: run.slots };
    for (let step = 0; pending; step++) {
      // Queue the next step before reading this one's tokens (a row that stops now has one step
      // too many queued; its token is ignored).
      let next: PendingTokens | null = null;
      if (step + 1 < run.opts.maxNewTokens) {
        be.argmaxRows(ids, decodeLogits(run.model, run.cache, run.ws, ids));
        next = { ids: be.downloadAsync(ids), slots: run.slots };
      }
      const tokens = pending.ids.wait();
      pending.slots.forEach((row, r) => {
        if (!row.done) accept(run, row, tokens[r], step);
      });
      pending = next;
      if (run.slots.every((row) => row.done)) {
        pending?.ids.wait();
        break;
      }
      const keep = rowsToKeep(run);
      if (keep) {
        const index = be.upload(Int32Array.from(keep), [keep.length], 'i32');
        const kept = be.empty([keep.length], 'i32');
        be.gatherRows(kept, ids, index);
        be.free(index);
        be.free(ids);
        ids = kept;
        compact(run, keep);
      }
      await yieldToEventLoop();
    }
  } finally {
    be.free(ids);
  }
}

async function sampleOnHost(run: BatchRun, sampler: Sampler): Promise<void> {
  const be = run.model.backend;
  const V = run.model.config.vocabSize;
  const penalty = sampler.opts.repetitionPenalty;
  let logits = be.download(prefillLogits(run.model, run.cache, run.ws, promptBatch(run)));
  for (let step = 0; ; step++) {
    run.slots.forEach((row, r) => {
      if (row.done) return;
      if (row.seen) applyRepetitionPenalty(logits, r * V, row.seen, penalty);
      accept(run, row, sampler.pick(logits, r * V, row.random), step);
    });
    if (run.slots.every((row) => row.done)) break;
    const keep = rowsToKeep(run);
    if (keep) compact(run, keep);
    // A finished row still in the batch repeats its last token: any id will do.
    const next = be.upload(
      Int32Array.from(run.slots, (row) => row.newIds[row.newIds.length - 1]),
      [run.slots.length],
      'i32',
    );
    logits = be.download(decodeLogits(run.model, run.cache, run.ws, next));
    be.free(next);
    await yieldToEventLoop();
  }
}
