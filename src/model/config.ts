/**
 * config.json and generation_config.json of Qwen2-family checkpoints (Qwen1.5, Qwen2, Qwen2.5),
 * plus Llama-style configs that share the same decoder layout.
 *
 * Two config.json forms exist: the classic one (`rope_theta` at top level, `torch_dtype`) and
 * the transformers >= 5 one (`rope_parameters: {rope_type, rope_theta}`, `dtype`). Fields the
 * model shape depends on are required; the rest take transformers' own defaults, so a config
 * that loads there loads here with the same meaning. Anything we would silently compute wrong
 * (rope scaling, other activations, biases we do not model) is refused with a UserError.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

export type ModelType = 'qwen2' | 'llama';

export interface Qwen2Config {
  modelType: ModelType;
  architectures: string[];
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Biases on q/k/v projections (always for Qwen2; never for the Llama configs we accept). */
  attentionBias: boolean;
  hiddenAct: 'silu';
  /** Storage dtype the weights were published in ('bfloat16' for Qwen), if stated. */
  torchDtype: string | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /**
   * Sliding-window attention (Qwen2): when useSlidingWindow, layers at index >= maxWindowLayers
   * attend to the last slidingWindow positions only. Off in every published Qwen2 config.
   */
  useSlidingWindow: boolean;
  slidingWindow: number | null;
  maxWindowLayers: number | null;
}

const SUPPORTED_ARCHITECTURES: Record<ModelType, string> = { qwen2: 'Qwen2ForCausalLM', llama: 'LlamaForCausalLM' };

export function loadModelConfig(dir: string): Qwen2Config {
  const path = join(dir, 'config.json');
  return parseModelConfig(readJsonFile(path, 'model config'), path);
}

