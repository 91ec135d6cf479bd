/**
 * Iteration-level (continuous) batching, as vLLM schedules: one loop owns the model and a
 * slot KV cache (src/model/qwen2-slot-cache.ts) and, at every iteration,
 *
 *   1. frees the rows of cancelled requests (a client that went away),
 *   2. prefills waiting requests into free rows (one left-padded pass for those admitted
 *      together, within a token budget) and picks their first tokens,
 *   3. runs one decoding step of every running row and picks each row's next token with the
 *      row's own settings (greedy on the device; sampled rows' logits come to the host),
 *   4. frees the rows that finished (a stop id, a stop the caller saw in the text, max tokens),
 *
 * then yields to the event loop, so requests arriving meanwhile join at the next step. Requests
 * beyond the free rows wait in a bounded queue; a full queue rejects at once (QueueFullError).
 */
import type { Tensor } from '../backend/backend.js';
import { InferenceBuffers } from '../model/qwen2-inference.js';
import { decodeSlots, prefillSlots, SlotKvCache } from '../model/qwen2-slot-cache.js';
import type { Qwen2Model } from '../model/qwen2.js';
import { Sampler } from '../model/sampling.js';
import { mixSeed, mulberry32 } from '../util/random.js';
import { yieldToEventLoop } from '../util/yield.js';

export interface RequestSampling {
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  topK?: number;
}

export interface SequenceRequest {
  promptIds: readonly number[];
  maxTokens: number;
  sampling?: RequestSampling;
  /** Sampling seed (a draw from prompt index 0 of generate() with the same seed); default random. */
  seed?: number;
  /** Called with every new token (stop ids included); returning true ends the sequence there ("stop"). */
  onToken?(id: number): boolean | void;
  /** Aborting frees the request's row at the next step (or its queue place); it resolves "cancelled". */
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface SequenceResult {
  promptIds: readonly number[];
  /** New tokens, ending with the stop id when a stop id ended it. */
  newIds: number[];
  finishReason: FinishReason;
}

export interface SchedulerOptions {
  /** Rows decoded together. */
  maxBatch: number;
  /** Slots per row: a request's prompt + max tokens must fit. */
  capacity: number;
  /** Requests waiting for a row at most; more are refused. */
  maxQueue: number;
  /** Prompt tokens (padded) one prefill pass takes at most (default max(capacity, 2048)). */
  prefillTokens?: number;
  /** Ids that end a sequence (eos, `<|im_end|>`). */
  stopIds: readonly number[];
  padId: number;
}

/** The queue is full: the caller should answer 503 and let the client retry. */
export class QueueFullError extends Error {}
/** The scheduler is shutting down and takes no new requests. */
export class SchedulerClosedError extends Error {}
/** A request that can never run (empty prompt, too long for a row). */
export class RequestError extends Error {}

interface Entry {
  req: SequenceRequest;
  resolve(r: SequenceResult): void;
  reject(err: unknown): void;
  newIds: number[];
  random: () => number;
  sampler: Sampler | null;
  onAbort?: () => void;
}

export interface SchedulerStats {
  running: number;
  waiting: number;
  /** Decoding steps and prefill passes run so far. */
  steps: number;
  prefills: number;
  /** Times the KV cache packed its rows to make room. */
  compactions: number;
}

export class Scheduler {
  private readonly cache: SlotKvCache;
  private readonly ws: InferenceBuffers;
  private readonly stop: Set<number>;
  private readonly prefillTokens: number;
  private readonly samplers = new Map<string, Sampler>();
  /** rows[r] is the request in cache row r. */
  private rows: Entry[] = [];
  private waiting: Entry[] = [];
  private loop: Promise<void> | null = null;
  private closed = false;
  private cancelAll = false;
  private steps = 0;
  private prefills = 0;

  constructor(
    private readonly model: Qwen2Model,
    private readonly opts: SchedulerOptions,
  ) {
    for (const [name, v] of [
      ['maxBatch', opts.maxBatch],
      ['capacity', opts.capacity],
    ] as const) {
      if (!(Number.isInteger(v) && v > 0)) throw new RangeError(`scheduler: ${name} must be a positive integer`);
    }
    this.prefillTokens = Math.max(opts.prefillTokens ?? Math.max(opts.capacity, 2048), opts.capacity);
    this.cache = new SlotKvCache(model.backend, model.config, opts.maxBatch, opts.capacity);
    this.ws = new InferenceBuffers(
      model.backend,
      model.config,
      Math.max(this.prefillTokens, opts.maxBatch),
      opts.maxBatch,
    );
    this.stop = new Set(opts.stopIds);
  }

