/**
 * A KV cache for continuous batching: a fixed number of rows ("slots"), each holding one
 * sequence that joins and leaves on its own while the others keep their state. Sequences of
 * different lengths share one slot axis: every row's next token goes to slot `length`, each
 * row's own tokens are wherever its key mask is 1, and its rotary positions are its own count
 * of tokens (`seen`), so where a token sits in the slab never changes what it computes (the
 * attention kernels skip masked keys).
 *
 * - Rows in use are always rows [0, active): a pass reads views of that prefix, and a leaving
 *   row is replaced by the last one (a copy of its filled slots).
 * - A joining sequence of P prompt tokens is prefilled straight into its row at slots
 *   [length - P, length), the slots before it masked; when P exceeds `length`, every row first
 *   gets masked slots up to P.
 * - When `length` reaches the capacity, compact() packs each row's real slots to the right of
 *   a shorter common length (one gather per layer).
 *
 * The slabs start zeroed: a masked slot never yet written then holds zeros, not NaN (a masked
 * key's zero probability times a NaN value would still be NaN in some kernels).
 */
import type { Backend, Tensor } from '../backend/backend.js';
import type { Qwen2Config } from './config.js';
import { InferenceBuffers, runLayers, type KvSlabs } from './qwen2-inference.js';
import type { Qwen2Model } from './qwen2.js';

export class SlotKvCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  /** Host key mask [rows * capacity]. */
  readonly mask: Int32Array;
  /** Real tokens per row (= the row's next rotary position). */
  readonly seen: Int32Array;
  /** Slots in use (the same for every row). */
  length = 0;
  /** Rows [0, active) hold sequences. */
  active = 0;
  /** Times compact() packed the rows. */
  compactions = 0;
  /** Device key mask [rows, capacity]: the host mask with 1 past `length` (a decoding step needs no upload). */
  private maskDevice: Tensor | null = null;
  /** Device positions [rows] of the last decoding step, or null when rows changed since. */
  private stepPositions: Tensor | null = null;

  constructor(
    private readonly be: Backend,
    private readonly cfg: Qwen2Config,
    readonly rows: number,
    readonly capacity: number,
  ) {
    const shape = [rows, capacity, cfg.numKvHeads, cfg.headDim];
    for (let i = 0; i < cfg.numLayers; i++) {
      this.k.push(be.alloc(shape, be.computeDType));
      this.v.push(be.alloc(shape, be.computeDType));
    }
    this.mask = new Int32Array(rows * capacity);
    this.seen = new Int32Array(rows);
  }

  /** Real tokens row r holds. */
  tokens(r: number): number {
    return this.seen[r];
  }

  /**
   * Takes rows [active, active + masks.length) for new sequences whose left-padded prompts of T
   * slots have these masks, making room first (compact, then masked slots for the others up to
   * T). Returns the pass input for the prefill: slabs, key mask, positions and offset.
   */
  admit(masks: readonly Int32Array[], T: number): { first: number; offset: number; slabs: KvSlabs; keyMask: Tensor } {
    const n = masks.length,
      first = this.active,
      cap = this.capacity;
    if (first + n > this.rows) throw new Error(`slot cache: ${n} more rows exceed its ${this.rows}`);
    if (Math.max(this.length, T) + 1 > cap) this.compact();
    if (Math.max(this.length, T) + 1 > cap)
      throw new Error(`slot cache: a prompt of ${T} slots does not fit beside ${this.length} of ${cap}`);
    // Slots [length, T) of the rows already running stay masked (the host mask holds 0 there).
    for (let r = 0; r < first; r++) this.mask.fill(0, r * cap + this.length, r * cap + Math.max(this.length, T));
    this.length = Math.max(this.length, T);
    const offset = this.length - T;
    masks.forEach((m, j) => {
      const r = first + j;
      this.mask.fill(0, r * cap, (r + 1) * cap);
      this.mask.set(m, r * cap + offset);
      this.seen[r] = m.reduce((a, b) => a + b, 0);
    });
    this.active += n;
    this.invalidate();
    const keyMask = this.be.rows(this.deviceMask(), first, n);
    return { first, offset, slabs: this.slabs(first, n), keyMask };
  }

  /**
   * Records one new token for every active row (a decoding step): returns the slabs of the
   * active rows, the device key mask and the tokens' positions [active], valid until the next call.
   */
  step(): { slabs: KvSlabs; keyMask: Tensor; positions: Tensor; offset: number } {
    const n = this.active,
      cap = this.capacity;
    if (n === 0) throw new Error('slot cache: a decoding step with no active row');
    if (this.length + 1 > cap) this.compact();
    if (this.stepPositions) this.be.addI32(this.stepPositions, 1);
    else this.stepPositions = this.be.upload(this.seen.subarray(0, n), [n], 'i32');
    for (let r = 0; r < n; r++) {
      this.mask[r * cap + this.length] = 1;
      this.seen[r]++;
    }
    const offset = this.length++;
    const keyMask = this.be.rows(this.deviceMask(), 0, n);
    return { slabs: this.slabs(0, n), keyMask, positions: this.stepPositions, offset };
  }

  /** Frees row r: the last active row moves into it (its slots copied). Returns the row that moved, or -1. */
  release(r: number): number {
    const last = this.active - 1,
      cap = this.capacity;
    if (r < 0 || r > last) throw new Error(`slot cache: row ${r} is not active`);
    if (r !== last && this.length > 0) {
      for (const slab of [...this.k, ...this.v]) {
        const flat = this.be.reshape(slab, [this.rows * cap, slab.size / (this.rows * cap)]);
        this.be.copy(this.be.rows(flat, r * cap, this.length), this.be.rows(flat, last * cap, this.length));
      }
      this.mask.copyWithin(r * cap, last * cap, (last + 1) * cap);
      this.seen[r] = this.seen[last];
    }
    this.active = last;
    if (this.active === 0) this.length = 0;
    this.invalidate();
    return r !== last ? last : -1;
  }

  /**
   * Packs each active row's real slots to the right of the shortest common length that holds
   * them (in order), so decoding can go on past the capacity as long as no row is that long.
   */
  compact(): void {
    const n = this.active,
      cap = this.capacity,
      be = this.be;
    const counts = Array.from({ length: n }, (_, r) => this.seen[r]);
    const length = Math.max(0, ...counts);
    if (length === this.length) return;
    // index[r * cap + j] = the old slot (of the same row) that new slot j takes.
    const index = new Int32Array(n * cap);
    const mask = new Int32Array(n * cap);
    for (let r = 0; r < n; r++) {
      const start = length - counts[r];
      let j = start;
      for (let s = 0; s < this.length; s++) {
        if (this.mask[r * cap + s]) {
          index[r * cap + j] = r * cap + s;
          mask[r * cap + j++] = 1;
        }
      }
      for (let t = 0; t < start; t++) index[r * cap + t] = r * cap + t;
      for (let t = length; t < cap; t++) index[r * cap + t] = r * cap + t;
    }
    const indexT = be.upload(index, [n * cap], 'i32');
    const width = this.cfg.numKvHeads * this.cfg.headDim;
    const scratch = be.empty([n * cap, width], be.computeDType);
    for (const slab of [...this.k, ...this.v]) {
      const flat = be.reshape(slab, [this.rows * cap, width]);
      be.gatherRows(scratch, flat, indexT);
      be.copy(be.rows(flat, 0, n * cap), scratch);
    }
    be.free(scratch);
    be.free(indexT);
    this.mask.set(mask);
    this.length = length;
    this.compactions++;
    this.invalidate();
  }

  /** Empties every row (their slots are left as they are: masked, and never NaN). */
  reset(): void {
    this.active = 0;
    this.length = 0;
    this.invalidate();
  }

  free(): void {
    for (const t of [...this.k, ...this.v]) this.be.free(t);
    this.k.length = 0;
    this.v.length = 0;
    this.invalidate();
  }

  private slabs(first: number, n: number): KvSlabs {
    return {
      k: this.k.map((t) => this.be.rows(t, first, n)),
      v: this.v.map((t) => this.be.rows(t, first, n)),
    };
  }

  private invalidate(): void {
    for (const t of [this.maskDevice, this.stepPositions]) if (t) this.be.free(t);
    this.maskDevice = null;
    this.stepPositions = null;
  }

  private deviceMask(): Tensor {
    if (!this.maskDevice) {
      const m = Int32Array.from(this.mask);
      for (let r = 0; r < this.rows; r++) m.fill(1, r * this.capacity + this.length, (r + 1) * this.capacity);
      this.maskDevice = this.be.upload(m, [this.rows, this.capacity], 'i32');
    }
    return this.maskDevice;
  }
}

