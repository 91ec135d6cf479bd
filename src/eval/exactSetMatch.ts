/**
 * Spider's exact-set-match, deciding as the official evaluation.py does with its defaults:
 * condition values are dropped (except inside subqueries), DISTINCT is ignored, columns joined
 * by a foreign key are unified, and the clauses are compared as sets component by component
 * (Evaluator.eval_exact_match). A prediction that does not parse is scored, as officially,
 * as an empty query (which never matches).
 */
import type { ForeignKeyMap, SpiderSchema } from './spiderSchema.js';
import { parseSpiderSql } from './sqlParse.js';
import {
  OP_IN,
  OP_LIKE,
  OfficialEvaluatorFailure,
  SQL_OPS,
  emptySpiderSql,
  evenSlots,
  isSql,
  oddSlots,
  pyEq,
  pyHashKey,
  pyIn,
  removeFirstEqual,
  type ColUnit,
  type CondUnit,
  type Condition,
  type SpiderSql,
  type TableUnit,
  type ValUnit,
} from './spiderSql.js';

export interface ExactMatchResult {
  match: boolean;
  /** Why the prediction could not be compared normally (it did not parse, or the official code fails on it). */
  error?: string;
}

/**
 * Official exact-set-match of one prediction against its gold query. Throws when the gold
 * query itself does not parse (the official script stops there too).
 */
export function exactSetMatch(
  gold: string,
  pred: string,
  schema: SpiderSchema,
  fkMap: ForeignKeyMap,
): ExactMatchResult {
  let goldSql: SpiderSql;
  try {
    goldSql = normalize(parseSpiderSql(gold, schema), schema, fkMap);
  } catch (err) {
    throw new Error(`gold query is not accepted by Spider's parser (${(err as Error).message}): ${gold}`, {
      cause: err,
    });
  }
  let error: string | undefined;
  let predSql: SpiderSql;
  try {
    // evaluation.py replaces every "value" in a prediction (a placeholder some models emit).
    predSql = parseSpiderSql(pred.replaceAll('value', '1'), schema);
  } catch (err) {
    predSql = emptySpiderSql();
    error = `prediction does not parse: ${(err as Error).message}`;
  }
  try {
    const match = exactMatch(normalize(predSql, schema, fkMap), goldSql);
    return error === undefined ? { match } : { match, error };
  } catch (err) {
    if (!(err instanceof OfficialEvaluatorFailure)) throw err;
    return { match: false, error: `the official evaluator fails on this prediction (${err.message})` };
  }
}

/** rebuild_sql_val then rebuild_sql_col, as evaluation.py applies them to both queries. */
function normalize(sql: SpiderSql, schema: SpiderSchema, fkMap: ForeignKeyMap): SpiderSql {
  return unifyColumns(withoutValues(sql), validColumns(sql.from.table_units, schema), fkMap);
}

/** Even slots are unpacked as 5-tuples by the official rebuild; a stray 'and'/'or' there fails. */
function asCondUnit(item: CondUnit | string): CondUnit {
  if (typeof item === 'string')
    throw new OfficialEvaluatorFailure(`ValueError: cannot unpack '${item}' as a condition`);
  return item;
}

const mapEvenSlots = (cond: Condition, f: (c: CondUnit) => CondUnit): Condition =>
  cond.map((item, i) => (i % 2 === 0 ? f(asCondUnit(item)) : item));

/** Drops literal values from conditions (subqueries stay, themselves without values). */
function withoutValues(sql: SpiderSql): SpiderSql {
  const dropValues = (cond: Condition) =>
    mapEvenSlots(cond, ([not, op, left, v1, v2]): CondUnit => [
      not,
      op,
      left,
      isSql(v1) ? withoutValues(v1) : null,
      isSql(v2) ? withoutValues(v2) : null,
    ]);
  const out: SpiderSql = {
    ...sql,
    from: { table_units: sql.from.table_units, conds: dropValues(sql.from.conds) },
    where: dropValues(sql.where),
    having: dropValues(sql.having),
  };
  for (const op of SQL_OPS) out[op] = sql[op] && withoutValues(sql[op]);
  return out;
}