  get stats(): SchedulerStats {
    return {
      running: this.rows.length,
      waiting: this.waiting.length,
      steps: this.steps,
      prefills: this.prefills,
      compactions: this.cache.compactions,
    };
  }

  /** Queues a request; resolves when it is done. Throws QueueFullError, SchedulerClosedError or RequestError at once. */
  submit(req: SequenceRequest): Promise<SequenceResult> {
    if (this.closed) throw new SchedulerClosedError('the server is shutting down');
    const P = req.promptIds.length;
    if (P === 0) throw new RequestError('the prompt is empty');
    const V = this.model.config.vocabSize;
    if (req.promptIds.some((id) => !(Number.isInteger(id) && id >= 0 && id < V)))
      throw new RequestError(`the prompt holds token ids outside the vocabulary (${V})`);
    if (!(Number.isInteger(req.maxTokens) && req.maxTokens > 0))
      throw new RequestError('max_tokens must be a positive integer');
    if (P + req.maxTokens > this.opts.capacity)
      throw new RequestError(
        `the prompt (${P} tokens) plus max_tokens (${req.maxTokens}) exceed the context of ${this.opts.capacity} tokens`,
      );
    if (this.waiting.length >= this.opts.maxQueue) throw new QueueFullError('the request queue is full');
    return new Promise<SequenceResult>((resolve, reject) => {
      const s = req.sampling;
      const entry: Entry = {
        req,
        resolve,
        reject,
        newIds: [],
        random: mulberry32(mixSeed(req.seed ?? Math.floor(Math.random() * 2 ** 32), 0)),
        sampler: s && s.temperature > 0 ? this.sampler(s) : null,
      };
      if (req.signal) {
        if (req.signal.aborted) return resolve({ promptIds: req.promptIds, newIds: [], finishReason: 'cancelled' });
        // A queued request leaves the queue at once; a running one at the next step.
        entry.onAbort = () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) {
            this.waiting.splice(i, 1);
            this.finish(entry, 'cancelled');
          }
        };
        req.signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.waiting.push(entry);
      this.kick();
    });
  }

  /** Starts the loop unless it runs (and again should a request have come as it ended). */
  private kick(): void {
    this.loop ??= this.run().finally(() => {
      this.loop = null;
      if (this.waiting.length > 0) this.kick();
    });
  }

  /** Stops taking requests (submit throws SchedulerClosedError); those queued and running go on. */
  close(): void {
    this.closed = true;
  }

  /** close(), then waits for every request; after `timeoutMs` the rest are cancelled. */
  async drain(timeoutMs: number): Promise<void> {
    this.close();
    if (!this.loop) return;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([this.loop, expired]);
    clearTimeout(timer);
    if (this.loop) {
      this.cancelAll = true;
      await this.loop;
    }
  }

  /** Frees the cache and buffers (after drain). */
  free(): void {
    this.cache.free();
    this.ws.free();
  }

  private sampler(s: RequestSampling): Sampler {
    const key = `${s.temperature}/${s.topP}/${s.topK ?? 0}`;
    let sampler = this.samplers.get(key);
    if (!sampler) {
      if (this.samplers.size >= 16) this.samplers.clear();
      sampler = new Sampler(this.model.config.vocabSize, {
        temperature: s.temperature,
        topP: s.topP,
        topK: s.topK ?? 0,
        repetitionPenalty: 1,
      });
      this.samplers.set(key, sampler);
    }
    return sampler;
  }

  private async run(): Promise<void> {
    // Let the caller's synchronous submits queue first (they are prefilled together).
    await yieldToEventLoop();
    while (this.rows.length > 0 || this.waiting.length > 0) {
      try {
        this.dropCancelled();
        this.admit();
        if (this.rows.length > 0) this.decode();
      } catch (err) {
        // A failed pass leaves the rows in an unknown state: fail their requests and start over.
        for (const e of this.rows.splice(0)) {
          if (e.onAbort) e.req.signal?.removeEventListener('abort', e.onAbort);
          e.reject(err);
        }
        this.cache.reset();
      }
      await yieldToEventLoop();
    }
    this.cancelAll = false;
  }

