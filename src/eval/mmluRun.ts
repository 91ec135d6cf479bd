/**
 * `sqlora mmlu` as a function: encode every question, score the ones not yet scored (base, and
 * with the adapter attached on the same loaded weights), append each question's result to a
 * progress file as it comes, and return the results in order (subjects by name, then file
 * order). A rerun with the same settings reads the progress file and scores only what is left.
 */
import { existsSync } from 'node:fs';
import type { LoraProvider, Qwen2Model } from '../model/qwen2.js';
import { appendJsonl, readAppendedJsonl } from '../util/jsonl.js';
import { writeFileAtomic } from '../util/outputs.js';
import { Progress } from '../util/progress.js';
import type { MmluQuestion } from './mmluData.js';
import { encodeQuestion, scoredSequence, type EncodedQuestion, type MmluTokenizer } from './mmluPrompt.js';
import { argmax, scoreGeneral, scoreSingleToken } from './mmluScore.js';
import { questionKey, type ModelScore, type QuestionResult } from './mmluSummary.js';

export interface MmluRunOptions {
  model: Qwen2Model;
  tokenizer: MmluTokenizer;
  /** Scored after the base on every batch, with the same weights. */
  adapter: LoraProvider | null;
  questions: readonly MmluQuestion[];
  fewShot: ReadonlyMap<string, readonly MmluQuestion[]>;
  /** Rows per pass; 0 = by token budget (see autoBatch). */
  batchSize: number;
  /** Progress file (JSON Lines: a settings header, then one result per question). */
  progressPath: string | null;
  /** What must match for a rerun to continue the progress file. */
  settings: Record<string, unknown>;
  quiet?: boolean;
  /** Score every question by the general path (tests, benchmarks). */
  forceGeneral?: boolean;
}

export interface MmluRunResult {
  questions: QuestionResult[];
  singleToken: number;
  general: number;
  resumed: number;
  seconds: number;
}

interface Header {
  settings: Record<string, unknown>;
}

/** Rows per pass from a token budget: wide on a GPU, small on the CPU (f32). */
function autoBatch(model: Qwen2Model, tokens: number): number {
  const budget = model.backend.computeDType === 'f32' ? 4096 : 32768;
  return Math.max(1, Math.min(64, Math.floor(budget / Math.max(1, tokens))));
}

function readProgress(path: string, settings: Record<string, unknown>, quiet: boolean): Map<string, QuestionResult> {
  const done = new Map<string, QuestionResult>();
  if (!existsSync(path)) return done;
  const rows = readAppendedJsonl<Header | QuestionResult>(path);
  const header = rows[0] as Header | undefined;
  if (!header || JSON.stringify(header.settings) !== JSON.stringify(settings)) {
    if (!quiet) process.stderr.write(`mmlu: ${path} is from other settings: starting over\n`);
    return done;
  }
  for (const r of rows.slice(1) as QuestionResult[]) done.set(questionKey(r), r);
  return done;
}

export function runMmlu(opts: MmluRunOptions): MmluRunResult {
  const { model, tokenizer } = opts;
  const maxLength = model.config.maxPositionEmbeddings;
  const done = opts.progressPath ? readProgress(opts.progressPath, opts.settings, opts.quiet ?? false) : new Map();
  const resumed = opts.questions.filter((q) => done.has(questionKey(q))).length;
  if (opts.progressPath && (resumed === 0 || !existsSync(opts.progressPath))) {
    // A fresh file: written beside and renamed, so a half-written header never looks complete.
    writeFileAtomic(opts.progressPath, JSON.stringify({ settings: opts.settings }) + '\n');
  }
  const pending = opts.questions.filter((q) => !done.has(questionKey(q)));
  const encoded = pending.map((q) => ({ q, enc: encodeQuestion(tokenizer, q, opts.fewShot.get(q.subject) ?? []) }));
  const fast = encoded.filter((e) => e.enc.singleToken && !opts.forceGeneral);
  const general = encoded.filter((e) => !e.enc.singleToken || opts.forceGeneral);
  const progress = new Progress(
    { label: 'mmlu', total: opts.questions.length, unit: 'questions', quiet: opts.quiet },
    resumed,
  );
  const started = performance.now();
  const record = (q: MmluQuestion, base: number[], adapter: number[] | null): void => {
    const score = (ll: number[]): ModelScore => ({ loglik: ll, pred: argmax(ll) });
    const r: QuestionResult = { subject: q.subject, index: q.index, answer: q.answer, base: score(base) };
    if (adapter) r.adapter = score(adapter);
    done.set(questionKey(q), r);
    if (opts.progressPath) appendJsonl(opts.progressPath, r);
  };
  const withEachModel = <T>(f: () => T): [T, T | null] => {
    model.setLora(null);
    const base = f();
    if (!opts.adapter) return [base, null];
    model.setLora(opts.adapter);
    try {
      return [base, f()];
    } finally {
      model.setLora(null);
    }
  };

  // Longest first: similar lengths share a batch (little padding) and a too-large batch fails at once.
  const byLength = (a: { enc: EncodedQuestion }, b: { enc: EncodedQuestion }): number =>
    b.enc.pairs[0].context.length - a.enc.pairs[0].context.length;
  fast.sort(byLength);
  for (let i = 0; i < fast.length;) {
    const len = Math.min(maxLength, fast[i].enc.pairs[0].context.length);
    const n = opts.batchSize > 0 ? opts.batchSize : autoBatch(model, len);
    const batch = fast.slice(i, i + n);
    const items = batch.map(({ enc }) => ({
      input: scoredSequence(enc.pairs[0], maxLength).input,
      targets: enc.pairs.map((p) => p.continuation[0]),
    }));
    const [base, adapted] = withEachModel(() => scoreSingleToken(model, items));
    batch.forEach(({ q }, j) => record(q, base[j], adapted ? adapted[j] : null));
    i += batch.length;
    progress.tick(batch.length);
  }
  general.sort(byLength);
  for (let i = 0; i < general.length;) {
    const len = Math.min(maxLength, general[i].enc.pairs[0].context.length + 8);
    // Four rows per question.
    const n = Math.max(1, Math.floor((opts.batchSize > 0 ? opts.batchSize : autoBatch(model, len)) / 4));
    const batch = general.slice(i, i + n);
    const seqs = batch.flatMap(({ enc }) => enc.pairs.map((p) => scoredSequence(p, maxLength)));
    const [base, adapted] = withEachModel(() => scoreGeneral(model, seqs));
    batch.forEach(({ q }, j) =>
      record(q, base.slice(4 * j, 4 * j + 4), adapted ? adapted.slice(4 * j, 4 * j + 4) : null),
    );
    i += batch.length;
    progress.tick(batch.length);
  }
  progress.finish();
  const seconds = (performance.now() - started) / 1000;
  return {
    questions: opts.questions.map((q) => done.get(questionKey(q)) as QuestionResult),
    singleToken: fast.length,
    general: general.length,
    resumed,
    seconds,
  };
}
