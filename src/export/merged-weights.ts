/**
 * The weights of base + adapter, one tensor at a time: the base checkpoint's tensors as
 * stored, except the adapted projections, which come back as W + scale * B @ A computed in
 * f32 (scale = alpha / r, or alpha / sqrt(r) for rsLoRA). Nothing holds more than the tensor
 * being read, so every exporter streams.
 *
 * Which W: by default the original (unquantized) base weights — the model most people want
 * to run. With `fromNf4`, the seven layer projections are first NF4-quantized and
 * dequantized exactly as QLoRA training saw them (bitsandbytes' blocks of 64 with double
 * quantization), so the merged model is the one the adapter was trained against.
 */
import { join } from 'node:path';
import { loadModelConfig, type Qwen2Config } from '../model/config.js';
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { PROJECTIONS, type ProjectionName } from '../model/qwen2-linear.js';
import { projectionPrefix } from '../model/qwen2-weights.js';
import { mergeLoraWeight } from '../lora/merge.js';
import { loraScale, peftTensorName } from '../lora/lora.js';
import { ADAPTER_WEIGHTS_FILE, readPeftAdapter, type PeftAdapter } from '../lora/peft.js';
import { nf4Dequantize, nf4Quantize } from '../quant/nf4.js';
import type { DType } from '../tensor/dtype.js';
import { formatShape, numel, toF32 } from '../tensor/tensor.js';
import { UserError } from '../util/errors.js';

export interface MergedWeightsOptions {
  baseDir: string;
  /** PEFT adapter folder; without one the base's own weights come back (exporting a base model). */
  adapterDir?: string;
  /** Merge into NF4-dequantized projections (what QLoRA trained against) instead of the originals. */
  fromNf4?: boolean;
}

export class MergedWeights {
  private readonly merges = new Map<string, { layer: number; p: ProjectionName }>();
  private readonly nf4Names = new Set<string>();

  private constructor(
    readonly baseDir: string,
    readonly config: Qwen2Config,
    private readonly ckpt: Checkpoint,
    readonly adapter: PeftAdapter | null,
    readonly adapterDir: string | undefined,
    readonly fromNf4: boolean,
  ) {
    for (let i = 0; i < config.numLayers; i++) {
      for (const p of PROJECTIONS) {
        const name = `${projectionPrefix(i, p)}.weight`;
        if (fromNf4) this.nf4Names.add(name);
        if (adapter?.config.targetModules.includes(p)) this.merges.set(name, { layer: i, p });
      }
    }
  }

  static open(opts: MergedWeightsOptions): MergedWeights {
    const config = loadModelConfig(opts.baseDir);
    const ckpt = openCheckpoint(opts.baseDir);
    try {
      ckpt.validate(config);
      const adapter = opts.adapterDir !== undefined ? readPeftAdapter(opts.adapterDir, config) : null;
      const merged = new MergedWeights(opts.baseDir, config, ckpt, adapter, opts.adapterDir, opts.fromNf4 ?? false);
      merged.checkAdapterShapes();
      return merged;
    } catch (err) {
      ckpt.close();
      throw err;
    }
  }

  /** Tensor names in the base checkpoint's order. */
  names(): string[] {
    return this.ckpt.names();
  }

  shape(name: string): number[] {
    return [...this.ckpt.info(name).shape];
  }

  /** The dtype the base stores the tensor in. */
  storedDType(name: string): DType {
    return this.ckpt.info(name).dtype;
  }

  /** True when the tensor's values differ from the base file's (merged or NF4 round trip). */
  changes(name: string): boolean {
    return this.merges.has(name) || this.nf4Names.has(name);
  }

  /** The base file's bytes of a tensor (as stored); `into` (long enough) is reused when given. */
  readRaw(name: string, into?: Uint8Array): Uint8Array {
    return this.ckpt.readRaw(name, into);
  }

  /** The tensor's merged values as f32; `into` (long enough) is reused when given. */
  readF32(name: string, into?: Float32Array): Float32Array {
    let w = this.ckpt.readF32(name, undefined, into);
    if (this.nf4Names.has(name)) {
      const shape = this.shape(name);
      w = nf4Dequantize(nf4Quantize(w, shape, { doubleQuant: true }), w);
    }
    const m = this.merges.get(name);
    if (m && this.adapter) {
      const [out, inp] = this.shape(name);
      const a = toF32(this.adapter.tensors[peftTensorName(m.layer, m.p, 'A')]);
      const b = toF32(this.adapter.tensors[peftTensorName(m.layer, m.p, 'B')]);
      mergeLoraWeight(w, a, b, out, inp, this.adapter.config.r, loraScale(this.adapter.config));
    }
    return w;
  }

  /** Elements of the largest tensor (a buffer this long serves every readF32). */
  maxElements(): number {
    return Math.max(...this.names().map((n) => numel(this.shape(n))));
  }

  close(): void {
    this.ckpt.close();
  }

  /** lora_A must be [r, in] and lora_B [out, r] of the base projection's actual [out, in]. */
  private checkAdapterShapes(): void {
    if (!this.adapter || this.adapterDir === undefined) return;
    const file = join(this.adapterDir, ADAPTER_WEIGHTS_FILE);
    const r = this.adapter.config.r;
    const known = new Set<string>();
    for (const [name, { layer, p }] of this.merges) {
      const info = this.ckpt.info(name);
      const [out, inp] = info.shape;
      for (const [which, want] of [
        ['A', [r, inp]],
        ['B', [out, r]],
      ] as const) {
        const tname = peftTensorName(layer, p, which);
        known.add(tname);
        const t = this.adapter.tensors[tname];
        if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1]) {
          throw new UserError(
            `${file}: ${tname} has shape ${formatShape(t.shape)}, but ${name} in ${join(this.baseDir, info.file)} is ${formatShape(info.shape)}, so it must be ${formatShape(want)} (is this adapter for another base model? pass --model)`,
          );
        }
      }
    }
    const extra = Object.keys(this.adapter.tensors).filter((n) => !known.has(n));
    if (extra.length > 0)
      throw new UserError(
        `${file}: ${extra[0]}${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''} matches no weight of the ${this.config.numLayers}-layer base in ${this.baseDir} (is this adapter for another base model? pass --model)`,
      );
  }
}