  private dropCancelled(): void {
    if (this.cancelAll) for (const e of this.waiting.splice(0)) this.finish(e, 'cancelled');
    for (let r = this.rows.length - 1; r >= 0; r--) {
      if (this.cancelAll || this.rows[r].req.signal?.aborted) this.release(r, 'cancelled');
    }
  }

  private admit(): void {
    const free = this.opts.maxBatch - this.rows.length;
    if (free === 0 || this.waiting.length === 0) return;
    let n = 0,
      T = 0;
    while (n < Math.min(free, this.waiting.length)) {
      const t = Math.max(T, this.waiting[n].req.promptIds.length);
      if (n > 0 && (n + 1) * t > this.prefillTokens) break;
      T = t;
      n++;
    }
    const batch = this.waiting.splice(0, n);
    // In rows before the pass, so a failing pass fails them too (run's catch).
    this.rows.push(...batch);
    const { first, logits } = prefillSlots(
      this.model,
      this.cache,
      this.ws,
      batch.map((e) => e.req.promptIds),
      this.opts.padId,
    );
    this.prefills++;
    this.pick(logits, first, batch);
  }

  private decode(): void {
    const be = this.model.backend;
    const ids = be.upload(
      Int32Array.from(this.rows, (e) => e.newIds[e.newIds.length - 1]),
      [this.rows.length],
      'i32',
    );
    try {
      const logits = decodeSlots(this.model, this.cache, this.ws, ids);
      this.steps++;
      this.pick(logits, 0, [...this.rows]);
    } finally {
      be.free(ids);
    }
  }

  /** Chooses the next token of rows [first, first + entries.length) from their logits [n, V], then frees finished rows. */
  private pick(logits: Tensor, first: number, entries: Entry[]): void {
    const be = this.model.backend;
    const V = this.model.config.vocabSize;
    const n = entries.length;
    const argmax = be.empty([n], 'i32');
    be.argmaxRows(argmax, logits);
    const greedy = be.download(argmax);
    be.free(argmax);
    const sampled = entries.flatMap((e, j) => (e.sampler ? [j] : []));
    let host: ArrayLike<number> | null = null;
    if (sampled.length === n) host = be.download(logits);
    else if (sampled.length > 0) {
      const index = be.upload(Int32Array.from(sampled), [sampled.length], 'i32');
      const rows = be.empty([sampled.length, V], logits.dtype);
      be.gatherRows(rows, logits, index);
      host = be.download(rows);
      be.free(rows);
      be.free(index);
    }
    const tokens = Array.from({ length: n }, (_, j) => greedy[j]);
    if (host) {
      const h = host as Float32Array;
      sampled.forEach(
        (j, i) => (tokens[j] = entries[j].sampler!.pick(h, (sampled.length === n ? j : i) * V, entries[j].random)),
      );
    }
    const finished: [number, FinishReason][] = [];
    entries.forEach((e, j) => {
      const id = tokens[j];
      e.newIds.push(id);
      const stopped = e.req.onToken?.(id) === true || this.stop.has(id);
      if (stopped) finished.push([first + j, 'stop']);
      else if (e.newIds.length >= e.req.maxTokens) finished.push([first + j, 'length']);
    });
    // Highest rows first: release(r) moves the last row into r, which is then already handled.
    for (const [r, reason] of finished.sort((a, b) => b[0] - a[0])) this.release(r, reason);
  }

  private release(r: number, reason: FinishReason): void {
    const e = this.rows[r];
    const moved = this.cache.release(r);
    if (moved >= 0) this.rows[r] = this.rows[moved];
    this.rows.pop();
    this.finish(e, reason);
  }

  private finish(e: Entry, reason: FinishReason): void {
    if (e.onAbort) e.req.signal?.removeEventListener('abort', e.onAbort);
    e.resolve({ promptIds: e.req.promptIds, newIds: e.newIds, finishReason: reason });
  }
}
