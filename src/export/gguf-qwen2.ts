/**
 * The Qwen2 model in llama.cpp's terms: tensor names (gguf-py's TENSOR_NAMES for
 * MODEL_ARCH.QWEN2), the hyperparameter keys convert_hf_to_gguf.py writes, and the ggml type
 * each tensor gets for a file type, following llama.cpp's quantizer (llama-quant.cpp):
 *
 * - 1-D tensors (norms, biases) stay f32 in every file type, as the converter writes them;
 * - f32/f16/bf16: every 2-D weight in that type;
 * - q8_0: every 2-D weight Q8_0;
 * - q4_k_m: Q4_K, except the output matrix (lm_head, or the embedding when tied) Q6_K, and
 *   attn_v and ffn_down Q6_K on the layers `useMoreBits` picks (the first and last eighth and
 *   every third between); a row length that is not a multiple of 256 falls back as llama.cpp
 *   does (Q4_K -> Q5_0, Q6_K -> Q8_0; the output matrix straight to Q8_0).
 */
import type { Qwen2Config } from '../model/config.js';
import type { TensorSource } from '../model/qwen2-weights.js';
import { UserError } from '../util/errors.js';
import { GgmlType, GGML_TYPES } from './gguf-format.js';
import type { GgufFile } from './gguf-reader.js';

export const GGUF_QUANTS = ['f32', 'f16', 'bf16', 'q8_0', 'q4_k_m'] as const;
export type GgufQuant = (typeof GGUF_QUANTS)[number];

export function isGgufQuant(s: string): s is GgufQuant {
  return (GGUF_QUANTS as readonly string[]).includes(s);
}

/** HF tensor name -> GGUF tensor name, or undefined for a tensor llama.cpp has no slot for. */
export function ggufTensorName(hf: string): string | undefined {
  const fixed: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (fixed[hf]) return fixed[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m) return undefined;
  const layer: Record<string, string> = {
    input_layernorm: 'attn_norm',
    post_attention_layernorm: 'ffn_norm',
    'self_attn.q_proj': 'attn_q',
    'self_attn.k_proj': 'attn_k',
    'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output',
    'mlp.gate_proj': 'ffn_gate',
    'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down',
  };
  const part = layer[m[2]];
  return part === undefined ? undefined : `blk.${m[1]}.${part}.${m[3]}`;
}

/** llama.cpp's use_more_bits: the layers that get more bits in the _M mixes. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.floor(layers / 8);
  return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

function fallback(type: GgmlType, ne0: number): GgmlType {
  if (ne0 % GGML_TYPES[type].block === 0) return type;
  const next = type === GgmlType.Q4_K ? GgmlType.Q5_0 : type === GgmlType.Q6_K ? GgmlType.Q8_0 : type;
  return ne0 % GGML_TYPES[next].block === 0 ? next : GgmlType.F16;
}

/**
 * The ggml type of a GGUF tensor of shape `ne` (ne0 first) in a file of `quant`; `tied`: the
 * model has no output.weight (the embedding is the output matrix).
 */
export function ggufTensorType(name: string, ne: readonly number[], quant: GgufQuant, cfg: Qwen2Config): GgmlType {
  if (ne.length < 2 || name.endsWith('_norm.weight') || !name.endsWith('.weight')) return GgmlType.F32;
  switch (quant) {
    case 'f32':
      return GgmlType.F32;
    case 'f16':
      return GgmlType.F16;
    case 'bf16':
      return GgmlType.BF16;
    case 'q8_0':
      return fallback(GgmlType.Q8_0, ne[0]);
    case 'q4_k_m':
      break;
  }
  const isOutput = name === 'output.weight' || (cfg.tieWordEmbeddings && name === 'token_embd.weight');
  if (isOutput) return ne[0] % 256 === 0 ? GgmlType.Q6_K : GgmlType.Q8_0;
  const layer = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(name);
  if (layer && useMoreBits(Number(layer[1]), cfg.numLayers)) return fallback(GgmlType.Q6_K, ne[0]);
  return fallback(GgmlType.Q4_K, ne[0]);
}

/**
 * A Qwen2 model's weights read back from a GGUF (dequantized to f32), by HF name: what
 * uploadQwen2Weights reads, so sqlora can run the very weights a GGUF holds.
 */
export function ggufTensorSource(file: GgufFile): TensorSource {
  return (hf, shape) => {
    const name = ggufTensorName(hf);
    const t = name === undefined ? undefined : file.tensors.get(name);
    if (!t || name === undefined) throw new UserError(`${file.path} has no tensor for ${hf}`);
    const want = [...shape].reverse();
    if (t.ne.length !== want.length || t.ne.some((d, i) => d !== want[i]))
      throw new UserError(`${file.path}: ${name} has ne [${t.ne.join(', ')}], expected [${want.join(', ')}]`);
    return file.readF32(name);
  };
}
