/**
 * Where the backend-cuda tests run: on a GPU when there is one, else on the CUDA emulator
 * (tools/cuda-emulator: the same kernels compiled as host C++ by g++), so a machine without a
 * GPU still checks what every kernel computes. Without either, the tests skip and say why.
 */
import { probeCuda } from '../../src/backend/select.js';
import { buildCudaEmulator } from '../../tools/cuda-emulator/build.js';

export type CudaTarget = { available: true; emulated: boolean } | { available: false; reason: string };

export function cudaTarget(test: string): CudaTarget {
  const gpu = probeCuda();
  if (gpu.available) return { available: true, emulated: false };
  try {
    process.env.SQLORA_CUDA_EMULATOR = buildCudaEmulator();
  } catch (err) {
    const reason = `no CUDA GPU (${gpu.reason}) and no CUDA emulator (${(err as Error).message.split('\n')[0]})`;
    console.warn(`${test}: skipping, ${reason}`);
    return { available: false, reason };
  }
  const emulated = probeCuda();
  if (!emulated.available) throw new Error(`${test}: the CUDA emulator does not start: ${emulated.reason}`);
  console.warn(`${test}: no CUDA GPU (${gpu.reason}); running on the CUDA emulator`);
  return { available: true, emulated: true };
}
