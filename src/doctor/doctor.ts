/**
 * `sqlora doctor`: can this machine run the main job (QLoRA training of Qwen1.5-1.8B-Chat with
 * an NF4 base on an NVIDIA GPU)? Each check says ok, or what is wrong and the fix to apply; a
 * `fail` means the main job cannot run until it is fixed, a `warn` that it runs with a caveat.
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { kernelCacheDir } from '../backend/cuda/nvrtc.js';
import { probeCuda, type CudaProbe } from '../backend/cuda/probe.js';
import { cachedCommit, hubCacheDir, repoCacheDir } from '../hub/cache.js';
import { hubEndpoint } from '../hub/download.js';
import { findHubToken } from '../hub/token.js';
import { hubReachable } from '../hub/reachability.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do, for warn and fail. */
  fix?: string;
}

export interface DoctorReport {
  /** False when a check failed: the main job cannot run here as things are. */
  ok: boolean;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  env?: NodeJS.ProcessEnv;
  /** HEAD request timeout for the Hub check (default 3000 ms). */
  timeoutMs?: number;
  /** The CUDA probe (default: the real one, through the backend's FFI). */
  probe?: () => CudaProbe;
}

export const DEFAULT_MODEL = 'Qwen/Qwen1.5-1.8B-Chat';
const GIB = 2 ** 30;
/**
 * Peak GPU memory of the default training (NF4 base, LoRA r=16 on q,k,v,o) as measured: 11.79 GiB
 * at batch 16 x 512 on an H100 (2026-12-05; the default 8 x 512 micro-batch peaks below it), and
 * 3.42 GiB with activation recompute (--max-activation-gib; H200, the same day).
 */
const TRAIN_PEAK_GIB = 11.79;
const TRAIN_RECOMPUTE_PEAK_GIB = 3.42;
/** The default model's bf16 safetensors (1.84 B parameters), downloaded on first use. */
const DEFAULT_MODEL_GB = 3.7;
const MIN_NODE_MAJOR = 20;

const gib = (bytes: number): string => `${(bytes / GIB).toFixed(1)} GiB`;

export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const env = opts.env ?? process.env;
  const cuda = (opts.probe ?? probeCuda)();
  const device = cuda.driver.ok ? cuda.driver.devices[0] : undefined;
  const checks: DoctorCheck[] = [nodeCheck(), gpuCheck(cuda)];
  for (const [name, lib] of [
    ['NVRTC', cuda.nvrtc],
    ['cuBLAS', cuda.cublas],
  ] as const) {
    checks.push(
      lib.ok
        ? { name, status: 'ok', detail: `${lib.version} (${lib.library})` }
        : { name, status: device ? 'fail' : 'warn', detail: 'not loaded', fix: lib.error },
    );
  }
  checks.push(memoryCheck(device?.freeBytes));
  const cacheDir = hubCacheDir(env);
  const commit = cachedCommit(repoCacheDir(cacheDir, DEFAULT_MODEL), 'main');
  checks.push(cacheCheck(cacheDir, commit));
  const endpoint = hubEndpoint(env);
  const reach = await hubReachable(endpoint, opts.timeoutMs);
  checks.push(
    reach.ok
      ? { name: 'Hugging Face Hub', status: 'ok', detail: `${endpoint} answers (HTTP ${reach.status}, ${reach.ms} ms)` }
      : {
          name: 'Hugging Face Hub',
          // Cached, the default model needs no network.
          status: commit ? 'warn' : 'fail',
          detail: `${endpoint} unreachable (${reach.error})${commit ? `; ${DEFAULT_MODEL} is cached` : ''}`,
          fix: 'check the network or proxy, or set HF_ENDPOINT to a mirror; offline, copy the model into the cache and set HF_HUB_OFFLINE=1',
        },
  );
  const token = findHubToken(undefined, env)?.source;
  checks.push({
    name: 'Hub token',
    status: 'ok',
    detail: token ? `set (${token})` : 'not set: needed only for gated or private models and for publishing to the Hub',
  });
  checks.push(kernelCacheCheck(kernelCacheDir()));
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

function nodeCheck(): DoctorCheck {
  const major = Number(process.versions.node.split('.')[0]);
  return major >= MIN_NODE_MAJOR
    ? { name: 'Node.js', status: 'ok', detail: process.versions.node }
    : {
        name: 'Node.js',
        status: 'fail',
        detail: `${process.versions.node} is older than ${MIN_NODE_MAJOR}`,
        fix: `install Node.js ${MIN_NODE_MAJOR} or newer`,
      };
}

