/**
 * FFI bindings (koffi) to the three NVIDIA libraries the CUDA backend needs: the driver API
 * (libcuda), the runtime compiler NVRTC and cuBLAS. Each library is loaded on first use, so
 * importing this module costs nothing on machines without a GPU, and a missing library becomes
 * one UserError that names it and says what to install.
 *
 * koffi conventions used throughout: pointers are BigInt (or Number) values, device addresses
 * (CUdeviceptr) are uint64 values handled as JS numbers (GPU virtual addresses stay far below
 * 2^53), `_Out_ T *` parameters take a one-element array, and `void **` takes a JS array of
 * typed arrays, each passed as a pointer to its bytes (what cuLaunchKernel's params need).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';
import { UserError } from '../../util/errors.js';

type Fn = (...args: unknown[]) => unknown;

/** The file each library was loaded from (the name the loader took, or a path), for `sqlora doctor`. */
export const loadedLibraries: { driver?: string; nvrtc?: string; cublas?: string } = {};

/** Folders tried after the dynamic loader's own search (LD_LIBRARY_PATH, ldconfig). */
function fallbackDirs(): string[] {
  const dirs = [process.env.CUDA_PATH, process.env.CUDA_HOME]
    .filter((d): d is string => !!d)
    .map((d) => join(d, 'lib64'));
  return [...dirs, '/usr/local/cuda/lib64', '/usr/local/nvidia/lib64', '/usr/lib/x86_64-linux-gnu'];
}

function loadLibrary(
  key: keyof typeof loadedLibraries,
  names: readonly string[],
  what: string,
  install: string,
): LibraryHandle {
  // tools/cuda-emulator: one library standing in for all three, running the backend on the CPU.
  const emulator = process.env.SQLORA_CUDA_EMULATOR;
  if (emulator) {
    loadedLibraries[key] = emulator;
    return koffi.load(emulator);
  }
  const errors: string[] = [];
  const candidates = [
    ...names,
    ...fallbackDirs()
      .flatMap((d) => names.map((n) => join(d, n)))
      .filter((p) => existsSync(p)),
  ];
  for (const name of candidates) {
    try {
      const lib = koffi.load(name);
      loadedLibraries[key] = name;
      return lib;
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new UserError(
    `CUDA: cannot load ${what} (${names.join(' or ')}): ${install}. Or run with --device cpu. (${errors[0] ?? 'not found'})`,
  );
}

function bind<T extends Record<string, string>>(lib: LibraryHandle, decls: T): { [K in keyof T]: Fn } {
  const out = {} as { [K in keyof T]: Fn };
  for (const key of Object.keys(decls) as (keyof T)[]) out[key] = lib.func(decls[key]) as unknown as Fn;
  return out;
}

const DRIVER = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuGetErrorName: 'int cuGetErrorName(int err, _Out_ const char **name)',
  cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *count)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *dev, int ordinal)',
  cuDeviceGetName: 'int cuDeviceGetName(_Out_ uint8_t *name, int len, int dev)',
  cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *value, int attrib, int dev)',
  cuDeviceTotalMem: 'int cuDeviceTotalMem_v2(_Out_ size_t *bytes, int dev)',
  // sqlora doctor: the driver's CUDA version and the current context's free memory.
  cuDriverGetVersion: 'int cuDriverGetVersion(_Out_ int *version)',
  cuMemGetInfo: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int dev)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
  cuMemAlloc: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  cuMemFree: 'int cuMemFree_v2(uint64_t dptr)',
  cuMemcpyHtoDAsync: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)',
  cuMemcpyDtoHAsync: 'int cuMemcpyDtoHAsync_v2(_Out_ void *dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoDAsync: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemsetD8Async: 'int cuMemsetD8Async(uint64_t dst, uint8_t value, size_t count, void *stream)',
  cuMemsetD16Async: 'int cuMemsetD16Async(uint64_t dst, uint16_t value, size_t count, void *stream)',
  cuMemsetD32Async: 'int cuMemsetD32Async(uint64_t dst, uint32_t value, size_t count, void *stream)',
  cuModuleLoadData: 'int cuModuleLoadData(_Out_ void **module, const void *image)',
  cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)',
  cuFuncSetAttribute: 'int cuFuncSetAttribute(void *fn, int attrib, int value)',
  cuLaunchKernel:
    'int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, void *stream, void **params, void **extra)',
  // Page-locked host memory and events: device-to-host copies the host waits for one by one.
  cuMemAllocHost: 'int cuMemAllocHost_v2(_Out_ void **ptr, size_t bytes)',
  /** cuMemcpyDtoHAsync with the destination as an address, to copy into page-locked memory at an offset. */
  cuMemcpyDtoHAsyncToAddress: 'int cuMemcpyDtoHAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuEventCreate: 'int cuEventCreate(_Out_ void **event, unsigned int flags)',
  cuEventRecord: 'int cuEventRecord(void *event, void *stream)',
  cuEventSynchronize: 'int cuEventSynchronize(void *event)',
  // Timing (tools/gpu-check/train-profile.ts).
  cuEventElapsedTime: 'int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)',
} as const;

