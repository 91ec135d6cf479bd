/**
 * Every CUDA kernel module compiles, checked without a GPU where the CUDA toolkit's nvcc is
 * installed: the same sources NVRTC compiles at run time (with its options: C++17, fused
 * multiply-add), for sm_80, the oldest architecture the backend supports, and sm_90.
 * Skipped, with the reason printed, where nvcc is absent. nvcc accepts a little that NVRTC's
 * JIT mode refuses (a generic lambda in device code, for one), so kernels still need a GPU
 * run of tools/gpu-check/cuda-check.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { KERNEL_MODULES } from '../src/backend/cuda/kernels/modules.js';

const MODULES = Object.values(KERNEL_MODULES);

function nvccMissing(): string | null {
  try {
    execFileSync('nvcc', ['--version'], { stdio: 'ignore' });
    return null;
  } catch (err) {
    return `nvcc not runnable (${(err as Error).message.split('\n')[0]})`;
  }
}

const missing = nvccMissing();
if (missing) console.warn(`backend-cuda-compile: skipping, ${missing}`);
const dir = missing ? '' : mkdtempSync(join(tmpdir(), 'sqlora-nvcc-'));
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(missing !== null)('CUDA kernel modules compile (nvcc, no GPU needed)', () => {
  for (const arch of ['sm_80', 'sm_90']) {
    it(`for ${arch}`, async () => {
      const run = promisify(execFile);
      const failures: string[] = [];
      // Two modules at a time: nvcc is single-threaded and the big modules take ~10 s each.
      const queue = [...MODULES];
      const worker = async (): Promise<void> => {
        for (let mod = queue.shift(); mod; mod = queue.shift()) {
          const file = join(dir, `${mod.name}-${arch}.cu`);
          writeFileSync(file, mod.source);
          try {
            await run('nvcc', [`-arch=${arch}`, '-std=c++17', '--fmad=true', '-cubin', '-o', `${file}.cubin`, file], {
              maxBuffer: 16 << 20,
            });
          } catch (err) {
            failures.push(`${mod.name}: ${String((err as { stderr?: string }).stderr ?? err).slice(0, 2000)}`);
          }
        }
      };
      await Promise.all([worker(), worker()]);
      expect(failures).toEqual([]);
    }, 300_000);
  }
});
