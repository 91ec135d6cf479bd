/**
 * Device-to-host copies that the host waits for one by one. A copy into ordinary (pageable)
 * memory returns only when the whole stream has caught up, so a decoding loop could never queue
 * step n + 1 before reading step n's tokens. Here each copy lands in page-locked memory and is
 * followed by an event: waiting for that event leaves later work running. Page-locked buffers
 * (slow to allocate) and events are pooled by size and reused.
 */
import koffi from 'koffi';
import { checkCu, outNumber, type DriverApi } from './ffi.js';
import { sizeClass } from './memory.js';

const CU_EVENT_DISABLE_TIMING = 2;

interface Staging {
  /** The page-locked buffer as koffi hands it back, and its address. */
  ptr: unknown;
  address: number;
  size: number;
  event: unknown;
}

/** A started copy: its staging buffer and how many bytes were queued into it. */
export interface HostCopy {
  staging: Staging;
  bytes: number;
}

export class HostCopies {
  private readonly pool = new Map<number, Staging[]>();

  constructor(
    private readonly api: DriverApi,
    private readonly stream: unknown,
  ) {}

  /** Queues copies of device ranges, back to back from offset 0 of one staging buffer, then an event. */
  start(parts: readonly { src: number; bytes: number }[]): HostCopy {
    const bytes = parts.reduce((n, p) => n + p.bytes, 0);
    const staging = this.take(bytes);
    let offset = 0;
    for (const p of parts) {
      if (p.bytes > 0)
        checkCu(
          this.api.cuMemcpyDtoHAsyncToAddress(staging.address + offset, p.src, p.bytes, this.stream),
          'cuMemcpyDtoHAsync',
        );
      offset += p.bytes;
    }
    checkCu(this.api.cuEventRecord(staging.event, this.stream), 'cuEventRecord');
    return { staging, bytes };
  }

  /** Waits until the copy has landed and returns its bytes (a copy: the staging buffer is reused). */
  wait(c: HostCopy): Uint8Array {
    checkCu(this.api.cuEventSynchronize(c.staging.event), 'a queued kernel (reported at cuEventSynchronize)');
    const out = new Uint8Array(koffi.view(c.staging.ptr, c.bytes)).slice();
    this.pool.get(c.staging.size)?.push(c.staging);
    return out;
  }

  private take(bytes: number): Staging {
    const size = sizeClass(Math.max(bytes, 1));
    let list = this.pool.get(size);
    if (!list) this.pool.set(size, (list = []));
    const reused = list.pop();
    if (reused) return reused;
    const ptr: unknown[] = [null];
    checkCu(this.api.cuMemAllocHost(ptr, size), 'cuMemAllocHost');
    const event: unknown[] = [null];
    checkCu(this.api.cuEventCreate(event, CU_EVENT_DISABLE_TIMING), 'cuEventCreate');
    return { ptr: ptr[0], address: outNumber(koffi.address(ptr[0])), size, event: event[0] };
  }
}