function gpuCheck(cuda: CudaProbe): DoctorCheck {
  const cpu =
    'sqlora falls back to the CPU (--device cpu): fine for `sqlora demo` and tiny models, far too slow to train the 1.8B model';
  if (!cuda.driver.ok)
    return {
      name: 'GPU',
      status: 'fail',
      detail: `no NVIDIA GPU: ${cpu}`,
      fix: `on a machine with an NVIDIA GPU of compute capability 8.0 or newer: ${cuda.driver.error}`,
    };
  const { devices, version, library } = cuda.driver;
  if (devices.length === 0)
    return {
      name: 'GPU',
      status: 'fail',
      detail: `the driver (CUDA ${version}) finds no device: ${cpu}`,
      fix: 'check that nvidia-smi lists the GPU (and CUDA_VISIBLE_DEVICES)',
    };
  const d = devices[0];
  const detail = `${d.name}, compute capability ${(d.cc / 10).toFixed(1)}, ${gib(d.totalBytes)}; driver CUDA ${version} (${library})${devices.length > 1 ? `; ${devices.length} devices, sqlora uses device 0` : ''}`;
  return d.cc >= 80
    ? { name: 'GPU', status: 'ok', detail }
    : {
        name: 'GPU',
        status: 'fail',
        detail,
        fix: 'the CUDA backend needs compute capability 8.0 or newer (bf16 tensor cores): use an Ampere, Ada or Hopper GPU',
      };
}

function memoryCheck(freeBytes: number | undefined): DoctorCheck {
  const name = 'GPU memory';
  const need = `training ${DEFAULT_MODEL} (NF4) peaks at ${TRAIN_PEAK_GIB} GiB`;
  if (freeBytes === undefined) return { name, status: 'warn', detail: `no GPU to measure; ${need}` };
  const free = freeBytes / GIB;
  if (free >= TRAIN_PEAK_GIB) return { name, status: 'ok', detail: `${gib(freeBytes)} free; ${need}` };
  if (free >= TRAIN_RECOMPUTE_PEAK_GIB)
    return {
      name,
      status: 'warn',
      detail: `${gib(freeBytes)} free; ${need}, ${TRAIN_RECOMPUTE_PEAK_GIB} GiB with activation recompute`,
      fix: `train with --max-activation-gib ${Math.max(1, Math.floor(free - TRAIN_RECOMPUTE_PEAK_GIB))}, or a smaller --batch-size`,
    };
  return {
    name,
    status: 'fail',
    detail: `${gib(freeBytes)} free; ${need}, at least ${TRAIN_RECOMPUTE_PEAK_GIB} GiB with activation recompute`,
    fix: 'stop other processes on the GPU (nvidia-smi lists them), or use a GPU with more memory',
  };
}

/** Free bytes of the file system that holds path (or would: its nearest existing ancestor). */
function freeDiskBytes(path: string): number {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  const s = statfsSync(p);
  return s.bavail * s.bsize;
}

function cacheCheck(cacheDir: string, commit: string | undefined): DoctorCheck {
  const name = 'Hugging Face cache';
  const free = freeDiskBytes(cacheDir);
  if (commit)
    return {
      name,
      status: 'ok',
      detail: `${cacheDir}, ${gib(free)} free; ${DEFAULT_MODEL} cached (${commit.slice(0, 7)})`,
    };
  const detail = `${cacheDir}, ${gib(free)} free; ${DEFAULT_MODEL} (about ${DEFAULT_MODEL_GB} GB) downloads on first use`;
  return free >= DEFAULT_MODEL_GB * 1e9 * 1.1
    ? { name, status: 'ok', detail }
    : {
        name,
        status: 'fail',
        detail,
        fix: 'free disk space there, or point HF_HOME (or HF_HUB_CACHE) at a disk with room',
      };
}

function kernelCacheCheck(dir: string): DoctorCheck {
  const name = 'kernel cache';
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch {
    return {
      name,
      status: 'warn',
      detail: `${dir} is not writable: the CUDA kernels compile again on every run`,
      fix: 'set XDG_CACHE_HOME to a writable folder',
    };
  }
  const images = readdirSync(dir).filter((f) => !f.endsWith('.tmp')).length;
  return {
    name,
    status: 'ok',
    detail: images
      ? `${dir} (${images} compiled kernel modules)`
      : `${dir} (empty: the first GPU run compiles the kernels, about 15 s)`,
  };
}

/** One line per check: status, name, detail, and the fix under it. */
export function formatDoctor(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = report.checks.flatMap((c) => [
    `${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`,
    ...(c.fix ? [`${''.padEnd(6 + width)}  fix: ${c.fix}`] : []),
  ]);
  const verdict = report.ok
    ? 'This machine can run the main job.'
    : 'This machine cannot run the main job yet: apply the fixes of the failed checks.';
  return [...lines, '', verdict, ''].join('\n');
}
