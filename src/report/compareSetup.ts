/**
 * Before two results are compared (`eval --compare`): do they measure the same thing? A baseline
 * scored on schema-format prompts against a fine-tuned model on seed-format prompts, on another
 * eval set or on fewer questions, compares unlike runs; these are the differences to warn about.
 */
import { resultsDataset } from './dataset.js';

/** What a results.json (sqlora baseline / eval) says about its run. */
export interface ResultsSetup {
  meta?: { dataset?: unknown; eval_file?: string; count?: number };
  summary?: { overall?: { count?: number } };
  examples?: readonly { id?: string | number; gold: string }[];
}

function formatOf(r: ResultsSetup): string | null {
  return resultsDataset(r.meta)?.format ?? null;
}

/** One line per difference in prompt format, eval set or count between the baseline and this run; empty when alike. */
export function setupDifferences(baseline: ResultsSetup, current: ResultsSetup): string[] {
  const out: string[] = [];
  const fb = formatOf(baseline),
    fc = formatOf(current);
  if (fb && fc && fb !== fc) out.push(`prompt format: ${fb} in the baseline, ${fc} here`);
  const nb = baseline.summary?.overall?.count ?? baseline.meta?.count,
    nc = current.summary?.overall?.count ?? current.meta?.count;
  const key = (e: { id?: string | number; gold: string }): string => `${e.id ?? ''}\t${e.gold}`;
  let common: number | undefined;
  if (baseline.examples && current.examples) {
    const keys = new Set(baseline.examples.map(key));
    common = current.examples.filter((e) => keys.has(key(e))).length;
  }
  if (nb !== undefined && nc !== undefined && nb !== nc)
    out.push(
      `count: ${nb} questions in the baseline, ${nc} here${common !== undefined ? ` (${common} in common)` : ''}`,
    );
  else if (common !== undefined && nc !== undefined && common < nc)
    out.push(`eval set: ${nc - common} of the ${nc} questions differ from the baseline's`);
  return out;
}
