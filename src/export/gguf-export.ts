/**
 * `--to gguf` and `--to gguf-lora`: base + adapter merged into one GGUF for llama.cpp (with
 * an Ollama Modelfile beside it), or the adapter alone as a llama.cpp LoRA GGUF. Both stream
 * tensor by tensor through GgufWriter.
 */
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Qwen2Config } from '../model/config.js';
import { readJsonFile } from '../util/jsonl.js';
import { UserError } from '../util/errors.js';
import { loraScale, peftTensorName } from '../lora/lora.js';
import { projectionPrefix } from '../model/qwen2-weights.js';
import { toF32 } from '../tensor/tensor.js';
import { gguf, GgmlType, GGML_TYPES, LLAMA_FTYPE, type GgufValue } from './gguf-format.js';
import { QuantPool } from './quant-pool.js';
import { GGUF_QUANTS, ggufTensorName, ggufTensorType, isGgufQuant, type GgufQuant } from './gguf-qwen2.js';
import { readGgufVocab, tokenizerMetadata } from './gguf-tokenizer.js';
import { GgufWriter, type GgufTensorInfo } from './gguf-writer.js';
import { MergedWeights } from './merged-weights.js';
import { adapterSystemPrompt, renderModelfile } from './modelfile.js';
import { writeFileAtomic } from '../util/outputs.js';
import { ensureWritableDir, type ExportProgress } from './output.js';

export interface ExportGgufOptions {
  baseDir: string;
  /** Without an adapter the base model itself is exported. */
  adapterDir?: string;
  /** The .gguf file to write (its folder is created). */
  outFile: string;
  /** Default q4_k_m. */
  quant?: GgufQuant;
  fromNf4?: boolean;
  /** general.name (default: the base folder's name). */
  name?: string;
  /** Write an Ollama Modelfile beside the GGUF (default true). */
  modelfile?: boolean;
  /**
   * Quantization threads (0 = on the calling thread). Default: the machine's cores for models
   * of 16M+ values, else 0 (starting workers costs more than a toy model's quantization).
   */
  threads?: number;
  onProgress?: ExportProgress;
}

export interface ExportGgufResult {
  outFile: string;
  modelfile?: string;
  quant: GgufQuant;
  bytes: number;
  /** GGUF tensor name -> ggml type name, in file order. */
  tensorTypes: Record<string, string>;
}

/** general.* and qwen2.* keys as convert_hf_to_gguf.py writes them for a Qwen2 model. */
function modelMetadata(cfg: Qwen2Config, baseDir: string, name: string, quant: GgufQuant): [string, GgufValue][] {
  const raw = readJsonFile<Record<string, unknown>>(join(baseDir, 'config.json'), 'model config');
  const out: [string, GgufValue][] = [
    ['general.architecture', gguf.str('qwen2')],
    ['general.type', gguf.str('model')],
    ['general.name', gguf.str(name)],
    ['qwen2.block_count', gguf.u32(cfg.numLayers)],
    ['qwen2.context_length', gguf.u32(cfg.maxPositionEmbeddings)],
    ['qwen2.embedding_length', gguf.u32(cfg.hiddenSize)],
    ['qwen2.feed_forward_length', gguf.u32(cfg.intermediateSize)],
    ['qwen2.attention.head_count', gguf.u32(cfg.numHeads)],
    ['qwen2.attention.head_count_kv', gguf.u32(cfg.numKvHeads)],
    ['qwen2.rope.freq_base', gguf.f32(cfg.ropeTheta)],
    ['qwen2.attention.layer_norm_rms_epsilon', gguf.f32(cfg.rmsNormEps)],
  ];
  // The converter writes the head size only when config.json states it.
  if (typeof raw.head_dim === 'number') {
    out.push(['qwen2.attention.key_length', gguf.u32(cfg.headDim)]);
    out.push(['qwen2.attention.value_length', gguf.u32(cfg.headDim)]);
  }
  out.push(['general.file_type', gguf.u32(LLAMA_FTYPE[quant])]);
  out.push(['general.quantization_version', gguf.u32(2)]);
  return out;
}

function checkModel(cfg: Qwen2Config, baseDir: string): void {
  if (cfg.modelType !== 'qwen2')
    throw new UserError(`${baseDir}/config.json: model_type ${cfg.modelType}; GGUF export writes Qwen2 models only`);
}

/** The GGUF tensor list of a checkpoint: (HF name, GGUF info) in the checkpoint's order. */
function planTensors(w: MergedWeights, quant: GgufQuant): [string, GgufTensorInfo][] {
  const plan: [string, GgufTensorInfo][] = [];
  for (const hf of w.names()) {
    if (hf === 'lm_head.weight' && w.config.tieWordEmbeddings) continue; // llama.cpp reuses token_embd
    const name = ggufTensorName(hf);
    if (name === undefined) throw new UserError(`${w.baseDir}: tensor ${hf} has no place in a llama.cpp Qwen2 GGUF`);
    const ne = w.shape(hf).reverse();
    plan.push([hf, { name, ne, type: ggufTensorType(name, ne, quant, w.config) }]);
  }
  return plan;
}

