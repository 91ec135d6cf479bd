/**
 * Picking a backend: 'cpu', 'cuda', or 'auto' (CUDA when an NVIDIA GPU and its driver are
 * present, else the CPU). NVIDIA libraries are loaded only when a CUDA backend is created;
 * the probe loads nothing but the driver library.
 */
import { UserError } from '../util/errors.js';
import type { Backend } from './backend.js';
import { CpuBackend } from './cpu/cpu-backend.js';
import { CudaBackend } from './cuda/cuda-backend.js';
import { driverApi } from './cuda/ffi.js';

export const DEVICES = ['cpu', 'cuda', 'auto'] as const;

/** Whether a CUDA GPU is usable here, and if not, why (for skip messages and 'auto'). */
export function probeCuda(): { available: true; devices: number } | { available: false; reason: string } {
  try {
    const api = driverApi();
    const rc = api.cuInit(0);
    if (rc !== 0)
      return { available: false, reason: `cuInit failed with error ${String(rc)} (no usable NVIDIA GPU or driver)` };
    const n = [0];
    if (api.cuDeviceGetCount(n) !== 0 || n[0] === 0)
      return { available: false, reason: 'the NVIDIA driver reports no GPU' };
    return { available: true, devices: n[0] };
  } catch (err) {
    return { available: false, reason: (err as Error).message };
  }
}

export function createBackend(device: string): Backend {
  switch (device) {
    case 'cpu':
      return new CpuBackend();
    case 'cuda':
      return new CudaBackend();
    case 'auto':
      return probeCuda().available ? new CudaBackend() : new CpuBackend();
    default:
      throw new UserError(`unknown device ${JSON.stringify(device)} (expected ${DEVICES.join(', ')})`);
  }
}
