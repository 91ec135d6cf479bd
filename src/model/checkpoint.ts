/**
 * A model checkpoint directory in the Hugging Face layout: config.json plus either one
 * `model.safetensors` or shards listed by `model.safetensors.index.json` (`weight_map`:
 * tensor name -> shard file). Tensors are read one at a time, on demand, so loading a
 * 3.7 GB model needs the memory of the converted weights only.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { SafetensorsFile, writeSafetensors, type SafetensorsTensorInfo } from '../tensor/safetensors.js';
import { formatShape, type HostTensor } from '../tensor/tensor.js';
import { modelConfigToJson, type Qwen2Config } from './config.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
const SHARD_FILE = /^model-\d{5}-of-\d{5}\.safetensors$/;

export interface TensorSpec {
  name: string;
  shape: number[];
  /** Absent from a checkpoint without error (lm_head.weight when embeddings are tied). */
  optional?: boolean;
}

/** Names and shapes (out_features first, as torch Linear stores them) of a Qwen2 checkpoint. */
export function expectQwen2Tensors(c: Qwen2Config): TensorSpec[] {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize] }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    specs.push(
      { name: `${p}self_attn.q_proj.weight`, shape: [q, c.hiddenSize] },
      { name: `${p}self_attn.k_proj.weight`, shape: [kv, c.hiddenSize] },
      { name: `${p}self_attn.v_proj.weight`, shape: [kv, c.hiddenSize] },
    );
    if (c.attentionBias) {
      specs.push(
        { name: `${p}self_attn.q_proj.bias`, shape: [q] },
        { name: `${p}self_attn.k_proj.bias`, shape: [kv] },
        { name: `${p}self_attn.v_proj.bias`, shape: [kv] },
      );
    }
    specs.push(
      { name: `${p}self_attn.o_proj.weight`, shape: [c.hiddenSize, q] },
      { name: `${p}mlp.gate_proj.weight`, shape: [c.intermediateSize, c.hiddenSize] },
      { name: `${p}mlp.up_proj.weight`, shape: [c.intermediateSize, c.hiddenSize] },
      { name: `${p}mlp.down_proj.weight`, shape: [c.hiddenSize, c.intermediateSize] },
      { name: `${p}input_layernorm.weight`, shape: [c.hiddenSize] },
      { name: `${p}post_attention_layernorm.weight`, shape: [c.hiddenSize] },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [c.hiddenSize] });
  specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize], optional: c.tieWordEmbeddings });
  return specs;
}

export interface CheckpointTensorInfo extends SafetensorsTensorInfo {
  /** The shard file holding the tensor. */
  file: string;
}

/** An open checkpoint; shards are opened lazily and kept open until close(). */
export class Checkpoint {
  private readonly open = new Map<string, SafetensorsFile>();

  private constructor(
    readonly dir: string,
    /** Tensor name -> shard file name (relative to dir). */
    private readonly weightMap: Map<string, string>,
  ) {}

  static open(dir: string): Checkpoint {
    if (!existsSync(dir)) throw new UserError(`model directory not found: ${dir}`);
    // Same precedence as transformers: a single model.safetensors wins over an index.
    if (existsSync(join(dir, SINGLE_FILE))) {
      const ckpt = new Checkpoint(dir, new Map());
      const file = ckpt.shard(SINGLE_FILE);
      for (const name of file.names()) ckpt.weightMap.set(name, SINGLE_FILE);
      return ckpt;
    }
    const indexPath = join(dir, INDEX_FILE);
    if (existsSync(indexPath)) return Checkpoint.fromIndex(dir, indexPath);
    throw new UserError(
      `no weights in ${dir}: expected ${SINGLE_FILE} or ${INDEX_FILE} (only safetensors checkpoints are supported)`,
    );
  }

