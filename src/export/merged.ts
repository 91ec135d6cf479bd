/**
 * `--to merged`: a Hugging Face model folder with the adapter folded in, loadable by
 * transformers/vLLM without PEFT. Tensors stream one at a time from the base checkpoint
 * through the merge into safetensors shards (5 GB each by default, with
 * model.safetensors.index.json as save_pretrained writes it). Unchanged tensors already in
 * the output dtype are copied byte for byte. The folder is built beside its final name and
 * renamed into place at the end.
 */
import { closeSync, copyFileSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointIndexJson, planShards, shardFileName, SINGLE_FILE, INDEX_FILE } from '../model/checkpoint.js';
import { safetensorsLayout, writeAll } from '../tensor/safetensors.js';
import { f32ToBf16, f32ToF16, type DType } from '../tensor/dtype.js';
import { byteLengthOf } from '../tensor/tensor.js';
import { readJsonFile } from '../util/jsonl.js';
import { UserError } from '../util/errors.js';
import { MergedWeights } from './merged-weights.js';
import { commitDir, prepareOutDir, type ExportProgress } from './output.js';

export const MERGED_DTYPES = ['bf16', 'f16', 'f32'] as const;
export type MergedDType = (typeof MERGED_DTYPES)[number];

/** transformers' default max_shard_size ("5GB", decimal). */
export const DEFAULT_SHARD_BYTES = 5e9;

/** Files of the model folder copied as they are (config.json is rewritten for the dtype). */
const COPIED = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
];

export interface ExportMergedOptions {
  baseDir: string;
  adapterDir: string;
  outDir: string;
  /** Storage dtype; default the base's (its config's torch_dtype, else its first weight's). */
  dtype?: MergedDType;
  fromNf4?: boolean;
  /** Shard size limit in bytes (default 5 GB). */
  maxShardBytes?: number;
  /** Replace an existing outDir. */
  overwrite?: boolean;
  onProgress?: ExportProgress;
}

export interface ExportMergedResult {
  outDir: string;
  dtype: MergedDType;
  files: string[];
  totalBytes: number;
  mergedTensors: number;
}

const TORCH_NAME: Record<MergedDType, string> = { bf16: 'bfloat16', f16: 'float16', f32: 'float32' };
const ST_DTYPE: Record<MergedDType, DType> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

function defaultDType(w: MergedWeights): MergedDType {
  const fromConfig = Object.entries(TORCH_NAME).find(([, v]) => v === w.config.torchDtype)?.[0];
  if (fromConfig) return fromConfig as MergedDType;
  const stored = w.storedDType(w.names()[0]);
  return stored === 'BF16' ? 'bf16' : stored === 'F16' ? 'f16' : 'f32';
}

export async function exportMerged(opts: ExportMergedOptions): Promise<ExportMergedResult> {
  const w = MergedWeights.open({ baseDir: opts.baseDir, adapterDir: opts.adapterDir, fromNf4: opts.fromNf4 });
  const tmp = prepareOutDir(opts.outDir, opts.overwrite ?? false);
  try {
    const dtype = opts.dtype ?? defaultDType(w);
    const st = ST_DTYPE[dtype];
    const names = w.names();
    for (const n of names) {
      const stored = w.storedDType(n);
      if (stored !== 'F32' && stored !== 'BF16' && stored !== 'F16')
        throw new UserError(`${n} in ${opts.baseDir} is ${stored}; only float checkpoints can be merged`);
    }
    const sizes = names.map((n) => byteLengthOf(st, w.shape(n)));
    const shards = planShards(sizes, opts.maxShardBytes ?? DEFAULT_SHARD_BYTES);
    const files = shards.length === 1 ? [SINGLE_FILE] : shards.map((_, i) => shardFileName(i, shards.length));
    // One set of buffers for every tensor: fresh ones per tensor cost more in page faults than the copy.
    const buffers = {
      f32: new Float32Array(w.maxElements()),
      half: st === 'F32' ? new Uint16Array(0) : new Uint16Array(w.maxElements()),
      raw: new Uint8Array(w.maxElements() * 4),
    };
    const weightMap: Record<string, string> = {};
    let done = 0;
    for (let s = 0; s < shards.length; s++) {
      const group = shards[s].map((i) => names[i]);
      const entries = Object.fromEntries(group.map((n) => [n, { dtype: st, shape: w.shape(n) }]));
      const { header, order } = safetensorsLayout(entries, { format: 'pt' });
      const fd = openSync(join(tmp, files[s]), 'w');
      try {
        const len = new Uint8Array(8);
        new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
        writeAll(fd, len);
        writeAll(fd, header);
        for (const name of order) {
          writeAll(fd, tensorBytes(w, name, st, buffers));
          weightMap[name] = files[s];
          opts.onProgress?.({ stage: 'merge', done: ++done, total: names.length, item: name });
          // Let a progress bar draw and Ctrl-C land between tensors.
          await new Promise<void>((r) => setImmediate(r));
        }
      } finally {
        closeSync(fd);
      }
    }
    const totalSize = sizes.reduce((a, b) => a + b, 0);
    if (shards.length > 1) writeFileSync(join(tmp, INDEX_FILE), checkpointIndexJson(weightMap, totalSize));
    writeConfig(opts.baseDir, tmp, dtype);
    const copied = COPIED.filter((f) => existsSync(join(opts.baseDir, f)));
    for (const f of copied) copyFileSync(join(opts.baseDir, f), join(tmp, f));
    commitDir(tmp, opts.outDir);
    return {
      outDir: opts.outDir,
      dtype,
      files: ['config.json', ...files, ...(shards.length > 1 ? [INDEX_FILE] : []), ...copied],
      totalBytes: totalSize,
      mergedTensors: names.filter((n) => w.changes(n)).length,
    };
  } catch (err) {
    commitDir(tmp, null);
    throw err;
  } finally {
    w.close();
  }
}

/** One tensor's bytes in the output dtype. */
function tensorBytes(
  w: MergedWeights,
  name: string,
  st: DType,
  buffers: { f32: Float32Array; half: Uint16Array<ArrayBuffer>; raw: Uint8Array },
): Uint8Array {
  if (!w.changes(name) && w.storedDType(name) === st) return w.readRaw(name, buffers.raw);
  const values = w.readF32(name, buffers.f32);
  if (st === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const half = buffers.half.subarray(0, values.length);
  if (st === 'BF16') f32ToBf16(values, half);
  else f32ToF16(values, half);
  return new Uint8Array(half.buffer, half.byteOffset, half.byteLength);
}

/** The base's config.json with the storage dtype updated (under whichever key it uses). */
function writeConfig(baseDir: string, outDir: string, dtype: MergedDType): void {
  const path = join(baseDir, 'config.json');
  const raw = readJsonFile<Record<string, unknown>>(path, 'model config');
  const key = 'dtype' in raw && !('torch_dtype' in raw) ? 'dtype' : 'torch_dtype';
  raw[key] = TORCH_NAME[dtype];
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(raw, null, 2) + '\n');
}
