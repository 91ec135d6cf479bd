/**
 * Qwen2 weights on a backend: read one tensor at a time from a checkpoint (or any name -> f32
 * source), uploaded in the backend's compute dtype; the seven layer projections optionally as
 * NF4 (QLoRA keeps embeddings, norms, biases and lm_head unquantized, as bitsandbytes does).
 */
import type { Backend, Tensor } from '../backend/backend.js';
import { doubleQuantizedScales } from '../quant/nf4.js';
import type { Qwen2Config } from './config.js';
import { expectQwen2Tensors } from './checkpoint.js';
import type { Qwen2LayerWeights } from './qwen2-layer.js';
import { MLP_MODULES, PROJECTIONS, type Linear, type ProjectionName } from './qwen2-linear.js';

export interface Qwen2Weights {
  /** [V, D] */
  embedTokens: Tensor;
  layers: Qwen2LayerWeights[];
  /** Final RMSNorm weight [D]. */
  norm: Tensor;
  /** [V, D]; the same tensor as embedTokens when embeddings are tied. */
  lmHead: Tensor;
}

/**
 * f32 values of a named tensor with the expected shape (throws a UserError otherwise). The array
 * may be reused by the next call: what reads it copies what it keeps (uploads do).
 */
export type TensorSource = (name: string, shape: readonly number[]) => Float32Array;

/** Stores an f32 [out, in] weight on the backend as NF4. */
export type Nf4Quantizer = (be: Backend, values: Float32Array, shape: [number, number]) => Tensor;

export interface UploadOptions {
  /** Store the layer projections as NF4 through this quantizer (see nf4Quantizer). */
  nf4?: Nf4Quantizer;
}

/**
 * QLoRA's quantizer: bitsandbytes NF4 in blocks of 64 with double-quantized scales, the blocks
 * found on the backend's device; the backend keeps the de-double-quantized f32 scales (what the
 * kernels multiply by).
 */
export const nf4Quantizer: Nf4Quantizer = (be, values, shape) => be.quantizeNf4(values, shape, doubleQuantizedScales);

export function projectionPrefix(layer: number, p: ProjectionName): string {
  const block = (MLP_MODULES as readonly string[]).includes(p) ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${p}`;
}

/** Uploads every weight the config implies, reading each once from `read`. */
export function uploadQwen2Weights(
  be: Backend,
  cfg: Qwen2Config,
  read: TensorSource,
  opts: UploadOptions = {},
): Qwen2Weights {
  const shapes = new Map(expectQwen2Tensors(cfg).map((s) => [s.name, s.shape]));
  const dense = (name: string): Tensor => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`no tensor ${name} in a Qwen2 model`);
    return be.upload(read(name, shape), shape, be.computeDType);
  };
  const weight = (name: string): Tensor => {
    const shape = shapes.get(name) as [number, number];
    if (!opts.nf4) return dense(name);
    return opts.nf4(be, read(name, shape), shape);
  };
  const embedTokens = dense('model.embed_tokens.weight');
  const layers: Qwen2LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const proj = {} as Record<ProjectionName, Linear>;
    for (const p of PROJECTIONS) {
      const prefix = projectionPrefix(i, p);
      // expectQwen2Tensors lists the biases the config implies.
      proj[p] = {
        weight: weight(`${prefix}.weight`),
        bias: shapes.has(`${prefix}.bias`) ? dense(`${prefix}.bias`) : null,
      };
    }
    layers.push({
      inputLayernorm: dense(`model.layers.${i}.input_layernorm.weight`),
      postAttentionLayernorm: dense(`model.layers.${i}.post_attention_layernorm.weight`),
      proj,
    });
  }
  const norm = dense('model.norm.weight');
  const lmHead = cfg.tieWordEmbeddings ? embedTokens : dense('lm_head.weight');
  return { embedTokens, layers, norm, lmHead };
}

/** Frees every weight tensor once (a tied lm_head is the embedding). */
export function freeQwen2Weights(be: Backend, w: Qwen2Weights): void {
  const all = new Set<Tensor>([w.embedTokens, w.norm, w.lmHead]);
  for (const l of w.layers) {
    all.add(l.inputLayernorm);
    all.add(l.postAttentionLayernorm);
    for (const p of PROJECTIONS) {
      all.add(l.proj[p].weight);
      const b = l.proj[p].bias;
      if (b) all.add(b);
    }
  }
  for (const t of all) be.free(t);
}
