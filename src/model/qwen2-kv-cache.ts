/**
 * Keys and values of past tokens for incremental decoding: per layer two [B, capacity, Hkv, hd]
 * slabs written slot by slot, a key mask [B, capacity] (padding slots of left-padded prompts
 * stay 0), and each row's count of real tokens (the next rotary position).
 *
 * Mask and positions live on the host and on the device. A decoding step uploads neither: the
 * device mask holds 1 in every slot not yet filled (decoded tokens are real; attention never
 * reads past the filled slots), and the device positions of a step are the previous step's
 * plus one, added on the device.
 */
import type { Backend, Tensor } from '../backend/backend.js';
import type { Qwen2Config } from './config.js';

export class KvCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  /** Host copy of the key mask [B * capacity]. */
  readonly mask: Int32Array;
  /** Real tokens seen per row (= the next token's position). */
  readonly seen: Int32Array;
  /** Slots filled so far (same for every row). */
  length = 0;
  private maskDevice: Tensor | null = null;
  /** Positions [B] of the last decoding step's tokens, or null after anything else. */
  private stepPositions: Tensor | null = null;

  constructor(
    private readonly be: Backend,
    private readonly cfg: Qwen2Config,
    readonly batchSize: number,
    readonly capacity: number,
  ) {
    const shape = [batchSize, capacity, cfg.numKvHeads, cfg.headDim];
    for (let i = 0; i < cfg.numLayers; i++) {
      // Slots are written before attention reads them: no zero fill needed.
      this.k.push(be.empty(shape, be.computeDType));
      this.v.push(be.empty(shape, be.computeDType));
    }
    this.mask = new Int32Array(batchSize * capacity);
    this.seen = new Int32Array(batchSize);
  }

  /** Records T new slots per row with their mask and returns the device key mask. */
  append(mask: Int32Array, T: number): Tensor {
    this.reserve(T);
    let allReal = true;
    for (let b = 0; b < this.batchSize; b++) {
      for (let t = 0; t < T; t++) {
        const m = mask[b * T + t];
        this.mask[b * this.capacity + this.length + t] = m;
        if (m) this.seen[b]++;
        else allReal = false;
      }
    }
    this.length += T;
    // The device mask assumed these slots real; padding among them needs a fresh copy.
    if (!allReal) this.dropDevice('mask');
    this.dropDevice('positions');
    return this.deviceMask();
  }

  /**
   * Records one real token per row (a decoding step) and returns the device key mask and the
   * new tokens' rotary positions [B], valid until the next call.
   */
  appendStep(): { keyMask: Tensor; positions: Tensor } {
    this.reserve(1);
    if (this.stepPositions) this.be.addI32(this.stepPositions, 1);
    else this.stepPositions = this.be.upload(this.seen, [this.batchSize], 'i32');
    for (let b = 0; b < this.batchSize; b++) {
      this.mask[b * this.capacity + this.length] = 1;
      this.seen[b]++;
    }
    this.length++;
    return { keyMask: this.deviceMask(), positions: this.stepPositions };
  }

  /** A cache of rows `keep` of this one (in that order), which is freed. */
  select(keep: readonly number[]): KvCache {
    const be = this.be,
      cap = this.capacity;
    const out = new KvCache(be, this.cfg, keep.length, cap);
    const index = be.upload(Int32Array.from(keep), [keep.length], 'i32');
    for (let layer = 0; layer < this.k.length; layer++) {
      for (const [src, dst] of [
        [this.k[layer], out.k[layer]],
        [this.v[layer], out.v[layer]],
      ]) {
        const width = src.size / this.batchSize;
        be.gatherRows(be.reshape(dst, [keep.length, width]), be.reshape(src, [this.batchSize, width]), index);
      }
    }
    be.free(index);
    keep.forEach((b, j) => {
      out.mask.set(this.mask.subarray(b * cap, (b + 1) * cap), j * cap);
      out.seen[j] = this.seen[b];
    });
    out.length = this.length;
    this.free();
    return out;
  }

  free(): void {
    for (const t of [...this.k, ...this.v]) this.be.free(t);
    this.k.length = 0;
    this.v.length = 0;
    this.dropDevice('mask');
    this.dropDevice('positions');
  }

  private reserve(T: number): void {
    if (this.length + T > this.capacity) {
      throw new Error(`KV cache full: ${this.length} + ${T} tokens exceed its capacity of ${this.capacity}`);
    }
  }

  private deviceMask(): Tensor {
    if (!this.maskDevice) {
      const m = Int32Array.from(this.mask);
      for (let b = 0; b < this.batchSize; b++) m.fill(1, b * this.capacity + this.length, (b + 1) * this.capacity);
      this.maskDevice = this.be.upload(m, [this.batchSize, this.capacity], 'i32');
    }
    return this.maskDevice;
  }

  private dropDevice(which: 'mask' | 'positions'): void {
    const t = which === 'mask' ? this.maskDevice : this.stepPositions;
    if (t) this.be.free(t);
    if (which === 'mask') this.maskDevice = null;
    else this.stepPositions = null;
  }
}
