/**
 * One CUDA device as the backend uses it: its primary context, the single stream every kernel,
 * copy and cuBLAS call is queued on (so work never needs cross-stream synchronization and
 * freed memory can be reused at once), the caching allocator, and kernel modules compiled on
 * first use. Kernel arguments are packed into a per-kernel buffer allocated once, so a launch
 * allocates nothing.
 */
import { checkCu, driverApi, outNumber, type DriverApi } from './ffi.js';
import { DeviceAllocator } from './memory.js';
import { compileModule } from './nvrtc.js';

/**
 * Argument kinds of a kernel signature, one letter per parameter: p = device pointer,
 * i = int32, u = uint32, l = int64, f = float32, d = float64.
 */
export type Signature = string;

/** A named CUDA C translation unit (see kernels/) and the signatures of its kernels. */
export interface KernelModule {
  name: string;
  source: string;
  kernels: ReadonlyMap<string, Signature>;
}

const PARAM_KINDS: [RegExp, string][] = [
  [/\*/, 'p'],
  [/^(const )?(i64|long long)$/, 'l'],
  [/^(const )?unsigned( int)?$/, 'u'],
  [/^(const )?int$/, 'i'],
  [/^(const )?float$/, 'f'],
  [/^(const )?double$/, 'd'],
];

/**
 * The signature of every `extern "C" __global__` function in a CUDA source, read from its
 * parameter list, so the argument packing can never disagree with the kernel.
 */
export function kernelSignatures(source: string): Map<string, Signature> {
  const out = new Map<string, Signature>();
  const decl = /extern "C" __global__ void (?:(?:__launch_bounds__|__cluster_dims__)\([^)]*\)\s+)*(\w+)\(([^)]*)\)/g;
  for (const [, name, params] of source.matchAll(decl)) {
    const sig = params.split(',').map((param) => {
      const type = param
        .trim()
        .replace(/\s*\b\w+$/, '')
        .trim();
      const kind = PARAM_KINDS.find(([re]) => re.test(type));
      if (!kind) throw new Error(`kernel ${name}: unsupported parameter type ${JSON.stringify(type)}`);
      return kind[1];
    });
    out.set(name, sig.join(''));
  }
  return out;
}

export function kernelModule(name: string, source: string): KernelModule {
  return { name, source, kernels: kernelSignatures(source) };
}

const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
const CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
/** Without opting in, a block may use this much dynamic shared memory. */
const DEFAULT_SHARED_LIMIT = 48 * 1024;

class Kernel {
  private readonly view: DataView;
  readonly params: Uint8Array[];
  sharedLimit = DEFAULT_SHARED_LIMIT;

  constructor(
    readonly name: string,
    readonly fn: unknown,
    readonly sig: Signature,
  ) {
    const buf = new ArrayBuffer(8 * sig.length);
    this.view = new DataView(buf);
    this.params = Array.from(sig, (_, i) => new Uint8Array(buf, 8 * i, 8));
  }

  pack(args: readonly number[]): void {
    const { sig, view } = this;
    if (args.length !== sig.length)
      throw new Error(`kernel ${this.name}: ${args.length} arguments for signature ${sig}`);
    for (let i = 0; i < sig.length; i++) {
      const v = args[i],
        o = 8 * i;
      switch (sig[i]) {
        case 'p':
        case 'l':
          view.setUint32(o, v >>> 0, true);
          view.setUint32(o + 4, Math.floor(v / 4294967296), true);
          break;
        case 'i':
          view.setInt32(o, v, true);
          break;
        case 'u':
          view.setUint32(o, v >>> 0, true);
          break;
        case 'f':
          view.setFloat32(o, v, true);
          break;
        case 'd':
          view.setFloat64(o, v, true);
          break;
        default:
          throw new Error(`kernel ${this.name}: bad signature letter ${sig[i]}`);
      }
    }
  }
}

export type { Kernel };

export class CudaDevice {
  readonly api: DriverApi;
  readonly name: string;
  /** Compute capability as major * 10 + minor (90 for Hopper). */
  readonly cc: number;
  readonly smCount: number;
  readonly totalMemory: number;
  readonly stream: unknown;
  readonly allocator: DeviceAllocator;
  private readonly maxShared: number;
  private readonly modules = new Map<string, unknown>();
  private readonly kernels = new Map<KernelModule, Map<string, Kernel>>();