/** Columns of the tables named in FROM: the only ones whose foreign keys get unified. */
function validColumns(tableUnits: readonly TableUnit[], schema: SpiderSchema): Set<string> {
  const prefixes = new Set(tableUnits.flatMap((t) => (t[0] === 'table_unit' ? [t[1].slice(0, -2)] : [])));
  const valid = new Set<string>();
  for (const id of schema.idMap.values()) {
    if (id.includes('.') && prefixes.has(id.slice(0, id.indexOf('.')))) valid.add(id);
  }
  return valid;
}

/**
 * Maps foreign-key columns to their group's representative and drops DISTINCT flags, in the
 * clauses the official rebuild visits (not inside condition subqueries or FROM subqueries;
 * set operations reuse the outer query's FROM columns).
 */
function unifyColumns(sql: SpiderSql, valid: ReadonlySet<string>, fkMap: ForeignKeyMap): SpiderSql {
  const col = ([agg, id]: ColUnit): ColUnit => [agg, valid.has(id) ? (fkMap.get(id) ?? id) : id, null];
  const val = ([op, left, right]: ValUnit): ValUnit => [op, col(left), right && col(right)];
  const cond = (c: Condition) => mapEvenSlots(c, ([not, op, left, v1, v2]) => [not, op, val(left), v1, v2]);
  const out: SpiderSql = {
    ...sql,
    select: [null, sql.select[1].map(([agg, v]) => [agg, val(v)])],
    from: { table_units: sql.from.table_units, conds: cond(sql.from.conds) },
    where: cond(sql.where),
    groupBy: sql.groupBy.map(col),
    orderBy: sql.orderBy.length === 0 ? [] : [sql.orderBy[0], sql.orderBy[1].map(val)],
    having: cond(sql.having),
  };
  for (const op of SQL_OPS) out[op] = sql[op] && unifyColumns(sql[op], valid, fkMap);
  return out;
}

/** get_scores' F1 is 1 exactly when both sides have as many items and all predicted ones matched. */
const allMatched = (matched: number, predTotal: number, labelTotal: number) =>
  predTotal === labelTotal && matched === predTotal;

/** Multiset match of predicted items against gold ones, on the whole item and on a part of it. */
function bagScores<T>(pred: readonly T[], label: readonly T[], part: (x: T) => unknown): [boolean, boolean] {
  const rest: unknown[] = [...label];
  const restParts = label.map(part);
  let whole = 0;
  let parts = 0;
  for (const unit of pred) {
    if (pyIn(unit, rest)) {
      whole++;
      removeFirstEqual(rest, unit);
    }
    if (pyIn(part(unit), restParts)) {
      parts++;
      removeFirstEqual(restParts, part(unit));
    }
  }
  return [allMatched(whole, pred.length, label.length), allMatched(parts, pred.length, label.length)];
}

function groupByMatches(pred: SpiderSql, label: SpiderSql): boolean {
  const name = (u: ColUnit) => (u[1].includes('.') ? u[1].split('.')[1] : u[1]);
  const rest = label.groupBy.map(name);
  let matched = 0;
  for (const col of pred.groupBy.map(name)) {
    const at = rest.indexOf(col);
    if (at >= 0) {
      matched++;
      rest.splice(at, 1);
    }
  }
  return allMatched(matched, pred.groupBy.length, label.groupBy.length);
}

function havingMatches(pred: SpiderSql, label: SpiderSql): boolean {
  const [p, l] = [pred.groupBy.length > 0 ? 1 : 0, label.groupBy.length > 0 ? 1 : 0];
  const same =
    p === 1 &&
    l === 1 &&
    pyEq(
      pred.groupBy.map((u) => u[1]),
      label.groupBy.map((u) => u[1]),
    ) &&
    pyEq(pred.having, label.having);
  return allMatched(same ? 1 : 0, p, l);
}

