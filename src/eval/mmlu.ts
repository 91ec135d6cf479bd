/**
 * The MMLU forgetting check as one library call: read the questions (a folder or the embedded
 * selection), score base and adapter on a loaded model, summarize, and write the results file
 * (beside, then renamed). The per-question progress file beside it lets an interrupted run
 * continue.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MmluTokenizer } from './mmluPrompt.js';
import type { LoraProvider, Qwen2Model } from '../model/qwen2.js';
import { readMmlu, selectQuestions } from './mmluData.js';
import { runMmlu } from './mmluRun.js';
import { summarize, type MmluResults } from './mmluSummary.js';
import { writeFileAtomic } from '../util/outputs.js';

export interface MmluOptions {
  model: Qwen2Model;
  tokenizer: MmluTokenizer;
  adapter: LoraProvider | null;
  /** Recorded in the results: what --model / --adapter named. */
  modelName: string;
  adapterName: string | null;
  /** A folder in either layout; undefined = the embedded selection. */
  data?: string;
  subjects?: string[];
  limit?: number;
  shots: number;
  batchSize: number;
  quantize: string;
  device: string;
  /** results.json; its progress file is `<out>.progress.jsonl`. Null: keep nothing on disk. */
  out: string | null;
  quiet?: boolean;
  forceGeneral?: boolean;
}

function progressPathFor(out: string): string {
  return `${out}.progress.jsonl`;
}

export async function mmluEvaluate(opts: MmluOptions): Promise<MmluResults> {
  const set = await readMmlu(opts.data);
  const { questions, fewShot } = selectQuestions(set, {
    subjects: opts.subjects,
    limit: opts.limit,
    shots: opts.shots,
  });
  // What the results' meta and the progress file's settings both record.
  const recorded = {
    model: opts.modelName,
    adapter: opts.adapterName,
    data: set.description,
    shots: opts.shots,
    subjects: opts.subjects ?? null,
    limit: opts.limit ?? null,
    quantize: opts.quantize,
    device: `${opts.model.backend.name} ${opts.model.backend.computeDType}`,
  };
  const settings = { ...recorded, general: opts.forceGeneral ?? false };
  if (opts.out !== null) mkdirSync(dirname(opts.out), { recursive: true });
  const run = runMmlu({
    model: opts.model,
    tokenizer: opts.tokenizer,
    adapter: opts.adapter,
    questions,
    fewShot,
    batchSize: opts.batchSize,
    progressPath: opts.out !== null ? progressPathFor(opts.out) : null,
    settings,
    quiet: opts.quiet,
    forceGeneral: opts.forceGeneral,
  });
  const results: MmluResults = {
    meta: {
      ...recorded,
      single_token_questions: run.singleToken,
      general_questions: run.general,
      resumed_questions: run.resumed,
      scoring_seconds: run.seconds,
    },
    questions: run.questions,
    summary: summarize(run.questions),
  };
  if (opts.out !== null) writeFileAtomic(opts.out, JSON.stringify(results, null, 1) + '\n');
  return results;
}
