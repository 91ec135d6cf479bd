/**
 * The device error word: kernels that meet invalid input on the device (a token id or target
 * outside the vocabulary) cannot throw there, so they set this word; the host reads it back with
 * the values it waits for and throws for them.
 */
import type { Block } from './cuda-tensor.js';
import type { CudaDevice } from './device.js';
import { DEVICE_ERRORS } from './kernels/common.js';

export class DeviceErrors {
  private readonly word: Block;
  private readonly host = new Int32Array(1);

  constructor(private readonly device: CudaDevice) {
    this.word = device.allocator.alloc(4);
    device.memset(this.word.ptr, 32, 0, 1);
  }

  /** The word's device address, as kernels take it. */
  get ptr(): number {
    return this.word.ptr;
  }

  /** Waits for queued work and reports any invalid input the kernels flagged on the device. */
  finish(): void {
    this.device.download(this.host, this.word.ptr);
    this.device.synchronize();
    this.report(this.host[0]);
  }

  /** Clears and reports a device error word read back to the host (0 = none). */
  report(code: number): void {
    if (code === 0) return;
    this.device.memset(this.word.ptr, 32, 0, 1);
    throw new RangeError(DEVICE_ERRORS[code] ?? `a kernel reported error ${code}`);
  }
}