  constructor(readonly ordinal = 0) {
    const api = (this.api = driverApi());
    checkCu(api.cuInit(0), 'cuInit');
    const count = [0];
    checkCu(api.cuDeviceGetCount(count), 'cuDeviceGetCount');
    if (ordinal >= count[0]) throw new Error(`CUDA: no device ${ordinal} (${count[0]} found)`);
    const dev = [0];
    checkCu(api.cuDeviceGet(dev, ordinal), 'cuDeviceGet');
    const attr = (a: number): number => {
      const v = [0];
      checkCu(api.cuDeviceGetAttribute(v, a, dev[0]), 'cuDeviceGetAttribute');
      return v[0];
    };
    this.cc =
      attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10 + attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    this.smCount = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
    this.maxShared = attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    const nameBuf = Buffer.alloc(256);
    checkCu(api.cuDeviceGetName(nameBuf, nameBuf.length, dev[0]), 'cuDeviceGetName');
    this.name = nameBuf.toString('utf8').replace(/\0.*$/s, '');
    const total = [0];
    checkCu(api.cuDeviceTotalMem(total, dev[0]), 'cuDeviceTotalMem');
    this.totalMemory = outNumber(total[0]);
    const ctx: unknown[] = [null];
    checkCu(api.cuDevicePrimaryCtxRetain(ctx, dev[0]), 'cuDevicePrimaryCtxRetain');
    checkCu(api.cuCtxSetCurrent(ctx[0]), 'cuCtxSetCurrent');
    const stream: unknown[] = [null];
    checkCu(api.cuStreamCreate(stream, 0), 'cuStreamCreate');
    this.stream = stream[0];
    this.allocator = new DeviceAllocator(() => this.synchronize());
  }

  /** Waits for all queued work; reports errors of earlier asynchronous kernels. */
  synchronize(): void {
    checkCu(this.api.cuStreamSynchronize(this.stream), 'a queued kernel (reported at cuStreamSynchronize)');
  }

  /** The kernel `name` of `mod`, compiling and loading the module on first use. */
  kernel(mod: KernelModule, name: string): Kernel {
    let loaded = this.kernels.get(mod);
    if (!loaded) this.kernels.set(mod, (loaded = new Map()));
    let k = loaded.get(name);
    if (k) return k;
    const sig = mod.kernels.get(name);
    if (sig === undefined) throw new Error(`no kernel ${name} in kernels/${mod.name}`);
    let handle = this.modules.get(mod.name);
    if (!handle) {
      const { image } = compileModule(mod.source, mod.name, this.cc);
      const out: unknown[] = [null];
      checkCu(this.api.cuModuleLoadData(out, image), `loading kernels ${mod.name}`);
      handle = out[0];
      this.modules.set(mod.name, handle);
    }
    const fn: unknown[] = [null];
    checkCu(this.api.cuModuleGetFunction(fn, handle, name), `finding kernel ${name} in ${mod.name}`);
    k = new Kernel(name, fn[0], sig);
    loaded.set(name, k);
    return k;
  }

  /** Queues `k` on the stream: grid [x, y, z] of 1-D blocks of `block` threads. */
  launch(k: Kernel, grid: readonly number[], block: number, shared: number, args: readonly number[]): void {
    if (shared > k.sharedLimit) {
      if (shared > this.maxShared)
        throw new Error(`kernel ${k.name} needs ${shared} bytes of shared memory; this GPU allows ${this.maxShared}`);
      checkCu(
        this.api.cuFuncSetAttribute(k.fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared),
        `raising the shared memory of ${k.name}`,
      );
      k.sharedLimit = shared;
    }
    k.pack(args);
    const [gx, gy = 1, gz = 1] = grid;
    checkCu(
      this.api.cuLaunchKernel(k.fn, gx, gy, gz, block, 1, 1, shared, this.stream, k.params, null),
      `launching ${k.name}`,
    );
  }

  /** A new device array of 64-bit addresses (batched products' operand lists). */
  uploadAddresses(addresses: readonly number[]): { ptr: number; size: number } {
    // uint64 little-endian as two uint32 halves: BigInt conversions would cost more than the products.
    const host = new Uint32Array(2 * addresses.length);
    addresses.forEach((v, i) => {
      host[2 * i] = v >>> 0;
      host[2 * i + 1] = Math.floor(v / 4294967296);
    });
    const block = this.allocator.alloc(host.byteLength);
    this.upload(block.ptr, host);
    return block;
  }

  upload(dst: number, src: ArrayBufferView, bytes = src.byteLength): void {
    if (bytes > 0) checkCu(this.api.cuMemcpyHtoDAsync(dst, src, bytes, this.stream), 'cuMemcpyHtoDAsync');
  }

  /** Queues a device-to-host copy; the data is there once synchronize() returns. */
  download(dst: ArrayBufferView, src: number, bytes = dst.byteLength): void {
    if (bytes > 0) checkCu(this.api.cuMemcpyDtoHAsync(dst, src, bytes, this.stream), 'cuMemcpyDtoHAsync');
  }

  copy(dst: number, src: number, bytes: number): void {
    if (bytes > 0) checkCu(this.api.cuMemcpyDtoDAsync(dst, src, bytes, this.stream), 'cuMemcpyDtoDAsync');
  }

  /** Sets `count` elements of `bits` bits (8, 16 or 32) to the bit pattern `value`. */
  memset(dst: number, bits: 8 | 16 | 32, value: number, count: number): void {
    if (count === 0) return;
    const api = this.api;
    const rc =
      bits === 8
        ? api.cuMemsetD8Async(dst, value, count, this.stream)
        : bits === 16
          ? api.cuMemsetD16Async(dst, value, count, this.stream)
          : api.cuMemsetD32Async(dst, value >>> 0, count, this.stream);
    checkCu(rc, `cuMemsetD${bits}Async`);
  }
}