const NVRTC = {
  nvrtcVersion: 'int nvrtcVersion(_Out_ int *major, _Out_ int *minor)',
  nvrtcGetErrorString: 'const char *nvrtcGetErrorString(int result)',
  nvrtcGetNumSupportedArchs: 'int nvrtcGetNumSupportedArchs(_Out_ int *count)',
  nvrtcGetSupportedArchs: 'int nvrtcGetSupportedArchs(_Out_ int *archs)',
  nvrtcCreateProgram:
    'int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int numHeaders, void *headers, void *includeNames)',
  nvrtcDestroyProgram: 'int nvrtcDestroyProgram(_Inout_ void **prog)',
  nvrtcCompileProgram: 'int nvrtcCompileProgram(void *prog, int numOptions, const char **options)',
  nvrtcGetProgramLogSize: 'int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)',
  nvrtcGetProgramLog: 'int nvrtcGetProgramLog(void *prog, _Out_ uint8_t *log)',
  nvrtcGetCUBINSize: 'int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)',
  nvrtcGetCUBIN: 'int nvrtcGetCUBIN(void *prog, _Out_ uint8_t *cubin)',
  nvrtcGetPTXSize: 'int nvrtcGetPTXSize(void *prog, _Out_ size_t *size)',
  nvrtcGetPTX: 'int nvrtcGetPTX(void *prog, _Out_ uint8_t *ptx)',
} as const;

const CUBLAS = {
  cublasCreate: 'int cublasCreate_v2(_Out_ void **handle)',
  cublasSetStream: 'int cublasSetStream_v2(void *handle, void *stream)',
  cublasGetStatusString: 'const char *cublasGetStatusString(int status)',
  /** type 0, 1, 2: major version, minor version, patch level. */
  cublasGetProperty: 'int cublasGetProperty(int type, _Out_ int *value)',
  cublasGemmEx:
    'int cublasGemmEx(void *h, int transa, int transb, int m, int n, int k, const void *alpha, uint64_t A, int Atype, int lda, uint64_t B, int Btype, int ldb, const void *beta, uint64_t C, int Ctype, int ldc, int computeType, int algo)',
  cublasGemmBatchedEx:
    'int cublasGemmBatchedEx(void *h, int transa, int transb, int m, int n, int k, const void *alpha, uint64_t Aarray, int Atype, int lda, uint64_t Barray, int Btype, int ldb, const void *beta, uint64_t Carray, int Ctype, int ldc, int batchCount, int computeType, int algo)',
  cublasGemmStridedBatchedEx:
    'int cublasGemmStridedBatchedEx(void *h, int transa, int transb, int m, int n, int k, const void *alpha, uint64_t A, int Atype, int lda, int64_t strideA, uint64_t B, int Btype, int ldb, int64_t strideB, const void *beta, uint64_t C, int Ctype, int ldc, int64_t strideC, int batchCount, int computeType, int algo)',
} as const;

export type DriverApi = { [K in keyof typeof DRIVER]: Fn };
export type NvrtcApi = { [K in keyof typeof NVRTC]: Fn };
export type CublasApi = { [K in keyof typeof CUBLAS]: Fn };

let driver: DriverApi | null = null;
let nvrtc: NvrtcApi | null = null;
let cublas: CublasApi | null = null;

export function driverApi(): DriverApi {
  driver ??= bind(
    loadLibrary(
      'driver',
      ['libcuda.so.1', 'libcuda.so'],
      'the NVIDIA driver library',
      'install the NVIDIA driver (nvidia-smi must work)',
    ),
    DRIVER,
  );
  return driver;
}

export function nvrtcApi(): NvrtcApi {
  nvrtc ??= bind(
    loadLibrary(
      'nvrtc',
      ['libnvrtc.so.13', 'libnvrtc.so.12', 'libnvrtc.so'],
      'NVRTC, the CUDA runtime compiler',
      'install the CUDA toolkit or `pip install nvidia-cuda-nvrtc`, and add its lib folder to LD_LIBRARY_PATH',
    ),
    NVRTC,
  );
  return nvrtc;
}

export function cublasApi(): CublasApi {
  cublas ??= bind(
    loadLibrary(
      'cublas',
      ['libcublas.so.13', 'libcublas.so.12', 'libcublas.so'],
      'cuBLAS',
      'install the CUDA toolkit or `pip install nvidia-cublas`, and add its lib folder to LD_LIBRARY_PATH',
    ),
    CUBLAS,
  );
  return cublas;
}

/** CUDA_ERROR_OUT_OF_MEMORY: the one driver error the allocator recovers from. */
export const CUDA_ERROR_OUT_OF_MEMORY = 2;

class CudaError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Throws a CudaError naming the driver call and the error (e.g. CUDA_ERROR_ILLEGAL_ADDRESS). */
export function checkCu(rc: unknown, what: string): void {
  if (rc === 0) return;
  const name: (string | null)[] = [null];
  const ok = driverApi().cuGetErrorName(rc, name) === 0;
  throw new CudaError(rc as number, `CUDA: ${what} failed: ${ok && name[0] ? name[0] : `error ${String(rc)}`}`);
}

export function checkNvrtc(rc: unknown, what: string): void {
  if (rc === 0) return;
  throw new Error(`NVRTC: ${what} failed: ${String(nvrtcApi().nvrtcGetErrorString(rc))}`);
}

export function checkCublas(rc: unknown, what: string): void {
  if (rc === 0) return;
  throw new Error(`cuBLAS: ${what} failed: ${String(cublasApi().cublasGetStatusString(rc))}`);
}

/** Reads a one-element out-parameter that koffi may hand back as a BigInt. */
export function outNumber(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : (v as number);
}