function orderMatches(pred: SpiderSql, label: SpiderSql): boolean {
  const [p, l] = [pred.orderBy.length > 0 ? 1 : 0, label.orderBy.length > 0 ? 1 : 0];
  const same = l === 1 && pyEq(pred.orderBy, label.orderBy) && (pred.limit === null) === (label.limit === null);
  return allMatched(same ? 1 : 0, p, l);
}

/** The sets of WHERE conjunctions must be equal (a stray condition in an odd slot is hashed as Python would). */
function andOrMatches(pred: SpiderSql, label: SpiderSql): boolean {
  const keys = (c: Condition) => new Set(oddSlots(c).map(pyHashKey));
  const [p, l] = [keys(pred.where), keys(label.where)];
  return p.size === l.size && [...p].every((k) => l.has(k));
}

function setOpsMatch(pred: SpiderSql, label: SpiderSql): boolean {
  let [p, l, matched] = [0, 0, 0];
  for (const op of SQL_OPS) {
    const [ps, ls] = [pred[op], label[op]];
    if (ps) p++;
    if (ls) l++;
    if (ps && ls && exactMatch(ps, ls)) matched++;
  }
  return allMatched(matched, p, l);
}

function keywords(sql: SpiderSql): Set<string> {
  const res = new Set<string>();
  if (sql.where.length > 0) res.add('where');
  if (sql.groupBy.length > 0) res.add('group');
  if (sql.having.length > 0) res.add('having');
  const [direction] = sql.orderBy;
  if (direction !== undefined) res.add(direction).add('order');
  if (sql.limit !== null) res.add('limit');
  for (const op of SQL_OPS) if (sql[op]) res.add(op);
  const conds = [sql.from.conds, sql.where, sql.having];
  if (conds.some((c) => oddSlots(c).includes('or'))) res.add('or');
  const units = conds.flatMap((c) => evenSlots(c).map(asCondUnit));
  if (units.some((u) => u[0])) res.add('not');
  if (units.some((u) => u[1] === OP_IN)) res.add('in');
  if (units.some((u) => u[1] === OP_LIKE)) res.add('like');
  return res;
}

function keywordsMatch(pred: SpiderSql, label: SpiderSql): boolean {
  const [p, l] = [keywords(pred), keywords(label)];
  return allMatched([...p].filter((k) => l.has(k)).length, p.size, l.size);
}

/**
 * Python's `sorted(a) == sorted(b)` on table units: a multiset comparison, except that sorting
 * two different subqueries compares dicts with `<`, which raises.
 */
function tableUnitsEqual(label: readonly TableUnit[], pred: readonly TableUnit[]): boolean {
  for (const side of [label, pred]) {
    const subqueries = side.filter((t) => t[0] === 'sql');
    if (subqueries.some((t) => !pyEq(t, subqueries[0]))) {
      throw new OfficialEvaluatorFailure("TypeError: '<' not supported between instances of 'dict' and 'dict'");
    }
  }
  if (label.length !== pred.length) return false;
  const rest: unknown[] = [...label];
  for (const unit of pred) {
    if (!pyIn(unit, rest)) return false;
    removeFirstEqual(rest, unit);
  }
  return true;
}

/** Evaluator.eval_exact_match on two rebuilt queries: every component's F1 must be 1, then FROM. */
function exactMatch(pred: SpiderSql, label: SpiderSql): boolean {
  const where = (s: SpiderSql) => evenSlots(s.where).map(asCondUnit);
  // Every component is computed before deciding, so a failure in any of them surfaces as officially.
  const components = [
    ...bagScores(pred.select[1], label.select[1], (u) => u[1]),
    ...bagScores(where(pred), where(label), (u) => u[2]),
    groupByMatches(pred, label),
    havingMatches(pred, label),
    orderMatches(pred, label),
    andOrMatches(pred, label),
    setOpsMatch(pred, label),
    keywordsMatch(pred, label),
  ];
  if (!components.every(Boolean)) return false;
  return label.from.table_units.length === 0 || tableUnitsEqual(label.from.table_units, pred.from.table_units);
}
