/**
 * Builds the CUDA emulator (driver.cpp + device-runtime.h) with g++ into a shared library that
 * stands in for libcuda, NVRTC and cuBLAS, cached under $XDG_CACHE_HOME/sqlora/cuda-emulator by
 * a hash of both files. With SQLORA_CUDA_EMULATOR set to its path, the CUDA backend runs on the
 * CPU: every kernel's CUDA C compiled as host C++, each CUDA thread a fiber. It checks what the
 * kernels compute, not how fast; a GPU is still needed for timings.
 *
 *   SQLORA_CUDA_EMULATOR=$(npx tsx tools/cuda-emulator/build.ts) npx tsx tools/gpu-check/cuda-check.ts out --no-timing
 *
 * With SQLORA_CUDA_EMULATOR_SKIP=1 launches and products are checked but not run: the host's
 * cost of queuing work, e.g. train-profile.ts's "host queues a step in", without a GPU.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The emulator library's path, building it first if this version is not cached. Throws if g++ is missing or fails. */
export function buildCudaEmulator(): string {
  const runtime = resolve(here, 'device-runtime.h'),
    driver = resolve(here, 'driver.cpp');
  // The header's path is compiled in: a copy elsewhere builds its own.
  const hash = createHash('sha256').update(runtime).update(readFileSync(runtime)).update(readFileSync(driver)).digest();
  // The NVRTC version the emulator reports: part of the key of every compiled module it caches.
  const version = hash.readUInt32LE(0) & 0x7fffffff;
  const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sqlora', 'cuda-emulator');
  const lib = join(dir, `libsqlora-cuda-emulator-${hash.toString('hex').slice(0, 16)}.so`);
  if (existsSync(lib)) return lib;
  mkdirSync(dir, { recursive: true });
  const tmp = `${lib}.${process.pid}.tmp`;
  execFileSync(
    'g++',
    [
      '-std=c++17',
      '-O2',
      '-fPIC',
      '-shared',
      `-DSQLORA_EMU_RUNTIME="${runtime}"`,
      `-DSQLORA_EMU_VERSION=${version}`,
      '-o',
      tmp,
      driver,
      '-ldl',
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  renameSync(tmp, lib);
  return lib;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) console.log(buildCudaEmulator());
