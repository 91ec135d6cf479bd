/**
 * Static size of every CUDA kernel, without a GPU: each kernel module compiled by nvcc as NVRTC
 * compiles it at run time (C++17, fused multiply-add), for one architecture; per kernel its
 * machine instructions (the .text section's bytes / 16 on sm_70 and newer), registers and spill
 * bytes (ptxas -v). Fewer instructions in a loop-bound kernel is a lead, not a timing: measure on
 * a GPU (tools/gpu-check/train-profile.ts) before keeping a change.
 *
 *   npx tsx tools/kernel-size.ts [--arch sm_90] [FILTER]     FILTER: a substring of kernel names
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_MODULES } from '../src/backend/cuda/kernels/modules.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { arch: { type: 'string', default: 'sm_90' } },
});
const arch = values.arch as string;
if (!/^sm_[7-9]\d$|^sm_1\d\d$/.test(arch))
  throw new Error(`--arch: expected sm_70 or newer (16-byte instructions), got '${arch}'`);
const filter = positionals[0] ?? '';
const dir = mkdtempSync(join(tmpdir(), 'sqlora-kernel-size-'));
try {
  for (const mod of Object.values(KERNEL_MODULES)) {
    const src = join(dir, `${mod.name}.cu`),
      cubin = `${src}.cubin`;
    writeFileSync(src, mod.source);
    // ptxas -v reports on stderr; execFileSync returns stdout only, so merge them.
    const report = execFileSync(
      'sh',
      ['-c', `nvcc -arch=${arch} -std=c++17 --fmad=true -cubin -Xptxas -v -o "${cubin}" "${src}" 2>&1`],
      { encoding: 'utf8' },
    );
    const regs = new Map<string, string>();
    let current = '';
    for (const line of report.split('\n')) {
      current = /Compiling entry function '(\w+)'/.exec(line)?.[1] ?? current;
      const used = /Used (\d+) registers/.exec(line);
      if (used && current) regs.set(current, used[1]);
      const spill = /(\d+) bytes spill stores/.exec(line);
      if (spill && current && spill[1] !== '0') regs.set(current, `${regs.get(current) ?? '?'}, spills ${spill[1]} B`);
    }
    const sections = execFileSync('readelf', ['-S', '-W', cubin], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    for (const line of sections.split('\n')) {
      const m = /\]\s+\.text\.(\w+)\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+)/.exec(line);
      if (!m || !m[1].includes(filter)) continue;
      console.log(
        `${mod.name.padEnd(16)} ${m[1].padEnd(36)} ${String(parseInt(m[2], 16) / 16).padStart(6)} instructions  ${regs.get(m[1]) ?? '?'} registers`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