  private static fromIndex(dir: string, indexPath: string): Checkpoint {
    const index = readJsonFile<{ weight_map?: unknown }>(indexPath, 'checkpoint index');
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map))
      throw new UserError(`${indexPath}: weight_map is missing or not an object`);
    const weightMap = new Map<string, string>();
    for (const [name, file] of Object.entries(map)) {
      // A shard name must stay inside the checkpoint directory.
      if (typeof file !== 'string' || basename(file) !== file || !file.endsWith('.safetensors')) {
        throw new UserError(
          `${indexPath}: weight_map["${name}"] must name a .safetensors file in the same folder, got ${JSON.stringify(file)}`,
        );
      }
      weightMap.set(name, file);
    }
    const ckpt = new Checkpoint(dir, weightMap);
    for (const file of new Set(weightMap.values())) {
      if (!existsSync(join(dir, file)))
        throw new UserError(`${indexPath} lists shard ${file}, which is missing from ${dir}`);
    }
    return ckpt;
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  /** Shard file names, in first-use order. */
  files(): string[] {
    return [...new Set(this.weightMap.values())];
  }

  info(name: string): CheckpointTensorInfo {
    const file = this.weightMap.get(name);
    if (file === undefined) throw new UserError(`checkpoint ${this.dir} has no tensor ${name}`);
    const shard = this.shard(file);
    if (!shard.has(name))
      throw new UserError(`${join(this.dir, INDEX_FILE)} maps ${name} to ${file}, but that file does not contain it`);
    return { ...shard.info(name), file };
  }

  /** The tensor as f32; with `shape`, a different stored shape is a UserError naming both. */
  readF32(name: string, shape?: readonly number[], into?: Float32Array): Float32Array {
    const info = this.info(name);
    if (shape) this.checkShape(name, info, shape);
    return this.shard(info.file).readF32(name, undefined, into);
  }

  /** The tensor's stored bytes, into `into` when given (see SafetensorsFile.readRaw). */
  readRaw(name: string, into?: Uint8Array): Uint8Array {
    const info = this.info(name);
    return this.shard(info.file).readRaw(name, into);
  }

  /** The tensor with its stored dtype (raw little-endian bytes). */
  read(name: string, shape?: readonly number[]): HostTensor {
    const info = this.info(name);
    if (shape) this.checkShape(name, info, shape);
    return this.shard(info.file).read(name);
  }

  /**
   * Checks that every tensor the config implies is present with the right shape, reporting
   * all problems at once (a wrong config usually breaks many tensors the same way).
   */
  validate(config: Qwen2Config): void {
    const problems: string[] = [];
    for (const spec of expectQwen2Tensors(config)) {
      if (!this.has(spec.name)) {
        if (!spec.optional) problems.push(`missing ${spec.name} (expected shape ${formatShape(spec.shape)})`);
        continue;
      }
      const info = this.info(spec.name);
      if (!sameShape(info.shape, spec.shape)) {
        problems.push(
          `${spec.name} in ${info.file} has shape ${formatShape(info.shape)}, expected ${formatShape(spec.shape)}`,
        );
      }
    }
    if (problems.length === 0) return;
    const shown = problems.slice(0, 5).join('; ');
    const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : '';
    throw new UserError(`checkpoint ${this.dir} does not match its config.json: ${shown}${more}`);
  }

  close(): void {
    for (const f of this.open.values()) f.close();
    this.open.clear();
  }

  private checkShape(name: string, info: CheckpointTensorInfo, shape: readonly number[]): void {
    if (!sameShape(info.shape, shape)) {
      throw new UserError(
        `tensor ${name} in ${join(this.dir, info.file)} has shape ${formatShape(info.shape)}, expected ${formatShape(shape)}`,
      );
    }
  }

  private shard(file: string): SafetensorsFile {
    let f = this.open.get(file);
    if (!f) {
      f = SafetensorsFile.open(join(this.dir, file));
      this.open.set(file, f);
    }
    return f;
  }
}

export function openCheckpoint(dir: string): Checkpoint {
  return Checkpoint.open(dir);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export interface SaveCheckpointOptions {
  /** Split into shards of at most this many bytes (plus one tensor), with an index file. */
  maxShardBytes?: number;
}

/**
 * Writes config.json and the tensors in the layout transformers' save_pretrained produces
 * (metadata {"format": "pt"}; shards `model-0000i-of-0000n.safetensors` + index when split).
 */
export function saveCheckpoint(
  dir: string,
  config: Qwen2Config,
  tensors: Record<string, HostTensor>,
  opts: SaveCheckpointOptions = {},
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(modelConfigToJson(config), null, 2) + '\n');
  const names = Object.keys(tensors);
  const shards = planShards(
    names.map((n) => tensors[n].data.byteLength),
    opts.maxShardBytes,
  ).map((group) => group.map((i) => names[i]));
  const meta = { format: 'pt' };
  // Never leave the other layout behind: a stale file would shadow or confuse the new one.
  for (const f of readdirSync(dir)) if (SHARD_FILE.test(f)) rmSync(join(dir, f));
  if (shards.length === 1) {
    rmSync(join(dir, INDEX_FILE), { force: true });
    writeSafetensors(join(dir, SINGLE_FILE), tensors, meta);
    return;
  }
  rmSync(join(dir, SINGLE_FILE), { force: true });
  const weightMap: Record<string, string> = {};
  shards.forEach((group, i) => {
    const file = shardFileName(i, shards.length);
    writeSafetensors(join(dir, file), Object.fromEntries(group.map((n) => [n, tensors[n]])), meta);
    for (const n of group) weightMap[n] = file;
  });
  const totalSize = names.reduce((s, n) => s + tensors[n].data.byteLength, 0);
  writeFileSync(join(dir, INDEX_FILE), checkpointIndexJson(weightMap, totalSize));
}

/**
 * Groups tensors (by index, in order) into shards of at most `maxShardBytes` each, as
 * transformers' save_pretrained does: a tensor that would overflow the current shard starts
 * the next one (a tensor larger than the limit gets a shard of its own). One group without a limit.
 */
export function planShards(sizes: readonly number[], maxShardBytes?: number): number[][] {
  const shards: number[][] = [[]];
  let size = 0;
  sizes.forEach((bytes, i) => {
    if (maxShardBytes !== undefined && size > 0 && size + bytes > maxShardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(i);
    size += bytes;
  });
  return shards;
}

/** transformers' shard name: model-00001-of-00003.safetensors (1-based). */
export function shardFileName(index: number, count: number): string {
  const pad = (i: number): string => String(i).padStart(5, '0');
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/** model.safetensors.index.json: total bytes and the weight map, sorted by tensor name. */
export function checkpointIndexJson(weightMap: Record<string, string>, totalSize: number): string {
  const sortedMap = Object.fromEntries(
    Object.keys(weightMap)
      .sort()
      .map((k) => [k, weightMap[k]]),
  );
  return JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sortedMap }, null, 2) + '\n';
}
