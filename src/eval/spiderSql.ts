/**
 * Spider's SQL structure (the `sql` dict of process_sql.py) and the Python value semantics the
 * official evaluator compares it with. Tuples and lists are both arrays here; the official
 * structures never compare a tuple with a list of the same length, so that loses nothing.
 */

export const CLAUSE_KEYWORDS = ['select', 'from', 'where', 'group', 'order', 'limit', 'intersect', 'union', 'except'];
export const JOIN_KEYWORDS = ['join', 'on', 'as'];
export const WHERE_OPS = ['not', 'between', '=', '>', '<', '>=', '<=', '!=', 'in', 'like', 'is', 'exists'];
export const UNIT_OPS = ['none', '-', '+', '*', '/'];
export const AGG_OPS = ['none', 'max', 'min', 'count', 'sum', 'avg'];
export const SQL_OPS = ['intersect', 'union', 'except'] as const;
export const ORDER_OPS = ['desc', 'asc'];

export const OP_IN = WHERE_OPS.indexOf('in');
export const OP_LIKE = WHERE_OPS.indexOf('like');

/** [aggregate id, column id such as `__singer.name__`, DISTINCT inside the call (null once ignored)]. */
export type ColUnit = [agg: number, col: string, distinct: boolean | null];
/** [arithmetic operator id, left column, right column or null]. */
export type ValUnit = [op: number, left: ColUnit, right: ColUnit | null];
/** A condition operand: number, quoted string token, column, subquery; null once values are dropped. */
export type Value = number | string | ColUnit | SpiderSql | null;
export type CondUnit = [not: boolean, op: number, left: ValUnit, val1: Value, val2: Value];
/**
 * Condition units alternating with 'and'/'or'. The official parser does not enforce the
 * alternation (two conditions may follow each other), so any slot may hold either kind.
 */
export type Condition = (CondUnit | string)[];
export type TableUnit = ['table_unit', string] | ['sql', SpiderSql];
export type SelectItem = [agg: number, value: ValUnit];

export interface SpiderSql {
  select: [distinct: boolean | null, items: SelectItem[]];
  from: { table_units: TableUnit[]; conds: Condition };
  where: Condition;
  groupBy: ColUnit[];
  having: Condition;
  /** [] without ORDER BY, else the last direction given and the keys. */
  orderBy: [] | [direction: string, keys: ValUnit[]];
  /** The official parser records any LIMIT as 1 (it compares a string token to int). */
  limit: number | null;
  intersect: SpiderSql | null;
  union: SpiderSql | null;
  except: SpiderSql | null;
}

/** What evaluation.py substitutes for a prediction that does not parse. */
export function emptySpiderSql(): SpiderSql {
  return {
    select: [false, []],
    from: { table_units: [], conds: [] },
    where: [],
    groupBy: [],
    having: [],
    orderBy: [],
    limit: null,
    intersect: null,
    union: null,
    except: null,
  };
}

/** Raised where the official evaluator itself would raise after parsing (e.g. a TypeError). */
export class OfficialEvaluatorFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OfficialEvaluatorFailure';
  }
}

/** The even slots (condition units, normally) of a condition: Python's `conds[::2]`. */
export const evenSlots = <T>(xs: readonly T[]): T[] => xs.filter((_, i) => i % 2 === 0);
/** The odd slots ('and'/'or', normally): Python's `conds[1::2]`. */
export const oddSlots = <T>(xs: readonly T[]): T[] => xs.filter((_, i) => i % 2 === 1);

export const isSql = (v: unknown): v is SpiderSql => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Python `==` on these structures: bool and number compare numerically, NaN differs from itself. */
export function pyEq(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  const ta = typeof a;
  const tb = typeof b;
  if ((ta === 'number' || ta === 'boolean') && (tb === 'number' || tb === 'boolean')) return Number(a) === Number(b);
  if (ta !== 'object' || tb !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => pyEq(x, b[i]));
  }
  const ka = Object.keys(a as object);
  const ob = b as Record<string, unknown>;
  if (ka.length !== Object.keys(ob).length) return false;
  return ka.every((k) => k in ob && pyEq((a as Record<string, unknown>)[k], ob[k]));
}

/** Python `x in xs`. */
export const pyIn = (x: unknown, xs: readonly unknown[]): boolean => xs.some((y) => pyEq(x, y));

/** Python `xs.remove(x)` where x is known to be present: drops the first equal element. */
export function removeFirstEqual(xs: unknown[], x: unknown): void {
  xs.splice(
    xs.findIndex((y) => pyEq(x, y)),
    1,
  );
}

/**
 * A key with Python's hash equality for hashable values (tuples of numbers, strings, None);
 * a dict inside makes Python's set() raise, and so does this.
 */
export function pyHashKey(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'boolean' || typeof x === 'number') return `n:${Number(x)}`;
    if (typeof x === 'string') return `s:${x}`;
    if (isSql(x)) throw new OfficialEvaluatorFailure("TypeError: unhashable type: 'dict'");
    return x;
  });
}
