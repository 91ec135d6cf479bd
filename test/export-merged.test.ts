/**
 * `exportMerged`: the folder loads as a plain model whose logits equal base + adapter, shards
 * with an index when told to, stores the dtype asked for, copies the tokenizer side, honours
 * rsLoRA and --from-nf4, and refuses bad input without leaving a folder behind.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { exportMerged } from '../src/export/merged.js';
import { LoraAdapter, peftTensorName } from '../src/lora/lora.js';
import { readPeftAdapter, writePeftAdapter } from '../src/lora/peft.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { nf4Dequantize, nf4Quantize } from '../src/quant/nf4.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';
import { SafetensorsFile } from '../src/tensor/safetensors.js';
import { f32Tensor, toF32 } from '../src/tensor/tensor.js';
import { UserError } from '../src/util/errors.js';
import { buildExportFixture, type ExportFixture } from './helpers/export-model.js';
import {
  adapterDir,
  haveTinyFixtures,
  maxAbsDiff as maxAbsDiffWhere,
  MISSING_FIXTURES,
  modelDir,
  readReference,
  VARIANTS,
} from './helpers/tiny-fixture.js';

const be = new CpuBackend();
let fx: ExportFixture;
const ids = Int32Array.from([3, 17, 250, 999, 1200, 42, 7, 300]);

function logits(m: Qwen2Model): Float32Array {
  const t = m.forward({ batchSize: 1, seqLen: ids.length, inputIds: ids });
  const out = Float32Array.from(be.download(t) as Float32Array);
  be.free(t);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** W + scale * B @ A in f64, independently of the exporter. */
function expectedMerge(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inp: number,
  r: number,
  scale: number,
): Float64Array {
  const res = Float64Array.from(w);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inp; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += b[o * r + k] * a[k * inp + i];
      res[o * inp + i] += scale * s;
    }
  return res;
}

beforeAll(() => {
  fx = buildExportFixture({ hiddenSize: 128 });
});

