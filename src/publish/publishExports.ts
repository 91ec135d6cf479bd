/**
 * `sqlora publish --with merged,gguf`: the exports a repo carries beside the adapter, written by
 * src/export into the publish folder: `merged/` (a transformers / vLLM model folder, the adapter
 * folded in) and `<name>-<quant>.gguf` with an Ollama `Modelfile` at the repo root, where
 * llama.cpp's `-hf OWNER/NAME:QUANT` and Ollama's `hf.co/OWNER/NAME:QUANT` find it.
 */
import { join } from 'node:path';
import {
  adapterSystemPrompt,
  exportGguf,
  exportMerged,
  GGUF_QUANTS,
  MERGED_DTYPES,
  renderModelfile,
  resolveExportBase,
  exportProgressBars,
  type GgufQuant,
  type MergedDType,
} from '../export/index.js';
import { writeFileAtomic } from '../util/outputs.js';
import { UserError } from '../util/errors.js';
import type { UploadFile } from '../hub/upload.js';

export const PUBLISH_EXTRAS = ['merged', 'gguf'] as const;
export type PublishExtra = (typeof PUBLISH_EXTRAS)[number];

export interface PublishExportOptions {
  with: readonly PublishExtra[];
  /** Base model folder or Hub id to merge into; default: the one the adapter names. */
  model?: string;
  quant?: GgufQuant;
  dtype?: MergedDType;
  /** Merge into the NF4-dequantized base (what QLoRA trained against) instead of the original weights. */
  fromNf4?: boolean;
  quiet?: boolean;
}

export interface PublishedExports {
  files: UploadFile[];
  /** What the card says about each. */
  merged?: { folder: string; dtype: MergedDType; fromNf4: boolean };
  gguf?: { file: string; quant: GgufQuant; bytes: number; modelfile: string; fromNf4: boolean };
}

/** The --with list, checked: names from PUBLISH_EXTRAS, comma-separated. */
export function parsePublishExtras(list: string): PublishExtra[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const n of names)
    if (!(PUBLISH_EXTRAS as readonly string[]).includes(n))
      throw new UserError(`--with: ${JSON.stringify(n)} is not one of ${PUBLISH_EXTRAS.join(', ')}`);
  return [...new Set(names)] as PublishExtra[];
}

export function checkExportOptions(o: PublishExportOptions): void {
  if (o.quant !== undefined && !(GGUF_QUANTS as readonly string[]).includes(o.quant))
    throw new UserError(
      `--quant ${JSON.stringify(o.quant)} is not a GGUF quantization: use one of ${GGUF_QUANTS.join(', ')}`,
    );
  if (o.dtype !== undefined && !(MERGED_DTYPES as readonly string[]).includes(o.dtype))
    throw new UserError(`--dtype ${JSON.stringify(o.dtype)}: use one of ${MERGED_DTYPES.join(', ')}`);
}

/**
 * Writes the requested exports into `outDir` and returns their files. `system` is the system
 * prompt the adapter was trained with (the Modelfile's SYSTEM), when known from its prompt
 * records; else the export's default (the adapter's sqlora.json, or the seed prompt).
 */
export async function writePublishExports(
  adapterDir: string,
  outDir: string,
  name: string,
  system: string | undefined,
  o: PublishExportOptions,
): Promise<PublishedExports> {
  checkExportOptions(o);
  const result: PublishedExports = { files: [] };
  if (o.with.length === 0) return result;
  const base = await resolveExportBase(adapterDir, o.model);
  const fromNf4 = o.fromNf4 ?? false;
  const bars = exportProgressBars(o.quiet ?? false);
  try {
    if (o.with.includes('merged')) {
      const folder = 'merged';
      const r = await exportMerged({
        baseDir: base.dir,
        adapterDir,
        outDir: join(outDir, folder),
        dtype: o.dtype,
        fromNf4,
        overwrite: true,
        onProgress: bars.onProgress,
      });
      bars.finish();
      for (const f of r.files) result.files.push({ path: `${folder}/${f}`, file: join(r.outDir, f) });
      result.merged = { folder, dtype: r.dtype, fromNf4 };
    }
    if (o.with.includes('gguf')) {
      const quant = o.quant ?? 'q4_k_m';
      const file = `${name}-${quant}.gguf`;
      const r = await exportGguf({
        baseDir: base.dir,
        adapterDir,
        outFile: join(outDir, file),
        quant,
        fromNf4,
        name,
        modelfile: false,
        onProgress: bars.onProgress,
      });
      bars.finish();
      writeFileAtomic(
        join(outDir, 'Modelfile'),
        renderModelfile({ ggufFile: file, system: system ?? adapterSystemPrompt(adapterDir) }),
      );
      result.files.push({ path: file, file: r.outFile }, { path: 'Modelfile', file: join(outDir, 'Modelfile') });
      result.gguf = { file, quant, bytes: r.bytes, modelfile: 'Modelfile', fromNf4 };
    }
  } finally {
    bars.finish();
  }
  return result;
}
