/**
 * The part of `sqlora mmlu --out results.json` a model card shows: overall and per-category
 * accuracy of the base and the adapted model, and the verdict line. Read tolerantly: a field
 * that is missing or shaped differently is left out of the card rather than failing publish,
 * as long as the file has a `summary` with an overall accuracy or a verdict.
 */
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

export interface MmluScore {
  /** Percent, 0-100. */
  pct: number;
  count?: number;
}

export interface MmluRow {
  name: string;
  base?: MmluScore;
  adapter?: MmluScore;
}

export interface MmluResults {
  path: string;
  overall: MmluRow;
  categories: MmluRow[];
  verdict?: string;
  /** Questions scored, when the file says. */
  questions?: number;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** An accuracy from a number or an object ({accuracy|acc: fraction or percent} or {pct|percent}). */
function score(v: unknown): MmluScore | undefined {
  if (isNum(v)) return { pct: v <= 1 ? 100 * v : v };
  if (!isObj(v)) return undefined;
  const count = [v.count, v.n, v.total, v.questions].find(isNum);
  const withCount = (pct: number): MmluScore => (count !== undefined ? { pct, count } : { pct });
  for (const k of ['pct', 'percent']) if (isNum(v[k])) return withCount(v[k]);
  for (const k of ['accuracy', 'acc']) if (isNum(v[k])) return withCount(v[k] <= 1 ? 100 * v[k] : v[k]);
  if (isNum(v.correct) && count !== undefined && count > 0) return withCount((100 * v.correct) / count);
  return undefined;
}

/** A row: {base, adapter} (or {before, after}) around two scores, or one score of one model. */
function row(name: string, v: unknown): MmluRow | undefined {
  if (!isObj(v) && !isNum(v)) return undefined;
  const base = isObj(v) ? score(v.base ?? v.before) : undefined;
  const adapter = isObj(v) ? score(v.adapter ?? v.after ?? v.finetuned) : undefined;
  if (base || adapter) return { name, ...(base ? { base } : {}), ...(adapter ? { adapter } : {}) };
  const single = score(v);
  return single ? { name, base: single } : undefined;
}

function verdictText(v: unknown): string | undefined {
  if (typeof v === 'string' && v.trim() !== '') return v.trim();
  if (!isObj(v)) return undefined;
  for (const k of ['text', 'line', 'summary', 'message', 'verdict', 'words']) {
    if (typeof v[k] === 'string' && (v[k] as string).trim() !== '') return (v[k] as string).trim();
  }
  return undefined;
}

export function readMmluResults(path: string): MmluResults {
  const raw = readJsonFile<unknown>(path, 'MMLU results');
  if (!isObj(raw) || !isObj(raw.summary))
    throw new UserError(`${path}: no "summary" object (expected the results.json of sqlora mmlu --out)`);
  const s = raw.summary;
  const overall = row('overall', s.overall);
  const verdict = verdictText(s.verdict);
  if (!overall && verdict === undefined)
    throw new UserError(
      `${path}: summary has neither an overall accuracy nor a verdict (expected sqlora mmlu results)`,
    );
  const cats = [s.categories, s.per_category, s.by_category, s.category].find(isObj) ?? {};
  const categories = Object.entries(cats)
    .map(([name, v]) => row(name, v))
    .filter((r): r is MmluRow => r !== undefined);
  const questions =
    overall?.adapter?.count ??
    overall?.base?.count ??
    (Array.isArray(raw.questions) ? raw.questions.length : undefined);
  return {
    path,
    overall: overall ?? { name: 'overall' },
    categories,
    ...(verdict !== undefined ? { verdict } : {}),
    ...(questions !== undefined ? { questions } : {}),
  };
}
