/**
 * The results file of `sqlora mmlu`: per-question log-likelihoods and predictions, and the
 * summary (accuracy overall, per category and per subject, micro-averaged, with counts; the
 * verdict when an adapter was scored).
 */
import { categoryOf, MMLU_CATEGORIES, type MmluQuestion } from './mmluData.js';
import { powerLine, verdict, type Verdict } from './mmluStats.js';

export interface ModelScore {
  loglik: number[];
  pred: number;
}

export interface QuestionResult {
  subject: string;
  index: number;
  answer: number;
  base: ModelScore;
  adapter?: ModelScore;
}

export interface Accuracy {
  correct: number;
  accuracy: number;
}

export interface AccuracyEntry {
  questions: number;
  base: Accuracy;
  adapter?: Accuracy;
}

export interface MmluSummary {
  overall: AccuracyEntry;
  categories: Record<string, AccuracyEntry>;
  subjects: Record<string, AccuracyEntry & { category: string }>;
  /** Base vs adapter; null without an adapter. */
  verdict: Verdict | null;
  /** What a difference the size of the reference workflow's needs. */
  power: string;
}

export interface MmluMeta {
  model: string;
  adapter: string | null;
  /** Which questions: the embedded selection or a folder, in words. */
  data: string;
  shots: number;
  subjects: string[] | null;
  limit: number | null;
  quantize: string;
  device: string;
  /** Questions scored by one pass per question / by the general path. */
  single_token_questions: number;
  general_questions: number;
  /** Questions read back from the progress file of an earlier run with the same settings. */
  resumed_questions: number;
  /** Seconds spent scoring in this run (tokenization and resumed questions excluded). */
  scoring_seconds: number;
}

export interface MmluResults {
  meta: MmluMeta;
  questions: QuestionResult[];
  summary: MmluSummary;
}

function entry(rows: readonly QuestionResult[], withAdapter: boolean): AccuracyEntry {
  const acc = (pick: (r: QuestionResult) => ModelScore | undefined): Accuracy => {
    const correct = rows.filter((r) => pick(r)?.pred === r.answer).length;
    return { correct, accuracy: rows.length ? correct / rows.length : 0 };
  };
  const e: AccuracyEntry = { questions: rows.length, base: acc((r) => r.base) };
  if (withAdapter) e.adapter = acc((r) => r.adapter);
  return e;
}

export function summarize(questions: readonly QuestionResult[], seed = 1234): MmluSummary {
  const withAdapter = questions.length > 0 && questions.every((q) => q.adapter !== undefined);
  const categories: Record<string, AccuracyEntry> = {};
  for (const c of MMLU_CATEGORIES) {
    const rows = questions.filter((q) => categoryOf(q.subject) === c);
    if (rows.length > 0) categories[c] = entry(rows, withAdapter);
  }
  const subjects: MmluSummary['subjects'] = {};
  for (const s of [...new Set(questions.map((q) => q.subject))].sort()) {
    subjects[s] = {
      category: categoryOf(s),
      ...entry(
        questions.filter((q) => q.subject === s),
        withAdapter,
      ),
    };
  }
  return {
    overall: entry(questions, withAdapter),
    categories,
    subjects,
    verdict: withAdapter
      ? verdict(
          questions.map((q) => q.base.pred === q.answer),
          questions.map((q) => q.adapter?.pred === q.answer),
          seed,
        )
      : null,
    power: powerLine(),
  };
}

export function questionKey(q: Pick<MmluQuestion, 'subject' | 'index'>): string {
  return `${q.subject}/${q.index}`;
}

const pct = (a: Accuracy | undefined): string => (a ? `${(100 * a.accuracy).toFixed(2)}%` : '—');

/** The human summary: which set, overall and per category, the verdict and the power line. */
export function formatSummary(r: MmluResults): string {
  const s = r.summary;
  const adapter = s.overall.adapter !== undefined;
  const lines = [
    `MMLU ${r.meta.shots}-shot on ${r.meta.data}: ${s.overall.questions} questions`,
    `${'category'.padEnd(18)}${'questions'.padStart(10)}${'base'.padStart(10)}${adapter ? 'adapter'.padStart(10) : ''}`,
  ];
  const row = (name: string, e: AccuracyEntry): string =>
    `${name.padEnd(18)}${String(e.questions).padStart(10)}${pct(e.base).padStart(10)}${adapter ? pct(e.adapter).padStart(10) : ''}`;
  for (const [c, e] of Object.entries(s.categories)) lines.push(row(c, e));
  lines.push(row('overall', s.overall));
  if (s.verdict) {
    lines.push(`verdict: ${s.verdict.line}`);
    const d = s.verdict.detectable_difference;
    lines.push(
      d === null
        ? 'the two models give the same answer on every question'
        : `with ${s.verdict.questions} questions and ${s.verdict.mcnemar.base_only + s.verdict.mcnemar.adapter_only} disagreements, differences of ${(100 * d).toFixed(1)} points or more are detected (80% power, alpha 0.05)`,
    );
  }
  lines.push(`note: ${s.power}`);
  return lines.join('\n') + '\n';
}