/** Validates a parsed config.json; `path` names the file in error messages. */
export function parseModelConfig(json: unknown, path: string): Qwen2Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new UserError(`${path}: expected a JSON object`);
  const raw = json as Record<string, unknown>;
  const fail = (field: string, why: string): UserError => new UserError(`${path}: ${field} ${why}`);

  const modelType = raw.model_type;
  if (modelType !== 'qwen2' && modelType !== 'llama') {
    throw fail('model_type', `is ${JSON.stringify(modelType)}; supported: "qwen2" (Qwen1.5/Qwen2/Qwen2.5) and "llama"`);
  }
  const architectures = optional(
    raw,
    'architectures',
    [SUPPORTED_ARCHITECTURES[modelType]],
    (v) => (Array.isArray(v) && v.every((a) => typeof a === 'string') ? (v as string[]) : undefined),
    fail,
    'must be a list of strings',
  );
  const want = SUPPORTED_ARCHITECTURES[modelType];
  if (!architectures.includes(want)) {
    throw fail(
      'architectures',
      `is ${JSON.stringify(architectures)}; only ${want} is supported for model_type ${modelType}`,
    );
  }

  const int = (field: string): number => {
    const v = raw[field];
    if (v === undefined || v === null) throw fail(field, 'is missing');
    if (!Number.isSafeInteger(v) || (v as number) <= 0)
      throw fail(field, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const optInt = (field: string, dflt: number): number =>
    raw[field] === undefined || raw[field] === null ? dflt : int(field);
  const posNum = (v: unknown): number | undefined =>
    typeof v === 'number' && v > 0 && Number.isFinite(v) ? v : undefined;
  const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = optInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0)
    throw fail('num_key_value_heads', `(${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  if (raw.head_dim === undefined || raw.head_dim === null) {
    if (hiddenSize % numHeads !== 0)
      throw fail(
        'hidden_size',
        `(${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and head_dim is not given`,
      );
  }
  const headDim = optInt('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw fail('head_dim', `must be even for rotary embeddings, got ${headDim}`);

  const hiddenAct = optional(raw, 'hidden_act', 'silu', (v) => v, fail, '');
  if (hiddenAct !== 'silu') throw fail('hidden_act', `is ${JSON.stringify(hiddenAct)}; only "silu" is supported`);

  let attentionBias = modelType === 'qwen2';
  if (modelType === 'llama') {
    // Llama's attention_bias adds a bias to o_proj too, which the Qwen2 layer has not.
    if (raw.attention_bias === true)
      throw fail('attention_bias', 'is true; Llama attention biases (including o_proj) are not supported');
    if (raw.mlp_bias === true) throw fail('mlp_bias', 'is true; MLP biases are not supported');
    attentionBias = false;
  }

  const ropeTheta = parseRope(raw, modelType, fail);
  const eps = optional(raw, 'rms_norm_eps', 1e-6, posNum, fail, 'must be a positive number');

  const useSlidingWindow = optional(raw, 'use_sliding_window', false, bool, fail, 'must be true or false');
  const slidingWindow = raw.sliding_window === undefined || raw.sliding_window === null ? null : int('sliding_window');
  const maxWindowLayers =
    raw.max_window_layers === undefined || raw.max_window_layers === null ? null : int('max_window_layers');
  if (useSlidingWindow && slidingWindow === null)
    throw fail('sliding_window', 'is missing while use_sliding_window is true');

  const dtype = raw.dtype ?? raw.torch_dtype;
  if (dtype !== undefined && dtype !== null && typeof dtype !== 'string') throw fail('torch_dtype', 'must be a string');

  return {
    modelType,
    architectures,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    rmsNormEps: eps,
    ropeTheta,
    maxPositionEmbeddings: optInt('max_position_embeddings', modelType === 'qwen2' ? 32768 : 2048),
    tieWordEmbeddings: optional(raw, 'tie_word_embeddings', false, bool, fail, 'must be true or false'),
    attentionBias,
    hiddenAct: 'silu',
    torchDtype: typeof dtype === 'string' ? dtype : null,
    bosTokenId: tokenId(raw, 'bos_token_id', fail),
    eosTokenIds: tokenIds(raw, 'eos_token_id', fail),
    useSlidingWindow,
    slidingWindow,
    maxWindowLayers,
  };
}

type Fail = (field: string, why: string) => UserError;

/** A field with a transformers default: absent or null -> default, wrong type -> error. */
function optional<T>(
  raw: Record<string, unknown>,
  field: string,
  dflt: T,
  check: (v: unknown) => T | undefined,
  fail: Fail,
  why: string,
): T {
  const v = raw[field];
  if (v === undefined || v === null) return dflt;
  const ok = check(v);
  if (ok === undefined) throw fail(field, `${why}, got ${JSON.stringify(v)}`);
  return ok;
}

/** rope_theta from either form; any rope scaling changes the frequencies and is refused. */
function parseRope(raw: Record<string, unknown>, modelType: ModelType, fail: Fail): number {
  const dflt = 10000;
  const params = raw.rope_parameters;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) throw fail('rope_parameters', 'must be an object');
    const p = params as Record<string, unknown>;
    const type = p.rope_type ?? p.type ?? 'default';
    if (type !== 'default')
      throw fail('rope_parameters.rope_type', `is ${JSON.stringify(type)}; only "default" (no scaling) is supported`);
    if (p.partial_rotary_factor !== undefined && p.partial_rotary_factor !== 1) {
      throw fail(
        'rope_parameters.partial_rotary_factor',
        `is ${JSON.stringify(p.partial_rotary_factor)}; only full rotary embeddings are supported`,
      );
    }
    const theta = p.rope_theta ?? raw.rope_theta ?? dflt;
    if (typeof theta !== 'number' || !(theta > 0))
      throw fail('rope_parameters.rope_theta', `must be a positive number, got ${JSON.stringify(theta)}`);
    return theta;
  }
  const scaling = raw.rope_scaling;
  if (scaling !== undefined && scaling !== null) {
    const s = scaling as Record<string, unknown>;
    const type = typeof s === 'object' ? (s.rope_type ?? s.type) : scaling;
    if (type !== 'default')
      throw fail('rope_scaling', `is ${JSON.stringify(scaling)}; rope scaling is not supported (${modelType})`);
  }
  const theta = raw.rope_theta ?? dflt;
  if (typeof theta !== 'number' || !(theta > 0))
    throw fail('rope_theta', `must be a positive number, got ${JSON.stringify(theta)}`);
  return theta;
}

function tokenId(raw: Record<string, unknown>, field: string, fail: Fail): number | null {
  const v = raw[field];
  if (v === undefined || v === null) return null;
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw fail(field, `must be a token id, got ${JSON.stringify(v)}`);
  return v as number;
}

function tokenIds(raw: Record<string, unknown>, field: string, fail: Fail): number[] {
  const v = raw[field];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isSafeInteger(x) && x >= 0))
    throw fail(field, `must be a token id or a list of them, got ${JSON.stringify(v)}`);
  return list as number[];
}

/**
 * The config as a classic-form config.json object (keys sorted, as transformers writes them),
 * for checkpoints we save; it loads in transformers 4.37+ and 5.
 */
export function modelConfigToJson(c: Qwen2Config): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architectures: c.architectures,
    attention_dropout: 0.0,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds.length === 0 ? null : c.eosTokenIds,
    head_dim: c.headDim,
    hidden_act: c.hiddenAct,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    model_type: c.modelType,
    num_attention_heads: c.numHeads,
    num_hidden_layers: c.numLayers,
    num_key_value_heads: c.numKvHeads,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: c.torchDtype,
    vocab_size: c.vocabSize,
  };
  if (c.modelType === 'qwen2') {
    Object.assign(out, {
      max_window_layers: c.maxWindowLayers,
      sliding_window: c.slidingWindow,
      use_sliding_window: c.useSlidingWindow,
    });
  } else {
    Object.assign(out, { attention_bias: false, mlp_bias: false });
  }
  return Object.fromEntries(
    Object.keys(out)
      .sort()
      .map((k) => [k, out[k]]),
  );
}

/** The parts of generation_config.json that decoding needs. */
export interface GenerationConfig {
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  doSample: boolean;
  temperature: number | null;
  topP: number | null;
  topK: number | null;
  repetitionPenalty: number | null;
  maxNewTokens: number | null;
}

/** Reads generation_config.json when the checkpoint has one (it is optional), else undefined. */
export function loadGenerationConfig(dir: string): GenerationConfig | undefined {
  const path = join(dir, 'generation_config.json');
  if (!existsSync(path)) return undefined;
  return parseGenerationConfig(readJsonFile(path, 'generation config'), path);
}

export function parseGenerationConfig(json: unknown, path: string): GenerationConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new UserError(`${path}: expected a JSON object`);
  const raw = json as Record<string, unknown>;
  const fail: Fail = (field, why) => new UserError(`${path}: ${field} ${why}`);
  const num = (field: string): number | null => {
    const v = raw[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw fail(field, `must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const doSample = raw.do_sample ?? false;
  if (typeof doSample !== 'boolean') throw fail('do_sample', `must be true or false, got ${JSON.stringify(doSample)}`);
  return {
    bosTokenId: tokenId(raw, 'bos_token_id', fail),
    eosTokenIds: tokenIds(raw, 'eos_token_id', fail),
    padTokenId: tokenId(raw, 'pad_token_id', fail),
    doSample,
    temperature: num('temperature'),
    topP: num('top_p'),
    topK: num('top_k'),
    repetitionPenalty: num('repetition_penalty'),
    maxNewTokens: num('max_new_tokens'),
  };
}
