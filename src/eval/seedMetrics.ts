/**
 * The reference workflow's two string metrics, kept so its published numbers can be reproduced
 * (6.00% / 54.75% after fine-tuning). They compare text, not meaning: `SELECT name FROM t` and
 * `SELECT t.name FROM t` differ. See ../shared/seed/README.md for the definitions.
 */

/** Lower-cased, whitespace collapsed to single spaces, trailing semicolons removed. */
export function normalizeSeedSql(sql: string): string {
  return sql
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .join(' ')
    .replace(/[\s;]+$/, '');
}

/** True when the normalized strings are equal. */
export function seedExactMatch(gold: string, pred: string): boolean {
  return normalizeSeedSql(gold) === normalizeSeedSql(pred);
}

/** Share of the distinct gold tokens (whitespace-split, normalized) that the prediction contains, in [0, 1]. */
export function seedTokenMatch(gold: string, pred: string): number {
  const goldTokens = new Set(normalizeSeedSql(gold).split(' ').filter(Boolean));
  if (goldTokens.size === 0) return 0;
  const predTokens = new Set(normalizeSeedSql(pred).split(' '));
  let shared = 0;
  for (const t of goldTokens) if (predTokens.has(t)) shared++;
  return shared / goldTokens.size;
}
