/**
 * The folder `sqlora publish` uploads, built from a training run: the PEFT adapter files (its
 * adapter_config.json naming the base by its Hub id, so AutoPeftModelForCausalLM finds it),
 * training_summary.json, metrics.jsonl, loss.svg, the README.md model card and, with --with,
 * the merged model and the GGUF (see publishExports.ts). Each file is
 * written beside its final name and renamed into place, so an interrupted run never leaves a
 * truncated file that looks complete. The returned list, not the folder's listing, is what gets
 * uploaded: stray files in --out stay local.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readDatasetCard, type PromptRecord } from '../data/records.js';
import type { LoraConfig } from '../lora/lora.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, parsePeftConfig } from '../lora/peft.js';
import { SafetensorsFile } from '../tensor/safetensors.js';
import { readResults, readTrainingRun, type ResultsFile } from '../report/inputs.js';
import { lineChart } from '../report/svgChart.js';
import { UserError, describeError } from '../util/errors.js';
import { readJsonFile, readJsonl } from '../util/jsonl.js';
import { readMmluResults } from './mmluResults.js';
import { renderModelCard, type PromptExample } from './modelCard.js';
import { cardDatasets } from './cardDataset.js';
import { checkExportOptions, writePublishExports, type PublishExportOptions } from './publishExports.js';
import { checkRepoId, REPO_ID, type UploadFile } from '../hub/upload.js';

export interface PublishFolderOptions {
  /** The `sqlora train --out` folder. */
  run: string;
  repo: string;
  out: string;
  /** `sqlora eval --out` folder or its results.json. */
  eval?: string;
  /** `sqlora baseline --out` folder or its results.json. */
  baseline?: string;
  /** `sqlora mmlu --out` results file. */
  mmlu?: string;
  /** The prepared data folder (eval.jsonl, dataset.json), for the prompt example; default: the run's. */
  data?: string;
  /** The base model's Hub id, when the run names a local folder. */
  baseModel?: string;
  license?: string;
  /** --with merged,gguf and the export flags. */
  exports?: PublishExportOptions;
}

export interface PublishFolder {
  dir: string;
  files: UploadFile[];
  baseModel: string;
  /** What the card lacks and how to add it. */
  warnings: string[];
}

const LOSS_CHART = 'loss.svg';

function resultsPath(p: string): string {
  return existsSync(p) && statSync(p).isDirectory() ? join(p, 'results.json') : p;
}

export async function buildPublishFolder(opts: PublishFolderOptions): Promise<PublishFolder> {
  checkRepoId(opts.repo);
  if (!existsSync(opts.run)) throw new UserError(`training run folder not found: ${opts.run}`);
  const adapterDir = join(opts.run, 'adapter');
  if (!existsSync(join(adapterDir, ADAPTER_CONFIG_FILE)) || !existsSync(join(adapterDir, ADAPTER_WEIGHTS_FILE)))
    throw new UserError(
      `${opts.run} has no adapter (adapter/${ADAPTER_CONFIG_FILE} and adapter/${ADAPTER_WEIGHTS_FILE}): --run takes the folder of a finished sqlora train run`,
    );
  const lora = adapterConfig(adapterDir);
  const run = readTrainingRun(opts.run);
  const recordedBase = lora.raw.base_model_name_or_path;
  const baseModel = baseModelId(
    opts.baseModel,
    run.summary?.model ?? (typeof recordedBase === 'string' ? recordedBase : null),
    opts.run,
  );
  const read = (p: string | undefined, role: string): ResultsFile | null =>
    p === undefined ? null : readResults(resultsPath(p), role);
  const finetuned = read(opts.eval, 'fine-tuned');
  const baseline = read(opts.baseline, 'baseline');
  const mmlu = opts.mmlu !== undefined ? readMmluResults(opts.mmlu) : null;
  const example = promptExample(opts.data, run.summary?.data);
  if (opts.exports) checkExportOptions(opts.exports);
  if (opts.license !== undefined && !/^[a-z0-9][a-z0-9.-]*$/.test(opts.license))
    throw new UserError(
      `--license ${JSON.stringify(opts.license)} is not a Hub license id (lower case, like apache-2.0, mit, llama3, other)`,
    );

  const loss = lineChart({
    title: 'Loss',
    xLabel: 'step',
    yLabel: 'loss',
    series: [
      { name: 'train loss', color: '#1f77b4', points: run.train.map((r) => [r.step, r.loss] as const) },
      {
        name: 'eval loss',
        color: '#d62728',
        markers: true,
        points: run.eval.map((r) => [r.step, r.eval_loss] as const),
      },
    ],
  });

  const warnings: string[] = [];
  if (!finetuned) warnings.push('no --eval: the card has no Spider scores and no model-index');
  if (!example)
    warnings.push(
      "the run's prompt records were not found, so the card shows no prompt example: pass --data DIR (the sqlora prepare folder)",
    );
  const files: UploadFile[] = [];
  const out = opts.out;
  prepareOut(out);
  const put = (path: string, write: (tmp: string) => void): void => {
    const dest = join(out, path);
    const tmp = `${dest}.partial-${process.pid}`;
    try {
      write(tmp);
      renameSync(tmp, dest);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new UserError(`cannot write ${dest}: ${describeError(err)}`);
    }
    files.push({ path, file: dest });
  };
  const text = (path: string, body: string): void => put(path, (tmp) => writeFileSync(tmp, body));
  const copy = (path: string, src: string): void => put(path, (tmp) => copyFileSync(src, tmp));

  text(ADAPTER_CONFIG_FILE, JSON.stringify({ ...lora.raw, base_model_name_or_path: baseModel }, null, 2) + '\n');
  copy(ADAPTER_WEIGHTS_FILE, join(adapterDir, ADAPTER_WEIGHTS_FILE));
  for (const f of ['training_summary.json', 'metrics.jsonl'])
    if (existsSync(join(opts.run, f))) copy(f, join(opts.run, f));
  if (loss) text(LOSS_CHART, loss + '\n');
  const system = example?.record.messages.find((m) => m.role === 'system')?.content;
  const exports = await writePublishExports(adapterDir, out, opts.repo.split('/')[1], system, {
    with: [],
    ...opts.exports,
  });
  files.push(...exports.files);
  const card = renderModelCard({
    repo: opts.repo,
    baseModel,
    license: opts.license ?? null,
    lora: lora.config,
    run,
    lossChart: loss ? LOSS_CHART : null,
    example,
    finetuned,
    baseline,
    mmlu,
    exports,
    files: [...files.map((f) => f.path), 'README.md'].sort(),
    datasets: cardDatasets(run, finetuned),
  });
  text('README.md', card);
  return { dir: out, files, baseModel, warnings };
}

