/**
 * The CUDA emulator (tools/cuda-emulator) itself: the tensor-core operations against a direct
 * product, the defects it is there to expose (a read of a cp.async destination before its
 * wait, threads waiting at barriers that cannot complete, a misaligned 16-byte load), and thread
 * block clusters (the backend's sm_90 cross-entropy). Always on the emulator, never on a GPU (the deadlock would
 * hang one); skips, saying why, without g++.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { CudaBackend } from '../src/backend/cuda/cuda-backend.js';
import { CudaDevice, kernelModule } from '../src/backend/cuda/device.js';
import { COMMON_CUDA } from '../src/backend/cuda/kernels/common.js';
import { TENSOR_CORE_CUDA } from '../src/backend/cuda/kernels/tensor-core.js';
import { bf16ToF32, f32ToBf16 } from '../src/tensor/dtype.js';
import { compareOutputs, PARITY_CASES, toleranceFor } from './helpers/backend-parity.js';
import { buildCudaEmulator } from '../tools/cuda-emulator/build.js';

let unavailable: string | null = null;
try {
  process.env.SQLORA_CUDA_EMULATOR = buildCudaEmulator();
} catch (err) {
  unavailable = (err as Error).message.split('\n')[0];
  console.warn(`cuda-emulator: skipping, the emulator does not build (${unavailable})`);
}

const MODULE = kernelModule(
  'emulator-test',
  `${COMMON_CUDA}${TENSOR_CORE_CUDA}
/** One warp: c[16 x 8] = a[16 x 16] b[16 x 8], a row-major, b stored [n][k], through shared memory and ldmatrix. */
extern "C" __global__ void mma_tile(float* c, const u16* a, const u16* bt) {
  __shared__ __align__(16) u16 sa[16 * 16], sb[16 * 16];
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) { sa[i] = a[i]; sb[i] = i < 128 ? bt[i] : 0; }
  __syncthreads();
  unsigned af[4], bf[4];
  frag_a(af, sa, 16, 0, 0, lane);
  frag_b_nk(bf, sb, 16, 0, 0, lane);
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  mma_bf16(acc, af, bf[0], bf[1]);
  const int g = lane >> 2, t = lane & 3;
  c[g * 8 + 2 * t] = acc[0]; c[g * 8 + 2 * t + 1] = acc[1];
  c[(g + 8) * 8 + 2 * t] = acc[2]; c[(g + 8) * 8 + 2 * t + 1] = acc[3];
}
/** Copies 16 bytes a thread by cp.async and stores what shared memory holds before (early) and after the wait. */
extern "C" __global__ void async_copy(unsigned* early, unsigned* late, const unsigned* src) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned* s = (unsigned*)smem_raw;
  cp_async16(s + 4 * threadIdx.x, src + 4 * threadIdx.x, 16);
  cp_commit();
  early[threadIdx.x] = s[4 * threadIdx.x];
  cp_wait<0>();
  late[threadIdx.x] = s[4 * threadIdx.x];
}
/** Half a warp shuffles while the other half waits at __syncthreads: a deadlock. */
extern "C" __global__ void divergent(float* out) {
  float v = threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}
