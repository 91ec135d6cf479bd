/**
 * Export speed on the 1.8B shape: a random bf16 checkpoint of Qwen1.5-1.8B's shape (built once,
 * streamed to disk, with the Qwen1.5 tokenizer) and a random r=16 adapter on q,k,v,o, then
 * `exportMerged` (bf16) and `exportGguf` (q4_k_m, and any --quant given) timed end to end.
 *
 *   npx tsx bench/export.ts [--work DIR] [--quant q4_k_m,q8_0] [--skip-merged]
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultTokenizerDir } from '../src/data/modelFiles.js';
import { exportGguf } from '../src/export/gguf-export.js';
import { isGgufQuant } from '../src/export/gguf-qwen2.js';
import { exportMerged } from '../src/export/merged.js';
import { initLora } from '../src/lora/lora.js';
import { writePeftAdapter } from '../src/lora/peft.js';
import { expectQwen2Tensors } from '../src/model/checkpoint.js';
import { modelConfigToJson } from '../src/model/config.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';
import { safetensorsLayout, writeAll } from '../src/tensor/safetensors.js';
import { mixSeed, mulberry32 } from '../src/util/random.js';
import { shapeConfig } from './measure.js';

const { values } = parseArgs({
  options: {
    work: { type: 'string' },
    quant: { type: 'string', default: 'q4_k_m' },
    'skip-merged': { type: 'boolean', default: false },
  },
});
const work = values.work ?? join(tmpdir(), 'sqlora-export-bench-1.8b');
const baseDir = join(work, 'base');
const adapterDir = join(work, 'adapter');
const cfg = { ...shapeConfig('1.8b'), torchDtype: 'bfloat16' };

/** Streams random bf16 weights (std 0.02 uniform, unit norms, zero biases) into model.safetensors. */
function buildBase(): void {
  mkdirSync(baseDir, { recursive: true });
  const specs = expectQwen2Tensors(cfg).filter((s) => !s.optional);
  const entries = Object.fromEntries(specs.map((s) => [s.name, { dtype: 'BF16' as const, shape: s.shape }]));
  const { header, order } = safetensorsLayout(entries, { format: 'pt' });
  const tmp = join(baseDir, 'model.safetensors.partial');
  const fd = openSync(tmp, 'w');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
  writeAll(fd, len);
  writeAll(fd, header);
  const bound = 0.02 * Math.sqrt(3);
  order.forEach((name, k) => {
    const shape = entries[name].shape;
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith('norm.weight')) v.fill(1);
    else if (!name.endsWith('.bias')) {
      const rand = mulberry32(mixSeed(1, k));
      for (let i = 0; i < v.length; i++) v[i] = (2 * rand() - 1) * bound;
    }
    const b = f32ToBf16(v);
    writeAll(fd, new Uint8Array(b.buffer));
  });
  closeSync(fd);
  writeFileSync(join(baseDir, 'config.json'), JSON.stringify(modelConfigToJson(cfg), null, 2) + '\n');
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(defaultTokenizerDir(), f), join(baseDir, f));
  // Renamed last: a half-built checkpoint is never mistaken for a finished one.
  renameSync(tmp, join(baseDir, 'model.safetensors'));
}

function buildAdapter(): void {
  const adapter = initLora(
    cfg,
    { r: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], useRslora: false },
    3,
  );
  const rand = mulberry32(4);
  for (const [name, t] of Object.entries(adapter.tensors)) {
    if (!name.includes('lora_B')) continue;
    const b = t.data as Float32Array;
    for (let i = 0; i < b.length; i++) b[i] = (2 * rand() - 1) * 0.01;
  }
  writePeftAdapter(adapterDir, adapter, { baseModelNameOrPath: baseDir });
}

/**
 * Wall and CPU seconds (user + system) of one export. The machine is shared: CPU time is what
 * the (single-threaded) export itself used, the wall clock includes waiting for a core.
 */
async function timed<T>(
  label: string,
  f: () => Promise<T>,
): Promise<{ seconds: number; cpuSeconds: number; result: T }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const result = await f();
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const cpuSeconds = (c.user + c.system) / 1e6;
  process.stderr.write(`${label}: ${seconds.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU\n`);
  return { seconds, cpuSeconds, result };
}

if (!existsSync(join(baseDir, 'model.safetensors'))) {
  await timed('build random 1.8B-shape bf16 checkpoint', async () => buildBase());
}
if (!existsSync(join(adapterDir, 'adapter_model.safetensors'))) buildAdapter();
const report: Record<string, unknown> = {
  shape: '1.8b',
  baseBytes: statSync(join(baseDir, 'model.safetensors')).size,
  date: new Date().toISOString(),
  loadAverageAtStart: (await import('node:os')).loadavg(),
};
if (!values['skip-merged']) {
  const outDir = join(work, 'merged-bf16');
  rmSync(outDir, { recursive: true, force: true });
  const r = await timed('merged bf16', () => exportMerged({ baseDir, adapterDir, outDir, dtype: 'bf16' }));
  report.mergedBf16Seconds = r.seconds;
  report.mergedBf16CpuSeconds = r.cpuSeconds;
  rmSync(outDir, { recursive: true, force: true });
}
for (const quant of values.quant.split(',')) {
  if (!isGgufQuant(quant)) throw new Error(`unknown quant ${quant}`);
  const outFile = join(work, `model-${quant}.gguf`);
  const r = await timed(`gguf ${quant}`, () => exportGguf({ baseDir, adapterDir, outFile, quant, modelfile: false }));
  report[`gguf_${quant}_seconds`] = r.seconds;
  report[`gguf_${quant}_cpu_seconds`] = r.cpuSeconds;
  report[`gguf_${quant}_bytes`] = r.result.bytes;
  rmSync(outFile, { force: true });
}
process.stdout.write(JSON.stringify(report, null, 2) + '\n');