/**
 * Prefills new sequences into free rows: left-padded prompts (one per row, T slots) go into
 * rows [first, first + prompts.length); returns the first row and the logits [n, V] of each
 * prompt's last token (a view into `ws`, valid until its next use).
 */
export function prefillSlots(
  model: Qwen2Model,
  cache: SlotKvCache,
  ws: InferenceBuffers,
  prompts: readonly (readonly number[])[],
  padId: number,
): { first: number; logits: Tensor } {
  const be = model.backend;
  const n = prompts.length,
    T = Math.max(...prompts.map((p) => p.length));
  const ids = new Int32Array(n * T).fill(padId);
  const positions = new Int32Array(n * T);
  const masks = prompts.map((p, j) => {
    const pad = T - p.length;
    ids.set(p, j * T + pad);
    for (let t = 0; t < p.length; t++) positions[j * T + pad + t] = t;
    return Int32Array.from({ length: T }, (_, t) => (t >= pad ? 1 : 0));
  });
  for (const id of ids)
    if (id < 0 || id >= model.config.vocabSize) throw new Error(`prefill: token id ${id} is outside the vocabulary`);
  const { first, offset, slabs, keyMask } = cache.admit(masks, T);
  const idsT = be.upload(ids, [n * T], 'i32');
  const positionsT = be.upload(positions, [n * T], 'i32');
  const lastIndex = be.upload(
    Int32Array.from({ length: n }, (_, j) => j * T + T - 1),
    [n],
    'i32',
  );
  const hidden = runLayers(model, slabs, ws, { B: n, T, ids: idsT, positions: positionsT, keyMask, offset });
  const { last, logits } = ws.output(n);
  be.gatherRows(last, hidden, lastIndex);
  be.matmul(logits, last, model.weights.lmHead, { transB: true });
  for (const t of [idsT, positionsT, lastIndex]) be.free(t);
  return { first, logits };
}

/** One decoding step of every active row: token ids i32 [active]; returns the logits [active, V] (a view into `ws`). */
export function decodeSlots(model: Qwen2Model, cache: SlotKvCache, ws: InferenceBuffers, ids: Tensor): Tensor {
  const B = cache.active;
  if (ids.size !== B) throw new Error(`decode: ${ids.size} token ids for ${B} active rows`);
  const { slabs, keyMask, positions, offset } = cache.step();
  const hidden = runLayers(model, slabs, ws, { B, T: 1, ids, positions, keyMask, offset });
  const { logits } = ws.output(B);
  model.backend.matmul(logits, hidden, model.weights.lmHead, { transB: true });
  return logits;
}
