/**
 * The CUDA kernel sources as the host code sees them, checked without a GPU: every kernel the
 * backend launches exists in its module, and signatures are read correctly from the CUDA
 * parameter lists (the launch packing relies on them).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelSignatures } from '../src/backend/cuda/device.js';
import { ATTENTION } from '../src/backend/cuda/kernels/attention.js';
import { ELEMENTWISE } from '../src/backend/cuda/kernels/elementwise.js';
import { FLASH_HEAD_DIMS } from '../src/backend/cuda/kernels/flash-attention.js';
import { LORA_VARIANTS } from '../src/backend/cuda/kernels/lora.js';
import { KERNEL_MODULES as MODULES } from '../src/backend/cuda/kernels/modules.js';
import { ROWS } from '../src/backend/cuda/kernels/rows.js';
const CUDA_DIR = join(import.meta.dirname, '..', 'src', 'backend', 'cuda');

describe('CUDA kernel sources', () => {
  it('reads signatures from CUDA parameter lists', () => {
    const sigs = kernelSignatures(`
      extern "C" __global__ void a(void* out, int dt, const float* x, i64 n, double p, unsigned seed, float s) {}
      extern "C" __global__ void __launch_bounds__(128) b(const int* ids, long long n) {}
      extern "C" __global__ void __cluster_dims__(8, 1, 1) __launch_bounds__(320, 4)
      c(float* losses, int n) {}
      __global__ void notExported(int x) {}`);
    expect(Object.fromEntries(sigs)).toEqual({ a: 'piplduf', b: 'pl', c: 'pi' });
    expect(() => kernelSignatures('extern "C" __global__ void c(short x) {}')).toThrow(
      /unsupported parameter type "short"/,
    );
  });

  it('every module declares its kernels, including the attention head-size variants', () => {
    for (const mod of Object.values(MODULES)) expect(mod.kernels.size, mod.name).toBeGreaterThan(0);
    for (const nj of [1, 2, 4]) {
      expect(ATTENTION.kernels.get(`attn_fwd_${nj}`)).toBe('pip' + 'pipipipiiiiiif');
      expect(ATTENTION.kernels.get(`attn_bwd_dkdv_${nj}`)).toBe('pipipipp' + 'pipipipiiiiiif');
    }
    expect(ELEMENTWISE.kernels.get('convert')).toBe('pipil');
    expect(ROWS.kernels.get('cross_entropy')).toBe('ppippiifip');
  });

  it('every kernel the host code launches exists in the module it names', () => {
    const launched: [string, string][] = [];
    for (const file of readdirSync(CUDA_DIR).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(CUDA_DIR, file), 'utf8');
      for (const [, mod, name] of text.matchAll(/kernel\((\w+), ['`]([\w$]+)/g)) launched.push([mod, name]);
      // this.elementwise('name', ...) launches from the elementwise module.
      for (const [, name] of text.matchAll(/this\.elementwise\('(\w+)'/g)) launched.push(['ELEMENTWISE', name]);
    }
    expect(launched.length).toBeGreaterThan(20);
    for (const [mod, name] of launched) {
      const kernels = MODULES[mod]?.kernels;
      expect(kernels, `module ${mod}`).toBeDefined();
      // Names ending in a template's `${...}`: the head-size variants, or LoRA's (rank, members) ones.
      const variants: readonly (number | string)[] =
        mod === 'FLASH_ATTENTION' ? FLASH_HEAD_DIMS : mod === 'LORA' ? LORA_VARIANTS : [1, 2, 4];
      const names = name.endsWith('_$') ? variants.map((v) => name.slice(0, -1) + v) : [name];
      for (const n of names) expect(kernels?.has(n), `${mod}.${n}`).toBe(true);
    }
  });
});
