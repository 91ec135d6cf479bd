/**
 * Spider's hardness level of a query (Evaluator.eval_hardness of the official evaluation.py):
 * counts of "component 1" clauses (WHERE, GROUP BY, ORDER BY, LIMIT, joins, OR, LIKE),
 * nested queries, and "other" complexity (several aggregates, select columns, conditions,
 * group keys) decide between easy, medium, hard and extra.
 */
import type { SpiderSchema } from './spiderSchema.js';
import { parseSpiderSql } from './sqlParse.js';
import { OP_LIKE, OfficialEvaluatorFailure, SQL_OPS, evenSlots, isSql, oddSlots, type SpiderSql } from './spiderSql.js';

export type Hardness = 'easy' | 'medium' | 'hard' | 'extra';
export const HARDNESS_LEVELS: readonly Hardness[] = ['easy', 'medium', 'hard', 'extra'];

/** Hardness of a (gold) query; throws where the official evaluator fails on it (parse errors included). */
export function spiderHardness(sql: string, schema: SpiderSchema): Hardness {
  try {
    return hardnessOf(parseSpiderSql(sql, schema));
  } catch (err) {
    throw new Error(`Spider's evaluator does not accept the query (${(err as Error).message}): ${sql}`, { cause: err });
  }
}

function hardnessOf(sql: SpiderSql): Hardness {
  const c1 = componentOneCount(sql);
  const c2 = nestedCount(sql);
  const others = otherCount(sql);
  if (c1 <= 1 && others === 0 && c2 === 0) return 'easy';
  if ((others <= 2 && c1 <= 1 && c2 === 0) || (c1 <= 2 && others < 2 && c2 === 0)) return 'medium';
  if (
    (others > 2 && c1 <= 2 && c2 === 0) ||
    (c1 > 2 && c1 <= 3 && others <= 2 && c2 === 0) ||
    (c1 <= 1 && others === 0 && c2 <= 1)
  ) {
    return 'hard';
  }
  return 'extra';
}

const conditions = (sql: SpiderSql) => [sql.from.conds, sql.where, sql.having];

function componentOneCount(sql: SpiderSql): number {
  let n = [sql.where.length > 0, sql.groupBy.length > 0, sql.orderBy.length > 0, sql.limit !== null].filter(
    Boolean,
  ).length;
  n += Math.max(0, sql.from.table_units.length - 1);
  n += conditions(sql)
    .flatMap(oddSlots)
    .filter((x) => x === 'or').length;
  // A stray 'and'/'or' in a condition slot is indexed as a string there; it is never LIKE.
  n += conditions(sql)
    .flatMap(evenSlots)
    .filter((u) => typeof u !== 'string' && u[1] === OP_LIKE).length;
  return n;
}

/** Subqueries used as condition values, plus INTERSECT/UNION/EXCEPT parts. */
function nestedCount(sql: SpiderSql): number {
  let n = 0;
  for (const unit of conditions(sql).flatMap(evenSlots)) {
    if (typeof unit === 'string') throw new OfficialEvaluatorFailure(`IndexError: condition slot holds '${unit}'`);
    n += (isSql(unit[3]) ? 1 : 0) + (isSql(unit[4]) ? 1 : 0);
  }
  return n + SQL_OPS.filter((op) => sql[op] !== null).length;
}

function otherCount(sql: SpiderSql): number {
  // The official count_agg reads slot 0 of whatever it is given: for condition units that is
  // the NOT flag, and every 'and'/'or' of HAVING counts too. Reproduced as is.
  let aggs = sql.select[1].filter(([agg]) => agg !== 0).length;
  aggs += evenSlots(sql.where).filter((u) => typeof u === 'string' || u[0]).length;
  aggs += sql.groupBy.filter(([agg]) => agg !== 0).length;
  const [, orderKeys] = sql.orderBy;
  if (orderKeys !== undefined) {
    const cols = orderKeys.flatMap(([, left, right]) => (right ? [left, right] : [left]));
    aggs += cols.filter(([agg]) => agg !== 0).length;
  }
  aggs += sql.having.filter((u) => typeof u === 'string' || u[0]).length;
  let n = aggs > 1 ? 1 : 0;
  if (sql.select[1].length > 1) n++;
  if (sql.where.length > 1) n++;
  if (sql.groupBy.length > 1) n++;
  return n;
}