/** The adapter's config, checked against its weight file's tensor names (the tensors are not read). */
function adapterConfig(adapterDir: string): { raw: Record<string, unknown>; config: LoraConfig } {
  const configPath = join(adapterDir, ADAPTER_CONFIG_FILE);
  const raw = readJsonFile<Record<string, unknown>>(configPath, 'adapter config');
  const weights = SafetensorsFile.open(join(adapterDir, ADAPTER_WEIGHTS_FILE));
  try {
    return { raw, config: parsePeftConfig(raw, configPath, weights.names()) };
  } finally {
    weights.close();
  }
}

/** The base as a Hub id (a revision suffix dropped): the card's base_model must name a Hub model. */
function baseModelId(flag: string | undefined, recorded: string | null | undefined, runDir: string): string {
  if (flag !== undefined) {
    if (!REPO_ID.test(flag))
      throw new UserError(`--base-model ${JSON.stringify(flag)} is not a Hub repo id (OWNER/NAME)`);
    return flag;
  }
  // A recorded folder that happens to look like owner/name is still a folder.
  const id = recorded?.split('@')[0];
  if (id !== undefined && REPO_ID.test(id) && !existsSync(recorded!)) return id;
  throw new UserError(
    recorded
      ? `the base model of ${runDir} is ${recorded}, not a Hub repo id: pass --base-model OWNER/NAME (the Hub id of that model)`
      : `${runDir} does not name its base model: pass --base-model OWNER/NAME`,
  );
}

/** --out: created if missing; refused when it is a file or not writable (checked before anything is written). */
function prepareOut(out: string): void {
  try {
    if (existsSync(out) && !statSync(out).isDirectory()) throw new Error('it is not a folder');
    mkdirSync(out, { recursive: true });
    const probe = join(out, `.sqlora-write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new UserError(`cannot write --out ${out}: ${code ?? describeError(err)} (choose a writable folder)`);
  }
}

/** The first evaluation record of the prepared data (else a training one), and its prompt format. */
function promptExample(
  dataDir: string | undefined,
  data: { train_file?: string; eval_file?: string | null } | undefined,
): PromptExample | null {
  const candidates = dataDir
    ? [join(dataDir, 'eval.jsonl'), join(dataDir, 'train.jsonl')]
    : [data?.eval_file, data?.train_file].filter((p): p is string => typeof p === 'string');
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    if (dataDir)
      throw new UserError(`--data ${dataDir} has no eval.jsonl or train.jsonl (the folder sqlora prepare wrote)`);
    return null;
  }
  const [first] = readJsonl<Partial<PromptRecord>>(path, 'prompt records');
  if (!first || !Array.isArray(first.messages) || typeof first.prompt !== 'string' || typeof first.db_id !== 'string') {
    if (dataDir)
      throw new UserError(`${path}: the first record has no "messages" and "prompt" (write it with sqlora prepare)`);
    return null;
  }
  const f = readDatasetCard(dirname(path))?.format;
  const format = typeof f === 'string' ? f : null;
  return { format, record: first as PromptExample['record'] };
}
