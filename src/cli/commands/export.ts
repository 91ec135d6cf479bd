import { basename, join, resolve } from 'node:path';
import {
  resolveExportBase,
  exportGguf,
  exportLoraGguf,
  exportMerged,
  exportProgressBars,
  GGUF_QUANTS,
  MERGED_DTYPES,
  type GgufQuant,
  type MergedDType,
} from '../../export/index.js';
import { UserError } from '../../util/errors.js';
import type { CommandSpec } from '../args.js';

const TARGETS = ['merged', 'gguf', 'gguf-lora'] as const;

export const command: CommandSpec = {
  name: 'export',
  summary: 'adapter -> merged HF model folder, GGUF for llama.cpp/Ollama (+ Modelfile), or LoRA GGUF',
  usage: '--adapter DIR [--model BASE] --to merged|gguf|gguf-lora --out DIR [flags]',
  flags: [
    {
      name: 'adapter',
      type: 'string',
      metavar: 'DIR',
      description: 'PEFT LoRA adapter folder (sqlora train --out .../adapter)',
    },
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description: "base model folder or Hugging Face repo id (default: the adapter's base_model_name_or_path)",
    },
    { name: 'to', type: 'string', choices: TARGETS, description: 'what to write' },
    { name: 'out', type: 'string', metavar: 'DIR', description: 'output folder' },
    {
      name: 'dtype',
      type: 'string',
      choices: MERGED_DTYPES,
      description: "merged: storage dtype (default: the base's)",
    },
    { name: 'quant', type: 'string', choices: GGUF_QUANTS, default: 'q4_k_m', description: 'gguf: tensor types' },
    {
      name: 'from-nf4',
      type: 'boolean',
      description:
        'merge into the NF4-dequantized base projections QLoRA trained against (default: the original unquantized weights)',
    },
    { name: 'shard-size', type: 'number', metavar: 'GB', default: 5, description: 'merged: safetensors shard size' },
    { name: 'overwrite', type: 'boolean', description: 'merged: replace an existing non-empty --out folder' },
    { name: 'quiet', type: 'boolean', description: 'no progress bars' },
  ],
  details: [
    'merged: config.json, model.safetensors (or 5 GB shards + model.safetensors.index.json), tokenizer files and',
    '  chat template; W + (alpha/r)·B·A computed in f32 (alpha/sqrt(r) for rsLoRA).',
    'gguf: OUT/<name>-<quant>.gguf (architecture qwen2, llama.cpp tensor names, BPE tokenizer, chat template) and',
    '  OUT/Modelfile for Ollama (ollama create NAME -f OUT/Modelfile).',
    'gguf-lora: OUT/<name>-lora.gguf, for llama.cpp --lora on the base model GGUF.',
    'Example:',
    '  sqlora export --adapter runs/train/adapter --to gguf --quant q4_k_m --out runs/gguf',
  ].join('\n'),
  async run(args) {
    const adapterDir = args.required('adapter');
    const to = args.required('to') as (typeof TARGETS)[number];
    const out = resolve(args.required('out'));
    const base = await resolveExportBase(adapterDir, args.string('model'));
    const fromNf4 = args.boolean('from-nf4');
    const bars = exportProgressBars(args.boolean('quiet'));
    const name =
      basename(resolve(adapterDir)) === 'adapter' ? basename(resolve(adapterDir, '..')) : basename(resolve(adapterDir));
    const weights = fromNf4 ? 'NF4-dequantized base weights (--from-nf4)' : 'the original unquantized base weights';
    if (to !== 'gguf-lora') process.stderr.write(`export: merging ${adapterDir} into ${weights} of ${base.dir}\n`);
    try {
      if (to === 'merged') {
        const shardGb = args.number('shard-size') ?? 5;
        if (!(shardGb > 0)) throw new UserError(`--shard-size must be a positive number of GB, got ${shardGb}`);
        const r = await exportMerged({
          baseDir: base.dir,
          adapterDir,
          outDir: out,
          dtype: args.string('dtype') as MergedDType | undefined,
          fromNf4,
          maxShardBytes: shardGb * 1e9,
          overwrite: args.boolean('overwrite'),
          onProgress: bars.onProgress,
        });
        bars.finish();
        process.stdout.write(`${r.outDir}: ${r.dtype}, ${r.mergedTensors} tensors merged, ${r.files.join(', ')}\n`);
      } else if (to === 'gguf') {
        const quant = args.string('quant') as GgufQuant;
        const r = await exportGguf({
          baseDir: base.dir,
          adapterDir,
          outFile: join(out, `${name}-${quant}.gguf`),
          quant,
          fromNf4,
          name,
          onProgress: bars.onProgress,
        });
        bars.finish();
        process.stdout.write(`${r.outFile} (${(r.bytes / 1e6).toFixed(1)} MB)\n${r.modelfile}\n`);
      } else {
        const r = await exportLoraGguf({
          baseDir: base.dir,
          adapterDir,
          outFile: join(out, `${name}-lora.gguf`),
          name,
          onProgress: bars.onProgress,
        });
        bars.finish();
        process.stdout.write(`${r.outFile} (${(r.bytes / 1e6).toFixed(1)} MB, alpha ${r.alpha})\n`);
      }
    } finally {
      bars.finish();
    }
  },
};
