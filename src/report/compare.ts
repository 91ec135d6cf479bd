/**
 * Baseline against fine-tuned: every metric overall and per Spider hardness with its change,
 * and the examples whose answer turned from wrong to right or right to wrong.
 *
 * When both files hold per-example results for different question sets (the reference
 * workflow scored 500 questions before and 200 after), both summaries are recomputed over the
 * questions they share, so a change is never a change of questions.
 */
import { summarize, type ExampleResult, type LevelSummary, type Summary } from '../eval/evaluate.js';
import { BIRD_DIFFICULTIES, type BirdDifficulty } from '../eval/birdExecution.js';
import { HARDNESS_LEVELS, type Hardness } from '../eval/hardness.js';
import type { ResultsFile } from './inputs.js';

export type MetricName = 'seed_exact' | 'seed_token' | 'exact_set_match' | 'execution';

export const METRICS: readonly { name: MetricName; label: string }[] = [
  { name: 'execution', label: 'Execution accuracy' },
  { name: 'exact_set_match', label: 'Exact-set-match' },
  { name: 'seed_exact', label: 'Exact string match (seed)' },
  { name: 'seed_token', label: 'Token match (seed)' },
];

export type LevelName = 'overall' | Hardness | BirdDifficulty;
/** Spider's hardness levels, or BIRD's difficulties where the results have them. */
export const LEVELS: readonly LevelName[] = ['overall', ...HARDNESS_LEVELS, ...BIRD_DIFFICULTIES];

export interface MetricRow {
  level: LevelName;
  metric: MetricName;
  label: string;
  /** Questions at this level in each file (null: the file has no such level). */
  count: { before: number | null; after: number | null };
  before: number | null;
  after: number | null;
  /** after - before, in percentage points; null unless both are known. */
  delta: number | null;
}

export interface Alignment {
  before: Summary | null;
  after: Summary | null;
  /** Set when the summaries were recomputed over shared questions: how many, of how many each. */
  restricted: { shared: number; before: number; after: number } | null;
}

/** Identity of an example across files: its id when every example has one, else its position. */
function keyOf(useId: boolean): (e: ExampleResult) => string {
  return useId ? (e) => String(e.id) : (e) => `#${e.index}`;
}

function keysUseId(a: readonly ExampleResult[], b: readonly ExampleResult[]): boolean {
  return [...a, ...b].every((e) => e.id !== undefined && e.id !== null);
}

export function alignResults(before: ResultsFile | null, after: ResultsFile | null): Alignment {
  if (!before || !after || before.examples.length === 0 || after.examples.length === 0) {
    return { before: before?.summary ?? null, after: after?.summary ?? null, restricted: null };
  }
  const key = keyOf(keysUseId(before.examples, after.examples));
  const afterKeys = new Set(after.examples.map(key));
  const beforeKeys = new Set(before.examples.map(key));
  const sameSet = afterKeys.size === beforeKeys.size && [...afterKeys].every((k) => beforeKeys.has(k));
  if (sameSet) return { before: before.summary, after: after.summary, restricted: null };
  const b = before.examples.filter((e) => afterKeys.has(key(e)));
  const a = after.examples.filter((e) => beforeKeys.has(key(e)));
  return {
    before: b.length ? summarize(b) : null,
    after: a.length ? summarize(a) : null,
    restricted: { shared: a.length, before: before.examples.length, after: after.examples.length },
  };
}

export function metricRows(al: Alignment): MetricRow[] {
  const rows: MetricRow[] = [];
  const levelOf = (s: Summary | null, level: LevelName): LevelSummary | null =>
    s
      ? level === 'overall'
        ? s.overall
        : ((s.by_hardness as Record<string, LevelSummary | undefined>)[level] ??
          s.by_difficulty?.[level as BirdDifficulty] ??
          null)
      : null;
  for (const level of LEVELS) {
    const b = levelOf(al.before, level);
    const a = levelOf(al.after, level);
    if (!b && !a) continue;
    for (const { name, label } of METRICS) {
      const before = b?.[name]?.pct ?? null;
      const after = a?.[name]?.pct ?? null;
      // A metric neither file computed (no databases given) is left out rather than shown empty.
      if (before === null && after === null) continue;
      rows.push({
        level,
        metric: name,
        label,
        count: { before: b?.count ?? null, after: a?.count ?? null },
        before,
        after,
        delta: before !== null && after !== null ? after - before : null,
      });
    }
  }
  return rows;
}

export interface ExamplePair {
  key: string;
  id: string | number | undefined;
  db_id: string;
  hardness: Hardness | null;
  question: string | undefined;
  gold: string;
  before: ExampleResult;
  after: ExampleResult;
}

export interface ChangedExamples {
  /** The metric that decides right or wrong: execution, else exact-set-match, else seed exact match. */
  metric: MetricName;
  fixed: ExamplePair[];
  broken: ExamplePair[];
  fixedCount: number;
  brokenCount: number;
  /** Only when nothing flipped: the largest token-match gains and losses (the toy demo's case). */
  gained: ExamplePair[];
  lost: ExamplePair[];
  shared: number;
}

/** Examples that changed, at most `limit` of each kind, in file order (largest token-match changes first for gains/losses). */
export function changedExamples(before: ResultsFile, after: ResultsFile, limit: number): ChangedExamples | null {
  if (before.examples.length === 0 || after.examples.length === 0) return null;
  const key = keyOf(keysUseId(before.examples, after.examples));
  const byKey = new Map(before.examples.map((e) => [key(e), e]));
  const pairs: ExamplePair[] = [];
  for (const a of after.examples) {
    const b = byKey.get(key(a));
    if (!b) continue;
    const id = a.id ?? b.id;
    const question =
      id !== undefined ? (after.questions.get(String(id)) ?? before.questions.get(String(id))) : undefined;
    pairs.push({
      key: key(a),
      id,
      db_id: a.db_id,
      hardness: a.hardness ?? b.hardness ?? null,
      question,
      gold: a.gold,
      before: b,
      after: a,
    });
  }
  if (pairs.length === 0) return null;
  const metric: MetricName =
    (['execution', 'exact_set_match'] as const).find((m) =>
      pairs.every((p) => p.before[m] !== null && p.after[m] !== null),
    ) ?? 'seed_exact';
  const right = (e: ExampleResult): boolean => e[metric] === true;
  const fixed = pairs.filter((p) => !right(p.before) && right(p.after));
  const broken = pairs.filter((p) => right(p.before) && !right(p.after));
  let gained: ExamplePair[] = [];
  let lost: ExamplePair[] = [];
  if (fixed.length === 0 && broken.length === 0) {
    const change = (p: ExamplePair): number => p.after.seed_token - p.before.seed_token;
    gained = pairs
      .filter((p) => change(p) > 0)
      .sort((x, y) => change(y) - change(x))
      .slice(0, limit);
    lost = pairs
      .filter((p) => change(p) < 0)
      .sort((x, y) => change(x) - change(y))
      .slice(0, limit);
  }
  return {
    metric,
    fixed: fixed.slice(0, limit),
    broken: broken.slice(0, limit),
    fixedCount: fixed.length,
    brokenCount: broken.length,
    gained,
    lost,
    shared: pairs.length,
  };
}
