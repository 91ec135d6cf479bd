/**
 * Whether a change in accuracy between two models on the same questions is real:
 *
 * - a paired bootstrap (resampling questions with replacement, seeded) of the difference in
 *   accuracy, 95% percentile interval (numpy's linear interpolation between order statistics);
 * - McNemar's exact test: of the questions where exactly one model is right, is the split
 *   compatible with 50/50? Two-sided p = min(1, 2 * P(X <= min(b, c))), X ~ Binomial(b + c, 1/2);
 * - the questions a paired comparison needs to detect a difference (Connor 1987's sample size
 *   for McNemar's test, 80% power, two-sided alpha 0.05) and the smallest difference this run's
 *   question count can detect.
 */
import { mulberry32 } from '../util/random.js';

const ALPHA = 0.05;
const Z_ALPHA = 1.959963984540054; // two-sided 5%
const Z_POWER = 0.8416212335729143; // 80%

/** log(n!) by summation (exact enough for the counts here, up to millions). */
const logFactorials: number[] = [0];
function logFactorial(n: number): number {
  for (let k = logFactorials.length; k <= n; k++) logFactorials[k] = logFactorials[k - 1] + Math.log(k);
  return logFactorials[n];
}

/** McNemar's exact two-sided p-value from the discordant counts b and c. */
export function mcnemarExact(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  let tail = 0;
  const logHalfN = -n * Math.LN2;
  for (let i = 0; i <= k; i++) tail += Math.exp(logFactorial(n) - logFactorial(i) - logFactorial(n - i) + logHalfN);
  return Math.min(1, 2 * tail);
}

/** numpy.percentile's default (linear) on sorted values, q in [0, 1]. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface BootstrapResult {
  low: number;
  high: number;
  resamples: number;
  seed: number;
}

/**
 * 95% interval of mean(after - before) over questions, where before/after say whether each
 * model got each question right; resamples question indices uniformly with mulberry32(seed).
 */
export function pairedBootstrap(
  before: readonly boolean[],
  after: readonly boolean[],
  resamples = 10000,
  seed = 1234,
): BootstrapResult {
  const n = before.length;
  if (after.length !== n) throw new Error('pairedBootstrap: the two models scored different question counts');
  if (n === 0) return { low: 0, high: 0, resamples, seed };
  const d = Int8Array.from(before, (b, i) => Number(after[i]) - Number(b));
  const rand = mulberry32(seed);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[Math.floor(rand() * n)];
    means[r] = s / n;
  }
  means.sort();
  return { low: quantileSorted(means, 0.025), high: quantileSorted(means, 0.975), resamples, seed };
}

/**
 * Questions a paired comparison needs to detect accuracies p1 vs p2 (Connor's formula):
 * n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2, psi the share of questions where
 * the two models disagree. Without an observed psi, the models are taken to err independently:
 * psi = p1 (1 - p2) + p2 (1 - p1).
 */
export function questionsNeeded(p1: number, p2: number, discordance?: number): number {
  const delta = Math.abs(p1 - p2);
  if (delta === 0) return Infinity;
  const psi = Math.max(discordance ?? p1 * (1 - p2) + p2 * (1 - p1), delta);
  return Math.ceil((Z_ALPHA * Math.sqrt(psi) + Z_POWER * Math.sqrt(psi - delta * delta)) ** 2 / (delta * delta));
}

/** The smallest difference (as a fraction) that n questions detect with that discordance; null for none. */
export function detectableDifference(n: number, discordance: number): number | null {
  if (n <= 0 || discordance <= 0) return null;
  // n(delta) = questionsNeeded falls as delta grows: bisect on delta in (0, discordance].
  let lo = 0,
    hi = discordance;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    const need = (Z_ALPHA * Math.sqrt(discordance) + Z_POWER * Math.sqrt(discordance - mid * mid)) ** 2 / (mid * mid);
    if (need > n) lo = mid;
    else hi = mid;
  }
  return hi;
}

export interface Verdict {
  questions: number;
  base_accuracy: number;
  adapter_accuracy: number;
  /** adapter - base, as a fraction. */
  difference: number;
  ci95: [number, number];
  bootstrap: { resamples: number; seed: number };
  /** Questions only the base got right / only the adapter got right. */
  mcnemar: { base_only: number; adapter_only: number; p_value: number };
  significant: boolean;
  /**
   * The smallest difference this many questions detect (80% power, alpha 0.05, this run's
   * discordance); null where the two models agree on every question.
   */
  detectable_difference: number | null;
  line: string;
}

const pts = (x: number): string => (100 * x).toFixed(1);

export function verdict(before: readonly boolean[], after: readonly boolean[], seed = 1234): Verdict {
  const n = before.length;
  let baseOnly = 0,
    adapterOnly = 0,
    baseRight = 0,
    adapterRight = 0;
  for (let i = 0; i < n; i++) {
    if (before[i]) baseRight++;
    if (after[i]) adapterRight++;
    if (before[i] && !after[i]) baseOnly++;
    if (!before[i] && after[i]) adapterOnly++;
  }
  const p = mcnemarExact(baseOnly, adapterOnly);
  const boot = pairedBootstrap(before, after, 10000, seed);
  const acc0 = n ? baseRight / n : 0,
    acc1 = n ? adapterRight / n : 0;
  const diff = acc1 - acc0;
  const significant = p < ALPHA;
  const detectable = detectableDifference(n, n ? (baseOnly + adapterOnly) / n : 0);
  const what = !significant
    ? 'no significant change'
    : `significant ${diff < 0 ? 'drop' : 'gain'} of ${pts(Math.abs(diff))} points`;
  const line =
    `${what}: ${pts(acc0)}% -> ${pts(acc1)}% on ${n} questions ` +
    `(difference ${diff >= 0 ? '+' : ''}${pts(diff)}, 95% CI [${pts(boot.low)}, ${pts(boot.high)}], McNemar p = ${formatP(p)})`;
  return {
    questions: n,
    base_accuracy: acc0,
    adapter_accuracy: acc1,
    difference: diff,
    ci95: [boot.low, boot.high],
    bootstrap: { resamples: boot.resamples, seed: boot.seed },
    mcnemar: { base_only: baseOnly, adapter_only: adapterOnly, p_value: p },
    significant,
    detectable_difference: detectable,
    line,
  };
}

function formatP(p: number): string {
  if (p >= 0.001) return p.toFixed(3);
  return p.toExponential(1);
}

/** The reference workflow's case: 25% before, 16% after, on 50 questions. */
const REFERENCE_CASE = { before: 0.25, after: 0.16, questions: 50 } as const;

/** One line on what a difference the size of the reference workflow's needs. */
export function powerLine(): string {
  const need = questionsNeeded(REFERENCE_CASE.before, REFERENCE_CASE.after);
  const p = mcnemarAtReference();
  return (
    `a 25% vs 16% difference (the reference workflow's, on ${REFERENCE_CASE.questions} questions) needs about ${need} questions ` +
    `to be detected (80% power, alpha 0.05, paired); on ${REFERENCE_CASE.questions} questions its McNemar p would be about ${formatP(p)}`
  );
}

/** McNemar p for the reference case if the models erred independently (expected discordant counts, rounded). */
function mcnemarAtReference(): number {
  const { before, after, questions } = REFERENCE_CASE;
  const baseOnly = Math.round(questions * before * (1 - after));
  const adapterOnly = Math.round(questions * after * (1 - before));
  return mcnemarExact(baseOnly, adapterOnly);
}
