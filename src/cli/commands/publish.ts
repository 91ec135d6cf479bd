import { join } from 'node:path';
import { GGUF_QUANTS, MERGED_DTYPES, type GgufQuant, type MergedDType } from '../../export/index.js';
import { PUBLISH_EXTRAS, parsePublishExtras } from '../../publish/publishExports.js';
import { buildPublishFolder } from '../../publish/publishFolder.js';
import { hubEndpoint } from '../../hub/download.js';
import { findHubToken } from '../../hub/token.js';
import { checkRepoId, uploadToHub } from '../../hub/upload.js';
import { UserError } from '../../util/errors.js';
import type { CommandSpec } from '../args.js';

export const command: CommandSpec = {
  name: 'publish',
  summary: 'adapter + model card -> a Hub-ready folder, uploaded to the Hugging Face Hub',
  usage:
    '--run DIR --repo OWNER/NAME [--eval DIR] [--baseline DIR] [--mmlu FILE] [--with merged,gguf] [--private] [--dry-run] [--out DIR]',
  flags: [
    { name: 'run', type: 'string', metavar: 'DIR', description: 'training run folder from sqlora train --out' },
    { name: 'repo', type: 'string', metavar: 'OWNER/NAME', description: 'the Hub model repo to create or update' },
    {
      name: 'eval',
      type: 'string',
      metavar: 'DIR|FILE',
      description: 'sqlora eval --out folder (or its results.json): the Spider scores of the card and its model-index',
    },
    {
      name: 'baseline',
      type: 'string',
      metavar: 'DIR|FILE',
      description: 'sqlora baseline --out folder (or its results.json): the before column, by hardness',
    },
    { name: 'mmlu', type: 'string', metavar: 'FILE', description: 'sqlora mmlu --out results: the forgetting check' },
    {
      name: 'data',
      type: 'string',
      metavar: 'DIR',
      description: "prepared data folder for the card's prompt example (default: the one the run trained on)",
    },
    {
      name: 'base-model',
      type: 'string',
      metavar: 'OWNER/NAME',
      description: "the base model's Hub id, when the run was trained from a local folder",
    },
    {
      name: 'license',
      type: 'string',
      metavar: 'ID',
      description: "the card's Hub license id (apache-2.0, mit, ...); default: other, the base model's license",
    },
    {
      name: 'with',
      type: 'string',
      metavar: 'LIST',
      description: `also export and upload, comma-separated: ${PUBLISH_EXTRAS.join(', ')} (merged/ for transformers and vLLM; a GGUF + Modelfile for llama.cpp and Ollama)`,
    },
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description: "--with: the base model to merge into (default: the adapter's base_model_name_or_path)",
    },
    {
      name: 'quant',
      type: 'string',
      choices: GGUF_QUANTS,
      default: 'q4_k_m',
      description: '--with gguf: tensor types',
    },
    {
      name: 'dtype',
      type: 'string',
      choices: MERGED_DTYPES,
      description: "--with merged: storage dtype (default: the base's)",
    },
    {
      name: 'from-nf4',
      type: 'boolean',
      description: '--with: merge into the NF4-dequantized base QLoRA trained against (default: the original weights)',
    },
    {
      name: 'private',
      type: 'boolean',
      description: 'create the repo private (an existing repo keeps its visibility)',
    },
    { name: 'dry-run', type: 'boolean', description: 'write the folder only; upload nothing' },
    { name: 'out', type: 'string', metavar: 'DIR', description: 'where the folder is written (default: RUN/publish)' },
    {
      name: 'token',
      type: 'string',
      metavar: 'TOKEN',
      description:
        'Hub token with write access (default: HF_TOKEN, else the huggingface-cli login token); prefer HF_TOKEN: flags show in process lists',
    },
    {
      name: 'message',
      type: 'string',
      metavar: 'TEXT',
      default: 'Upload sqlora adapter and model card',
      description: 'commit title',
    },
  ],
  details: [
    'The folder: adapter_config.json + adapter_model.safetensors (PEFT), training_summary.json, metrics.jsonl,',
    'loss.svg and README.md, a model card with the Hub metadata (base_model, library_name: peft, license, datasets,',
    'tags, pipeline_tag, model-index with Spider execution accuracy and exact-set-match from --eval).',
    '--with merged adds merged/ (sqlora export --to merged); --with gguf adds NAME-QUANT.gguf and an Ollama Modelfile',
    '(sqlora export --to gguf), and the card shows how to run them.',
    'Upload: one commit of the files whose content differs from the repo (none: no commit); large files through',
    "the Hub's LFS protocol. HF_ENDPOINT selects another Hub. The token is never printed.",
    'Example:',
    '  sqlora publish --run runs/train --eval runs/eval --baseline runs/baseline --repo alice/qwen1.5-1.8b-sql',
  ].join('\n'),
  async run(args) {
    const runDir = args.required('run');
    const repo = args.required('repo');
    checkRepoId(repo);
    const out = args.string('out') ?? join(runDir, 'publish');
    const dryRun = args.boolean('dry-run');
    // The token is looked up before any work, so a missing one fails at once.
    const token = dryRun ? undefined : findHubToken(args.string('token'));
    if (!dryRun && !token)
      throw new UserError(
        'uploading needs a Hugging Face token with write access: set HF_TOKEN (or pass --token), or use --dry-run to only write the folder',
      );
    const extras = args.has('with') ? parsePublishExtras(args.string('with')!) : [];
    const folder = await buildPublishFolder({
      run: runDir,
      repo,
      out,
      eval: args.string('eval'),
      baseline: args.string('baseline'),
      mmlu: args.string('mmlu'),
      data: args.string('data'),
      baseModel: args.string('base-model'),
      license: args.string('license'),
      exports: {
        with: extras,
        model: args.string('model'),
        quant: args.string('quant') as GgufQuant,
        dtype: args.string('dtype') as MergedDType | undefined,
        fromNf4: args.boolean('from-nf4'),
      },
    });
    for (const w of folder.warnings) process.stderr.write(`warning: ${w}\n`);
    const list = folder.files.map((f) => f.path).join(', ');
    if (!token) {
      process.stdout.write(
        `wrote ${folder.files.length} files to ${folder.dir} (${list}); nothing uploaded (--dry-run)\n`,
      );
      return;
    }
    const endpoint = hubEndpoint();
    const r = await uploadToHub(folder.files, {
      repo,
      token,
      endpoint,
      private: args.boolean('private'),
      commitTitle: args.string('message')!,
    });
    const lines = [`wrote ${folder.files.length} files to ${folder.dir}`];
    if (r.created) lines.push(`created ${args.boolean('private') ? 'private ' : ''}repo ${r.repoUrl}`);
    if (r.commit)
      lines.push(
        `uploaded ${r.uploaded.length} of ${folder.files.length} files (${r.uploaded.join(', ')}) in commit ${r.commit.oid}: ${r.commit.url}`,
      );
    else lines.push(`nothing changed: ${r.repoUrl} already has these ${r.unchanged.length} files; no commit made`);
    process.stdout.write(lines.join('\n') + '\n');
  },
};
