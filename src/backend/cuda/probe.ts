/**
 * What this machine offers the CUDA backend, for `sqlora doctor`: the driver and its CUDA
 * version, each device (name, compute capability, total and free memory), and NVRTC and cuBLAS
 * with their versions and the files they were loaded from. Each part that fails carries its
 * message (which says what to install) instead of throwing, so one missing library does not hide
 * the rest.
 */
import { checkCu, cublasApi, driverApi, loadedLibraries, nvrtcApi, outNumber } from './ffi.js';
import { describeError } from '../../util/errors.js';

export interface CudaDeviceInfo {
  ordinal: number;
  name: string;
  /** Compute capability as major * 10 + minor (90 for Hopper). */
  cc: number;
  totalBytes: number;
  /** Free memory as the driver reports it right now (other processes' use included). */
  freeBytes: number;
}

export type Probed<T> = ({ ok: true } & T) | { ok: false; error: string };

export interface CudaProbe {
  driver: Probed<{ library: string; version: string; devices: CudaDeviceInfo[] }>;
  nvrtc: Probed<{ library: string; version: string }>;
  cublas: Probed<{ library: string; version: string }>;
}

const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

function attempt<T>(fn: () => T): Probed<T> {
  try {
    return { ok: true, ...fn() };
  } catch (err) {
    return { ok: false, error: describeError(err) };
  }
}

function deviceInfo(ordinal: number): CudaDeviceInfo {
  const api = driverApi();
  const dev = [0];
  checkCu(api.cuDeviceGet(dev, ordinal), 'cuDeviceGet');
  const nameBuf = new Uint8Array(256);
  checkCu(api.cuDeviceGetName(nameBuf, nameBuf.length, dev[0]), 'cuDeviceGetName');
  const name = Buffer.from(nameBuf.subarray(0, Math.max(0, nameBuf.indexOf(0)))).toString('utf8');
  const attr = (a: number): number => {
    const v = [0];
    checkCu(api.cuDeviceGetAttribute(v, a, dev[0]), 'cuDeviceGetAttribute');
    return v[0];
  };
  const cc =
    attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10 + attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  const total = [0];
  checkCu(api.cuDeviceTotalMem(total, dev[0]), 'cuDeviceTotalMem');
  // Free memory is a context's view: the primary context, the one the backend itself uses.
  const ctx: unknown[] = [null];
  checkCu(api.cuDevicePrimaryCtxRetain(ctx, dev[0]), 'cuDevicePrimaryCtxRetain');
  checkCu(api.cuCtxSetCurrent(ctx[0]), 'cuCtxSetCurrent');
  const free = [0],
    total2 = [0];
  checkCu(api.cuMemGetInfo(free, total2), 'cuMemGetInfo');
  return { ordinal, name, cc, totalBytes: outNumber(total[0]), freeBytes: outNumber(free[0]) };
}

/** CUDA's version integer (1000 major + 10 minor) as "12.8". */
function cudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

export function probeCuda(): CudaProbe {
  const driver = attempt(() => {
    const api = driverApi();
    checkCu(api.cuInit(0), 'cuInit');
    const version = [0];
    checkCu(api.cuDriverGetVersion(version), 'cuDriverGetVersion');
    const count = [0];
    checkCu(api.cuDeviceGetCount(count), 'cuDeviceGetCount');
    const devices = Array.from({ length: count[0] }, (_, i) => deviceInfo(i));
    return { library: loadedLibraries.driver ?? '', version: cudaVersion(version[0]), devices };
  });
  const nvrtc = attempt(() => {
    const major = [0],
      minor = [0];
    const rc = nvrtcApi().nvrtcVersion(major, minor);
    if (rc !== 0) throw new Error(`NVRTC: nvrtcVersion failed (${String(rc)})`);
    return { library: loadedLibraries.nvrtc ?? '', version: `${major[0]}.${minor[0]}` };
  });
  const cublas = attempt(() => {
    const api = cublasApi();
    const part = (type: number): number => {
      const v = [0];
      const rc = api.cublasGetProperty(type, v);
      if (rc !== 0) throw new Error(`cuBLAS: cublasGetProperty failed (${String(rc)})`);
      return v[0];
    };
    return { library: loadedLibraries.cublas ?? '', version: `${part(0)}.${part(1)}.${part(2)}` };
  });
  return { driver, nvrtc, cublas };
}
