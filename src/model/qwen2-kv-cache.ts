/**
 * Keys and values of past tokens for incremental decoding: per layer two [B, capacity, Hkv, hd]
 * slabs written slot by slot, a key mask [B, capacity] (padding slots of left-padded prompts
 * stay 0), and each row's count of real tokens (the next rotary position).
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

  constructor(private readonly be: Backend, cfg: Qwen2Config, readonly batchSize: number, readonly capacity: number) {
    const shape = [batchSize, capacity, cfg.numKvHeads, cfg.headDim];
    for (let i = 0; i < cfg.numLayers; i++) {
      this.k.push(be.alloc(shape, be.computeDType));
      this.v.push(be.alloc(shape, be.computeDType));
    }
    this.mask = new Int32Array(batchSize * capacity);
    this.seen = new Int32Array(batchSize);
  }

  /** Records T new slots per row with their mask and returns the device key mask. */
  append(mask: Int32Array, T: number): Tensor {
    if (this.length + T > this.capacity) {
      throw new Error(`KV cache full: ${this.length} + ${T} tokens exceed its capacity of ${this.capacity}`);
    }
    for (let b = 0; b < this.batchSize; b++) {
      for (let t = 0; t < T; t++) {
        const m = mask[b * T + t];
        this.mask[b * this.capacity + this.length + t] = m;
        if (m) this.seen[b]++;
      }
    }
    this.length += T;
    if (this.maskDevice) this.be.free(this.maskDevice);
    this.maskDevice = this.be.upload(this.mask, [this.batchSize, this.capacity], 'i32');
    return this.maskDevice;
  }

  free(): void {
    for (const t of [...this.k, ...this.v]) this.be.free(t);
    if (this.maskDevice) this.be.free(this.maskDevice);
    this.k.length = 0;
    this.v.length = 0;
    this.maskDevice = null;
  }
}