export async function exportGguf(opts: ExportGgufOptions): Promise<ExportGgufResult> {
  const quant = opts.quant ?? 'q4_k_m';
  if (!isGgufQuant(quant))
    throw new UserError(`unknown GGUF quantization ${JSON.stringify(quant)}: use one of ${GGUF_QUANTS.join(', ')}`);
  ensureWritableDir(dirname(opts.outFile));
  const w = MergedWeights.open({ baseDir: opts.baseDir, adapterDir: opts.adapterDir, fromNf4: opts.fromNf4 });
  let writer: GgufWriter | undefined;
  const values = w.names().reduce((n, t) => n + w.shape(t).reduce((a, b) => a * b, 1), 0);
  const pool = new QuantPool(opts.threads ?? (values >= 1 << 24 ? availableParallelism() : 0));
  try {
    checkModel(w.config, opts.baseDir);
    const vocab = readGgufVocab(opts.baseDir, w.config);
    const metadata = new Map<string, GgufValue>([
      ...modelMetadata(w.config, opts.baseDir, opts.name ?? basename(opts.baseDir), quant),
      ...tokenizerMetadata(vocab),
    ]);
    const plan = planTensors(w, quant);
    writer = new GgufWriter(
      opts.outFile,
      metadata,
      plan.map(([, info]) => info),
    );
    const buffer = new Float32Array(w.maxElements());
    let done = 0;
    // Tensor i is quantized on the workers while tensor i + 1 is read and merged here.
    let previous: Promise<void> = Promise.resolve();
    const out = writer;
    for (const [hf, info] of plan) {
      const values = w.readF32(hf, buffer);
      // f32 needs no work (and its bytes are a view of the reused buffer: copied).
      const bytes =
        info.type === GgmlType.F32
          ? Promise.resolve(GGML_TYPES[GgmlType.F32].quantize(values).slice())
          : pool.quantize(info.type, values, info.ne[0]);
      await previous;
      previous = bytes.then((b) => {
        out.writeRaw(info.name, b);
        opts.onProgress?.({ stage: 'gguf', done: ++done, total: plan.length, item: info.name });
      });
    }
    await previous;
    const bytes = writer.totalBytes;
    writer.finish();
    writer = undefined;
    let modelfile: string | undefined;
    if (opts.modelfile ?? true) {
      modelfile = join(dirname(opts.outFile), 'Modelfile');
      const system = opts.adapterDir !== undefined ? adapterSystemPrompt(opts.adapterDir) : undefined;
      writeFileAtomic(modelfile, renderModelfile({ ggufFile: basename(opts.outFile), system }));
    }
    const tensorTypes = Object.fromEntries(plan.map(([, t]) => [t.name, GgmlType[t.type]]));
    return { outFile: opts.outFile, modelfile, quant, bytes, tensorTypes };
  } finally {
    writer?.abort();
    w.close();
    await pool.close();
  }
}

export interface ExportLoraGgufOptions {
  baseDir: string;
  adapterDir: string;
  outFile: string;
  name?: string;
  onProgress?: ExportProgress;
}

export interface ExportLoraGgufResult {
  outFile: string;
  bytes: number;
  /** adapter.lora.alpha as written (alpha * sqrt(r) for rsLoRA, so llama.cpp's alpha / r is its scale). */
  alpha: number;
}

/**
 * The adapter as a llama.cpp LoRA GGUF (convert_lora_to_gguf.py's layout): general.type
 * "adapter", adapter.type "lora", adapter.lora.alpha, and per adapted weight
 * `<gguf name>.lora_a` (ne [in, r]) and `.lora_b` (ne [r, out]) in f32. llama.cpp scales by
 * alpha / r, r read from the tensors.
 */
export async function exportLoraGguf(opts: ExportLoraGgufOptions): Promise<ExportLoraGgufResult> {
  ensureWritableDir(dirname(opts.outFile));
  const w = MergedWeights.open({ baseDir: opts.baseDir, adapterDir: opts.adapterDir });
  let writer: GgufWriter | undefined;
  try {
    checkModel(w.config, opts.baseDir);
    const adapter = w.adapter;
    if (!adapter) throw new Error('exportLoraGguf: no adapter');
    const c = adapter.config;
    const alpha = loraScale(c) * c.r;
    const metadata = new Map<string, GgufValue>([
      ['general.architecture', gguf.str('qwen2')],
      ['general.type', gguf.str('adapter')],
      ['general.name', gguf.str(opts.name ?? basename(opts.adapterDir))],
      ['adapter.type', gguf.str('lora')],
      ['adapter.lora.alpha', gguf.f32(alpha)],
      ['general.quantization_version', gguf.u32(2)],
    ]);
    const plan: { name: string; ne: number[]; values: () => Float32Array }[] = [];
    for (let i = 0; i < w.config.numLayers; i++) {
      for (const p of c.targetModules) {
        const target = ggufTensorName(`${projectionPrefix(i, p)}.weight`) as string;
        for (const which of ['A', 'B'] as const) {
          const t = adapter.tensors[peftTensorName(i, p, which)];
          plan.push({
            name: `${target}.lora_${which.toLowerCase()}`,
            ne: [...t.shape].reverse(),
            values: () => toF32(t),
          });
        }
      }
    }
    writer = new GgufWriter(
      opts.outFile,
      metadata,
      plan.map((t) => ({ name: t.name, ne: t.ne, type: GgmlType.F32 })),
    );
    let done = 0;
    for (const t of plan) {
      writer.writeF32(t.name, t.values());
      opts.onProgress?.({ stage: 'lora', done: ++done, total: plan.length, item: t.name });
    }
    const bytes = writer.totalBytes;
    writer.finish();
    writer = undefined;
    return { outFile: opts.outFile, bytes, alpha };
  } finally {
    writer?.abort();
    w.close();
  }
}
