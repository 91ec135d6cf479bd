/** sqlora's exporters: merged HF folder, GGUF (llama.cpp / Ollama), LoRA GGUF; and the GGUF reader. */
export {
  exportMerged,
  MERGED_DTYPES,
  DEFAULT_SHARD_BYTES,
  type ExportMergedOptions,
  type ExportMergedResult,
  type MergedDType,
} from './merged.js';
export {
  exportGguf,
  exportLoraGguf,
  type ExportGgufOptions,
  type ExportGgufResult,
  type ExportLoraGgufOptions,
  type ExportLoraGgufResult,
} from './gguf-export.js';
export {
  GGUF_QUANTS,
  isGgufQuant,
  ggufTensorName,
  ggufTensorType,
  ggufTensorSource,
  type GgufQuant,
} from './gguf-qwen2.js';
export { GgufFile, type GgufTensorEntry } from './gguf-reader.js';
export { GgmlType } from './gguf-format.js';
export { MergedWeights, type MergedWeightsOptions } from './merged-weights.js';
export { adapterSystemPrompt, renderModelfile, SQLORA_ADAPTER_INFO } from './modelfile.js';
export { resolveExportBase, type ResolvedBase } from './base.js';
export { exportProgressBars, type ExportProgress, type ExportProgressEvent } from './output.js';