`,
);

describe.skipIf(unavailable !== null)('the CUDA emulator', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = new CudaDevice();
  });
  const upload = (data: ArrayBufferView): number => {
    const block = dev.allocator.alloc(data.byteLength);
    dev.upload(block.ptr, data);
    return block.ptr;
  };
  const download = <T extends Float32Array | Uint32Array>(out: T, ptr: number): T => {
    dev.download(out, ptr);
    dev.synchronize();
    return out;
  };

  it('computes mma.sync m16n8k16 from ldmatrix fragments as the product of the tiles', () => {
    const a = bf16ToF32(f32ToBf16(Float32Array.from({ length: 256 }, (_, i) => ((i * 37) % 17) / 8 - 1)));
    const bt = bf16ToF32(f32ToBf16(Float32Array.from({ length: 128 }, (_, i) => ((i * 11) % 13) / 4 - 1.5)));
    const c = dev.allocator.alloc(128 * 4).ptr;
    dev.launch(dev.kernel(MODULE, 'mma_tile'), [1], 32, 0, [c, upload(f32ToBf16(a)), upload(f32ToBf16(bt))]);
    const got = download(new Float32Array(128), c);
    const want = Float32Array.from({ length: 128 }, (_, i) => {
      let s = 0;
      for (let k = 0; k < 16; k++) s += a[Math.floor(i / 8) * 16 + k] * bt[(i % 8) * 16 + k];
      return s;
    });
    for (let i = 0; i < 128; i++) expect(got[i], `c[${Math.floor(i / 8)}][${i % 8}]`).toBeCloseTo(want[i], 4);
  });

  it('lands cp.async copies at their wait: an earlier read sees the never-written fill (0xff bytes)', () => {
    const src = Uint32Array.from({ length: 4 * 64 }, (_, i) => i + 1);
    const early = dev.allocator.alloc(64 * 4).ptr,
      late = dev.allocator.alloc(64 * 4).ptr;
    dev.launch(dev.kernel(MODULE, 'async_copy'), [1], 64, 64 * 16, [early, late, upload(src)]);
    expect(Array.from(download(new Uint32Array(64), early))).toEqual(new Array(64).fill(0xffffffff));
    expect(Array.from(download(new Uint32Array(64), late))).toEqual(Array.from({ length: 64 }, (_, i) => 4 * i + 1));
  });

  it('runs the blocks of a cluster together: at compute capability 9.0 the cross-entropy (a cluster a row) matches the CPU', () => {
    const c = PARITY_CASES.find((p) => p.name.startsWith('crossEntropy'));
    if (!c) throw new Error('no crossEntropy parity case');
    process.env.SQLORA_CUDA_EMULATOR_CC = '90';
    try {
      const be = new CudaBackend({ computeDType: 'bf16' });
      expect(be.device.cc).toBe(90);
      const ref = c.run(new CpuBackend(), 'f32');
      for (const r of compareOutputs(c.run(be, 'bf16'), ref))
        expect(r.rel, r.output).toBeLessThanOrEqual(toleranceFor(c, 'bf16'));
    } finally {
      delete process.env.SQLORA_CUDA_EMULATOR_CC;
    }
  });

  it('stops at a misaligned 16-byte load, as a GPU faults, naming the line of the kernel source', () => {
    // In a process of its own: the sanitizer's report ends it.
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-emulator-'));
    const src = (f: string): string => JSON.stringify(resolve(import.meta.dirname, '..', f));
    writeFileSync(
      join(dir, 'misaligned.ts'),
      `
      import { CudaDevice, kernelModule } from ${src('src/backend/cuda/device.ts')};
      const mod = kernelModule('misaligned', 'extern "C" __global__ void load16(unsigned* out, const unsigned char* src) {\\n' +
        '  out[threadIdx.x] = ((const uint4*)(src + 4))->x;\\n}\\n');
      const dev = new CudaDevice();
      dev.launch(dev.kernel(mod, 'load16'), [1], 32, 0, [dev.allocator.alloc(128).ptr, dev.allocator.alloc(64).ptr]);
      dev.synchronize();
      console.log('no fault');
    `,
    );
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(dir, 'misaligned.ts')], {
      encoding: 'utf8',
      env: process.env,
    });
    expect(run.stdout).not.toContain('no fault');
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/misaligned\.cu:2:\d+: runtime error: .*misaligned address/);
  });

  it('with SQLORA_CUDA_EMULATOR_SKIP=1 checks launches and products but runs neither (for profiling the host)', () => {
    // In a process of its own: the setting is read once per process.
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-emulator-'));
    const src = (f: string): string => JSON.stringify(resolve(import.meta.dirname, '..', f));
    writeFileSync(
      join(dir, 'skip.ts'),
      `
      import { CudaBackend } from ${src('src/backend/cuda/cuda-backend.ts')};
      const be = new CudaBackend({ computeDType: 'f32' });
      const a = be.upload(Float32Array.of(1, 2, 3, 4), [2, 2]), out = be.upload(Float32Array.of(9, 9, 9, 9), [2, 2]);
      be.matmul(out, a, a);
      be.add(a, a, a);
      console.log(JSON.stringify([Array.from(be.download(out)), Array.from(be.download(a))]));
      try { be.matmul(out, a, be.alloc([3, 2])); } catch (err) { console.log((err as Error).message); }
    `,
    );
    const run = (skip: string): string[] => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(dir, 'skip.ts')], {
        encoding: 'utf8',
        env: { ...process.env, SQLORA_CUDA_EMULATOR_SKIP: skip },
      });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim().split('\n');
    };
    const [skipped, refused] = run('1');
    expect(JSON.parse(skipped)).toEqual([
      [9, 9, 9, 9],
      [1, 2, 3, 4],
    ]);
    expect(refused).toMatch(/matmul/);
    expect(JSON.parse(run('0')[0])).toEqual([
      [7, 10, 15, 22],
      [2, 4, 6, 8],
    ]);
  });

  it('reports threads waiting at barriers that cannot complete as a failed launch', () => {
    const out = dev.allocator.alloc(64 * 4).ptr;
    expect(() => dev.launch(dev.kernel(MODULE, 'divergent'), [1], 64, 0, [out])).toThrow(
      /launching divergent failed: CUDA_ERROR_LAUNCH_FAILED \(emulator: divergent: deadlock in block 0,0,0/,
    );
  });
});
