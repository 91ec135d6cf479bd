/**
 * A caching device allocator. cuMemAlloc/cuMemFree take tens of microseconds and cuMemFree
 * synchronizes the device, while a training step allocates and frees thousands of activations
 * of a few recurring sizes. Freed blocks therefore go to a free list per size class and are
 * handed out again; since every kernel runs on one stream, a block reused by later work is
 * only touched after the earlier work that used it. When the device runs out of memory, the
 * cached blocks are released (after a synchronize) and the allocation retried once.
 */
import { UserError } from '../../util/errors.js';
import { checkCu, CUDA_ERROR_OUT_OF_MEMORY, driverApi, outNumber } from './ffi.js';

/** Block sizes: powers of two up to 1 MiB, then 8 classes per doubling (at most 12.5% slack). */
export function sizeClass(bytes: number): number {
  if (bytes <= 512) return 512;
  if (bytes <= 1 << 20) return 2 ** Math.ceil(Math.log2(bytes));
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

export interface MemoryStats {
  /** Bytes held in live blocks (rounded to their size class). */
  inUse: number;
  /** Highest inUse so far (or since resetPeak). */
  peakInUse: number;
  /** Bytes obtained from the driver, live or cached. */
  reserved: number;
}

export class DeviceAllocator {
  private readonly cached = new Map<number, number[]>();
  private inUse = 0;
  private peak = 0;
  private reserved = 0;

  constructor(private readonly synchronize: () => void) {}

  /** A device address of at least `bytes` bytes (0 for an empty request); give it back with release(). */
  alloc(bytes: number): { ptr: number; size: number } {
    if (bytes === 0) return { ptr: 0, size: 0 };
    const size = sizeClass(bytes);
    const list = this.cached.get(size);
    const reused = list?.pop();
    const ptr = reused ?? this.fresh(size);
    this.inUse += size;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return { ptr, size };
  }

  release(ptr: number, size: number): void {
    if (size === 0) return;
    this.inUse -= size;
    let list = this.cached.get(size);
    if (!list) this.cached.set(size, (list = []));
    list.push(ptr);
  }

  /** Returns every cached block to the driver (waits for queued work first). */
  releaseCached(): void {
    this.synchronize();
    const api = driverApi();
    for (const [size, list] of this.cached) {
      for (const ptr of list) {
        checkCu(api.cuMemFree(ptr), 'cuMemFree');
        this.reserved -= size;
      }
    }
    this.cached.clear();
  }

  stats(): MemoryStats {
    return { inUse: this.inUse, peakInUse: this.peak, reserved: this.reserved };
  }

  resetPeak(): void {
    this.peak = this.inUse;
  }

  private fresh(size: number): number {
    const api = driverApi();
    const out = [0];
    let rc = api.cuMemAlloc(out, size);
    if (rc === CUDA_ERROR_OUT_OF_MEMORY) {
      this.releaseCached();
      rc = api.cuMemAlloc(out, size);
    }
    if (rc === CUDA_ERROR_OUT_OF_MEMORY) {
      const gib = (n: number): string => (n / 2 ** 30).toFixed(2);
      throw new UserError(
        `GPU out of memory allocating ${gib(size)} GiB (${gib(this.inUse)} GiB in use by this process): use a smaller batch size or sequence length`,
      );
    }
    checkCu(rc, 'cuMemAlloc');
    this.reserved += size;
    return outNumber(out[0]);
  }
}