describe('exportMerged', () => {
  it('writes shards + index whose model gives base + adapter’s logits (f32, within 1e-5)', async () => {
    const outDir = join(fx.root, 'merged-f32');
    const events: number[] = [];
    const r = await exportMerged({
      baseDir: fx.baseDir,
      adapterDir: fx.adapterDir,
      outDir,
      dtype: 'f32',
      maxShardBytes: 600_000,
      onProgress: (e) => events.push(e.done),
    });
    const shards = readdirSync(outDir).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(1);
    expect(shards).toContain(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const index = JSON.parse(readFileSync(join(outDir, 'model.safetensors.index.json'), 'utf8'));
    const ckpt = openCheckpoint(fx.baseDir);
    expect(Object.keys(index.weight_map).sort()).toEqual(ckpt.names().sort());
    ckpt.close();
    expect(index.metadata.total_size).toBe(r.totalBytes);
    expect(r.mergedTensors).toBe(2 * 5);
    expect(events.at(-1)).toBe(Object.keys(index.weight_map).length);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
      expect(readFileSync(join(outDir, f), 'utf8')).toBe(readFileSync(join(fx.baseDir, f), 'utf8'));
    expect(JSON.parse(readFileSync(join(outDir, 'config.json'), 'utf8')).torch_dtype).toBe('float32');

    const merged = logits(Qwen2Model.load(outDir, be));
    const base = Qwen2Model.load(fx.baseDir, be);
    const plain = logits(base);
    base.setLora(LoraAdapter.upload(be, base.config, readPeftAdapter(fx.adapterDir, base.config)));
    const adapted = logits(base);
    expect(maxAbsDiff(merged, adapted)).toBeLessThan(1e-5);
    expect(maxAbsDiff(plain, adapted)).toBeGreaterThan(0.1);
    // No temporary folder left beside the result.
    expect(readdirSync(fx.root).filter((f) => f.includes('partial'))).toEqual([]);
  });

  it('stores bf16 as the f32 merge rounded to nearest even, untouched tensors byte for byte', async () => {
    const outDir = join(fx.root, 'merged-bf16');
    await exportMerged({ baseDir: fx.baseDir, adapterDir: fx.adapterDir, outDir, dtype: 'bf16' });
    expect(existsSync(join(outDir, 'model.safetensors.index.json'))).toBe(false);
    const out = SafetensorsFile.open(join(outDir, 'model.safetensors'));
    const base = SafetensorsFile.open(join(fx.baseDir, 'model.safetensors'));
    const adapter = readPeftAdapter(fx.adapterDir);
    const name = 'model.layers.1.self_attn.v_proj.weight';
    const [o, i] = base.info(name).shape;
    const want = expectedMerge(
      base.readF32(name),
      toF32(adapter.tensors[peftTensorName(1, 'v_proj', 'A')]),
      toF32(adapter.tensors[peftTensorName(1, 'v_proj', 'B')]),
      o,
      i,
      8,
      16 / 8,
    );
    const got = new Uint16Array(out.readRaw(name).buffer);
    const rounded = f32ToBf16(Float32Array.from(want));
    let off = 0;
    for (let k = 0; k < got.length; k++) if (got[k] !== rounded[k]) off++;
    // f32 accumulation vs f64 may flip a rounding of a value on a bf16 midpoint, nothing more.
    expect(off).toBeLessThan(got.length / 1000);
    const norm = 'model.layers.0.input_layernorm.weight';
    expect(out.info(norm).dtype).toBe('BF16');
    expect(Array.from(toF32(out.read(norm)))).toEqual(Array.from(base.readF32(norm)));
    out.close();
    base.close();
  });

  it('scales an rsLoRA adapter by alpha / sqrt(r)', async () => {
    const adapter = readPeftAdapter(fx.adapterDir);
    const rsDir = join(fx.root, 'adapter-rslora');
    writePeftAdapter(rsDir, { ...adapter, config: { ...adapter.config, useRslora: true } });
    const outDir = join(fx.root, 'merged-rslora');
    await exportMerged({ baseDir: fx.baseDir, adapterDir: rsDir, outDir, dtype: 'f32' });
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const base = SafetensorsFile.open(join(fx.baseDir, 'model.safetensors'));
    const [o, i] = base.info(name).shape;
    const want = expectedMerge(
      base.readF32(name),
      toF32(adapter.tensors[peftTensorName(0, 'q_proj', 'A')]),
      toF32(adapter.tensors[peftTensorName(0, 'q_proj', 'B')]),
      o,
      i,
      8,
      16 / Math.sqrt(8),
    );
    const got = SafetensorsFile.open(join(outDir, 'model.safetensors')).readF32(name);
    expect(maxAbsDiff(got, Float32Array.from(want))).toBeLessThan(1e-6);
    base.close();
  });

  it('--from-nf4 merges into the NF4-dequantized projections', async () => {
    const outDir = join(fx.root, 'merged-nf4');
    await exportMerged({ baseDir: fx.baseDir, adapterDir: fx.adapterDir, outDir, dtype: 'f32', fromNf4: true });
    const base = SafetensorsFile.open(join(fx.baseDir, 'model.safetensors'));
    const out = SafetensorsFile.open(join(outDir, 'model.safetensors'));
    // up_proj is not adapted: it is exactly the NF4 round trip; the embedding is untouched.
    const up = 'model.layers.0.mlp.up_proj.weight';
    const w = base.readF32(up);
    expect(Array.from(out.readF32(up))).toEqual(Array.from(nf4Dequantize(nf4Quantize(w, base.info(up).shape))));
    const emb = 'model.embed_tokens.weight';
    expect(Array.from(out.readF32(emb))).toEqual(Array.from(base.readF32(emb)));
    base.close();
    out.close();
  });

  it('refuses an adapter whose shapes do not match the base, naming the file and tensor, and leaves nothing', async () => {
    const adapter = readPeftAdapter(fx.adapterDir);
    const name = peftTensorName(1, 'k_proj', 'B');
    const badDir = join(fx.root, 'adapter-bad');
    const [out] = adapter.tensors[name].shape;
    writePeftAdapter(badDir, {
      ...adapter,
      tensors: { ...adapter.tensors, [name]: f32Tensor([out / 2, 8], new Float32Array((out / 2) * 8)) },
    });
    const outDir = join(fx.root, 'merged-bad');
    const err = await exportMerged({ baseDir: fx.baseDir, adapterDir: badDir, outDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(join(badDir, 'adapter_model.safetensors'));
    expect((err as Error).message).toContain(`${name} has shape [${out / 2}, 8]`);
    expect((err as Error).message).toContain(
      `model.layers.1.self_attn.k_proj.weight in ${join(fx.baseDir, 'model.safetensors')}`,
    );
    expect(existsSync(outDir)).toBe(false);
  });

  it('refuses a non-empty --out and an unwritable one', async () => {
    const full = join(fx.root, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'keep.txt'), 'x');
    await expect(exportMerged({ baseDir: fx.baseDir, adapterDir: fx.adapterDir, outDir: full })).rejects.toThrow(
      /already exists and is not empty/,
    );
    expect(readdirSync(full)).toEqual(['keep.txt']);
    const locked = join(fx.root, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o500);
    try {
      // root ignores permission bits; a path under a file is unwritable for everyone.
      const under = process.getuid?.() === 0 ? join(full, 'keep.txt', 'out') : join(locked, 'out');
      await expect(exportMerged({ baseDir: fx.baseDir, adapterDir: fx.adapterDir, outDir: under })).rejects.toThrow(
        /cannot write to/,
      );
    } finally {
      chmodSync(locked, 0o700);
    }
  });
});

if (!haveTinyFixtures) console.warn(`export-merged: skipping the HF fixtures: ${MISSING_FIXTURES}`);

describe.skipIf(!haveTinyFixtures)('exportMerged on the HF fixtures', () => {
  for (const v of VARIANTS) {
    it(`${v}: the merged PEFT adapter reproduces PEFT's LoRA logits (transformers 5.17, f32)`, async () => {
      const ref = readReference(v);
      const out = join(mkdtempSync(join(tmpdir(), 'sqlora-merged-')), 'model');
      await exportMerged({ baseDir: modelDir(v), adapterDir: adapterDir(v), outDir: out, dtype: 'f32' });
      const [B, T] = ref.shape('right.input_ids');
      const mask = ref.ints('right.attention_mask');
      const got = be.download(
        Qwen2Model.load(out, be).forward({
          batchSize: B,
          seqLen: T,
          inputIds: ref.ints('right.input_ids'),
          attentionMask: mask,
        }),
      );
      const V = got.length / (B * T);
      expect(maxAbsDiffWhere(got, ref.floats('right.lora_logits'), (i) => mask[Math.floor(i / V)] === 1)).toBeLessThan(
        1e-4,
      );
    });
  }
});
