/**
 * CUDA C source -> GPU code with NVRTC, cached on disk. A compile takes a second or more, so
 * the image is kept under $XDG_CACHE_HOME/sqlora/kernels (or ~/.cache/sqlora/kernels), named by
 * a hash of the source, the options and the NVRTC version: a changed kernel or compiler never
 * reuses a stale image. Machine code (cubin) is built for the device's own architecture; a GPU
 * newer than this NVRTC knows gets PTX for the newest architecture it does know, which the
 * driver then compiles.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { checkNvrtc, nvrtcApi, outNumber } from './ffi.js';

export interface CompiledModule {
  /** cubin (machine code) or PTX (compiled by the driver at load time). */
  image: Buffer;
}

/** Where compiled kernel images are kept (also shown by `sqlora doctor`). */
export function kernelCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'sqlora', 'kernels');
}

let versionTag: string | null = null;
let supportedArchs: number[] | null = null;

function nvrtcVersionTag(): string {
  if (versionTag) return versionTag;
  const major = [0],
    minor = [0];
  checkNvrtc(nvrtcApi().nvrtcVersion(major, minor), 'nvrtcVersion');
  versionTag = `${major[0]}.${minor[0]}`;
  return versionTag;
}

function archs(): number[] {
  if (supportedArchs) return supportedArchs;
  const api = nvrtcApi();
  const n = [0];
  checkNvrtc(api.nvrtcGetNumSupportedArchs(n), 'nvrtcGetNumSupportedArchs');
  const list = new Int32Array(n[0]);
  checkNvrtc(api.nvrtcGetSupportedArchs(list), 'nvrtcGetSupportedArchs');
  supportedArchs = Array.from(list).sort((a, b) => a - b);
  return supportedArchs;
}

/** The target for a device of compute capability `cc` (e.g. 90): its own cubin, or PTX for the newest known. */
function targetFor(cc: number): { option: string; kind: 'cubin' | 'ptx' } {
  const known = archs();
  if (known.includes(cc)) return { option: `--gpu-architecture=sm_${cc}`, kind: 'cubin' };
  const older = known.filter((a) => a <= cc);
  if (older.length === 0)
    throw new Error(
      `NVRTC ${nvrtcVersionTag()} cannot compile for compute capability ${cc / 10} (it knows ${known.join(', ')})`,
    );
  return { option: `--gpu-architecture=compute_${older[older.length - 1]}`, kind: 'ptx' };
}

function readCache(file: string): Buffer | null {
  try {
    return readFileSync(file);
  } catch {
    return null;
  }
}

/** Best effort: a read-only or full cache folder only costs a recompile next time. */
function writeCache(file: string, image: Buffer): void {
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, image);
    renameSync(tmp, file);
  } catch {
    // caching is an optimization
  }
}

/** Compiles `source` (named `name` in error messages) for a device of compute capability `cc`. */
export function compileModule(source: string, name: string, cc: number): CompiledModule {
  const target = targetFor(cc);
  // SQLORA_NVRTC_LINEINFO=1 keeps source lines in the image, for a profiler's source view (same machine code).
  const options = [
    target.option,
    '-std=c++17',
    '--fmad=true',
    ...(process.env.SQLORA_NVRTC_LINEINFO === '1' ? ['-lineinfo'] : []),
  ];
  const key = createHash('sha256')
    .update(`${nvrtcVersionTag()}\n${options.join(' ')}\n${source}`)
    .digest('hex')
    .slice(0, 32);
  const file = join(kernelCacheDir(), `${name}-${key}.${target.kind}`);
  const cached = readCache(file);
  if (cached) return { image: cached };

  const api = nvrtcApi();
  const prog: unknown[] = [null];
  checkNvrtc(api.nvrtcCreateProgram(prog, source, `${name}.cu`, 0, null, null), 'nvrtcCreateProgram');
  try {
    const rc = api.nvrtcCompileProgram(prog[0], options.length, options);
    if (rc !== 0) {
      const size = [0];
      api.nvrtcGetProgramLogSize(prog[0], size);
      const log = Buffer.alloc(outNumber(size[0]));
      api.nvrtcGetProgramLog(prog[0], log);
      throw new Error(`NVRTC could not compile kernels ${name}.cu:\n${log.toString('utf8').replace(/\0+$/, '')}`);
    }
    const size = [0];
    const cubin = target.kind === 'cubin';
    checkNvrtc(cubin ? api.nvrtcGetCUBINSize(prog[0], size) : api.nvrtcGetPTXSize(prog[0], size), 'get image size');
    const image = Buffer.alloc(outNumber(size[0]));
    checkNvrtc(cubin ? api.nvrtcGetCUBIN(prog[0], image) : api.nvrtcGetPTX(prog[0], image), 'get image');
    writeCache(file, image);
    return { image };
  } finally {
    api.nvrtcDestroyProgram(prog);
  }
}
