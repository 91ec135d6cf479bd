/**
 * Parser from SQL text to Spider's SQL structure, deciding exactly as the official
 * process_sql.get_sql does — including what it rejects (aliases without AS, comma joins,
 * IN lists, `a>=1` without spaces) and what it silently ignores (tokens after a complete
 * ORDER BY, the LIMIT count). Its assumptions: only tables have aliases, the FROM clause is
 * a chain of JOINs, the select list's bare columns resolve against the FROM tables in order.
 */
import type { SpiderSchema } from './spiderSchema.js';
import { spiderTokenize } from './sqlTokenize.js';
import {
  AGG_OPS,
  CLAUSE_KEYWORDS,
  JOIN_KEYWORDS,
  ORDER_OPS,
  SQL_OPS,
  UNIT_OPS,
  WHERE_OPS,
  type ColUnit,
  type CondUnit,
  type Condition,
  type SelectItem,
  type SpiderSql,
  type TableUnit,
  type ValUnit,
  type Value,
} from './spiderSql.js';

/** Raised where the official parser raises; the message says which rule failed. */
export class SpiderParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpiderParseError';
  }
}

interface Context {
  schema: SpiderSchema;
  /** Alias (or table name) -> table name, from every `x AS y` in the query plus the schema's tables. */
  aliases: Map<string, string>;
}

type Toks = readonly string[];

/** Parses one query; throws SpiderParseError (or SqlTokenizeError) where the official parser fails. */
export function parseSpiderSql(sql: string, schema: SpiderSchema): SpiderSql {
  const toks = spiderTokenize(sql);
  const ctx: Context = { schema, aliases: tableAliases(toks, schema) };
  return parseQuery(toks, 0, ctx)[1];
}

/** Python's toks[i], failing past the end like its IndexError. */
function at(toks: Toks, i: number): string {
  const t = i < 0 ? toks[toks.length + i] : toks[i];
  if (t === undefined) throw new SpiderParseError('unexpected end of query');
  return t;
}

function expect(cond: boolean, message: string): asserts cond {
  if (!cond) throw new SpiderParseError(message);
}

const isClauseEnd = (t: string) => CLAUSE_KEYWORDS.includes(t) || t === ')' || t === ';';

function tableAliases(toks: Toks, schema: SpiderSchema): Map<string, string> {
  const aliases = new Map<string, string>();
  toks.forEach((t, i) => {
    if (t === 'as') {
      const target = at(toks, i - 1);
      aliases.set(at(toks, i + 1), target);
    }
  });
  for (const table of schema.tables.keys()) {
    expect(!aliases.has(table), `alias ${table} has the same name as a table`);
    aliases.set(table, table);
  }
  return aliases;
}

function resolveAlias(ctx: Context, alias: string): string {
  const table = ctx.aliases.get(alias);
  if (table === undefined) throw new SpiderParseError(`unknown table or alias: ${alias}`);
  return table;
}

function schemaId(ctx: Context, key: string): string {
  const id = ctx.schema.idMap.get(key);
  if (id === undefined) throw new SpiderParseError(`not in the schema: ${key}`);
  return id;
}

function parseColumn(toks: Toks, start: number, ctx: Context, defaultTables: readonly string[]): [number, string] {
  const tok = at(toks, start);
  if (tok === '*') return [start + 1, schemaId(ctx, tok)];
  if (tok.includes('.')) {
    const parts = tok.split('.');
    expect(parts.length === 2, `malformed column: ${tok}`);
    return [start + 1, schemaId(ctx, `${resolveAlias(ctx, parts[0])}.${parts[1]}`)];
  }
  expect(defaultTables.length > 0, `column ${tok} has no table to resolve against`);
  for (const alias of defaultTables) {
    const table = resolveAlias(ctx, alias);
    const cols = ctx.schema.tables.get(table);
    if (cols === undefined) throw new SpiderParseError(`not a table: ${table}`);
    if (cols.includes(tok)) return [start + 1, schemaId(ctx, `${table}.${tok}`)];
  }
  throw new SpiderParseError(`unknown column: ${tok}`);
}

function parseColUnit(toks: Toks, start: number, ctx: Context, defaultTables: readonly string[]): [number, ColUnit] {
  let idx = start;
  const block = at(toks, idx) === '(';
  if (block) idx++;
  let distinct = false;
  const agg = AGG_OPS.indexOf(at(toks, idx));
  if (agg >= 0) {
    idx++;
    expect(toks[idx] === '(', `expected ( after ${AGG_OPS[agg]}`);
    idx++;
    if (at(toks, idx) === 'distinct') {
      idx++;
      distinct = true;
    }
    const [next, col] = parseColumn(toks, idx, ctx, defaultTables);
    expect(toks[next] === ')', `expected ) to close ${AGG_OPS[agg]}(`);
    // An opening parenthesis before the aggregate is not required to close (as officially).
    return [next + 1, [agg, col, distinct]];
  }
  if (at(toks, idx) === 'distinct') {
    idx++;
    distinct = true;
  }
  const [next, col] = parseColumn(toks, idx, ctx, defaultTables);
  idx = next;
  if (block) {
    expect(at(toks, idx) === ')', 'expected ) after a column');
    idx++;
  }
  return [idx, [0, col, distinct]];
}

function parseValUnit(toks: Toks, start: number, ctx: Context, defaultTables: readonly string[]): [number, ValUnit] {
  let idx = start;
  const block = at(toks, idx) === '(';
  if (block) idx++;
  let op = 0;
  let right: ColUnit | null = null;
  const [afterLeft, left] = parseColUnit(toks, idx, ctx, defaultTables);
  idx = afterLeft;
  if (idx < toks.length && UNIT_OPS.includes(toks[idx])) {
    op = UNIT_OPS.indexOf(toks[idx]);
    [idx, right] = parseColUnit(toks, idx + 1, ctx, defaultTables);
  }
  if (block) {
    expect(at(toks, idx) === ')', 'expected ) after an expression');
    idx++;
  }
  return [idx, [op, left, right]];
}

function parseTableUnit(toks: Toks, start: number, ctx: Context): [number, string, string] {
  const table = resolveAlias(ctx, at(toks, start));
  const next = start + 1 < toks.length && toks[start + 1] === 'as' ? start + 3 : start + 1;
  return [next, schemaId(ctx, table), table];
}

const DIGITS = '\\d(?:_?\\d)*';
const PY_FLOAT = new RegExp(
  `^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:e[+-]?${DIGITS})?|inf(?:inity)?|nan)$`,
  'i',
);

/** Python's float() on a token (the official parser tries it before reading a column). */
function pyFloat(tok: string): number | null {
  if (!PY_FLOAT.test(tok)) return null;
  const plain = tok.replace(/_/g, '').toLowerCase();
  if (plain.endsWith('nan')) return NaN;
  if (plain.endsWith('inf') || plain.endsWith('infinity')) return plain.startsWith('-') ? -Infinity : Infinity;
  return Number(plain);
}

function parseValue(toks: Toks, start: number, ctx: Context, defaultTables: readonly string[]): [number, Value] {
  let idx = start;
  const block = at(toks, idx) === '(';
  if (block) idx++;
  let value: Value;
  const tok = at(toks, idx);
  const num = pyFloat(tok);
  if (tok === 'select') {
    [idx, value] = parseQuery(toks, idx, ctx);
  } else if (tok.includes('"')) {
    value = tok;
    idx++;
  } else if (num !== null) {
    value = num;
    idx++;
  } else {
    // A column operand: read up to the next delimiter, from where the value began
    // (an opening parenthesis included, as officially), and ignore what follows the column.
    let end = idx;
    while (
      end < toks.length &&
      ![',', ')', 'and'].includes(toks[end]) &&
      !CLAUSE_KEYWORDS.includes(toks[end]) &&
      !JOIN_KEYWORDS.includes(toks[end])
    )
      end++;
    value = parseColUnit(toks.slice(start, end), 0, ctx, defaultTables)[1];
    idx = end;
  }
  if (block) {
    expect(at(toks, idx) === ')', 'expected ) after a value');
    idx++;
  }
  return [idx, value];
}

function parseCondition(
  toks: Toks,
  start: number,
  ctx: Context,
  defaultTables: readonly string[],
): [number, Condition] {
  let idx = start;
  const conds: Condition = [];
  while (idx < toks.length) {
    let left: ValUnit;
    [idx, left] = parseValUnit(toks, idx, ctx, defaultTables);
    let not = false;
    if (at(toks, idx) === 'not') {
      not = true;
      idx++;
    }
    expect(idx < toks.length && WHERE_OPS.includes(toks[idx]), `expected a comparison operator at token ${idx}`);
    const op = WHERE_OPS.indexOf(toks[idx]);
    idx++;
    let val1: Value;
    let val2: Value = null;
    [idx, val1] = parseValue(toks, idx, ctx, defaultTables);
    if (op === WHERE_OPS.indexOf('between')) {
      expect(at(toks, idx) === 'and', 'expected AND in BETWEEN');
      [idx, val2] = parseValue(toks, idx + 1, ctx, defaultTables);
    }
    const unit: CondUnit = [not, op, left, val1, val2];
    conds.push(unit);
    if (idx < toks.length && (isClauseEnd(toks[idx]) || JOIN_KEYWORDS.includes(toks[idx]))) break;
    if (idx < toks.length && (toks[idx] === 'and' || toks[idx] === 'or')) conds.push(toks[idx++]);
  }
  return [idx, conds];
}

function parseSelect(toks: Toks, start: number, ctx: Context, defaultTables: readonly string[]): SpiderSql['select'] {
  let idx = start;
  expect(at(toks, idx) === 'select', 'expected SELECT');
  idx++;
  const distinct = idx < toks.length && toks[idx] === 'distinct';
  if (distinct) idx++;
  const items: SelectItem[] = [];
  while (idx < toks.length && !CLAUSE_KEYWORDS.includes(toks[idx])) {
    const agg = Math.max(0, AGG_OPS.indexOf(toks[idx]));
    if (AGG_OPS.includes(toks[idx])) idx++;
    let value: ValUnit;
    [idx, value] = parseValUnit(toks, idx, ctx, defaultTables);
    items.push([agg, value]);
    if (idx < toks.length && toks[idx] === ',') idx++;
  }
  return [distinct, items];
}

/** FROM: table units joined by JOIN (or subqueries), ON conditions merged with 'and'. */
function parseFrom(toks: Toks, start: number, ctx: Context): [number, SpiderSql['from'], string[]] {
  const fromAt = toks.indexOf('from', start);
  expect(fromAt >= 0, 'FROM not found');
  let idx = fromAt + 1;
  const defaultTables: string[] = [];
  const tableUnits: TableUnit[] = [];
  const conds: Condition = [];
  while (idx < toks.length) {
    const block = at(toks, idx) === '(';
    if (block) idx++;
    if (at(toks, idx) === 'select') {
      let sub: SpiderSql;
      [idx, sub] = parseQuery(toks, idx, ctx);
      tableUnits.push(['sql', sub]);
    } else {
      if (idx < toks.length && toks[idx] === 'join') idx++;
      let id: string;
      let table: string;
      [idx, id, table] = parseTableUnit(toks, idx, ctx);
      tableUnits.push(['table_unit', id]);
      defaultTables.push(table);
    }
    if (idx < toks.length && toks[idx] === 'on') {
      let on: Condition;
      [idx, on] = parseCondition(toks, idx + 1, ctx, defaultTables);
      if (conds.length > 0) conds.push('and');
      conds.push(...on);
    }
    if (block) {
      expect(at(toks, idx) === ')', 'expected ) in FROM');
      idx++;
    }
    if (idx < toks.length && isClauseEnd(toks[idx])) break;
  }
  return [idx, { table_units: tableUnits, conds }, defaultTables];
}

function parseConditionClause(
  keyword: string,
  toks: Toks,
  start: number,
  ctx: Context,
  defaultTables: readonly string[],
): [number, Condition] {
  if (start >= toks.length || toks[start] !== keyword) return [start, []];
  return parseCondition(toks, start + 1, ctx, defaultTables);
}

function parseGroupBy(toks: Toks, start: number, ctx: Context, defaultTables: readonly string[]): [number, ColUnit[]] {
  if (start >= toks.length || toks[start] !== 'group') return [start, []];
  expect(at(toks, start + 1) === 'by', 'expected BY after GROUP');
  let idx = start + 2;
  const cols: ColUnit[] = [];
  while (idx < toks.length && !isClauseEnd(toks[idx])) {
    let col: ColUnit;
    [idx, col] = parseColUnit(toks, idx, ctx, defaultTables);
    cols.push(col);
    if (idx < toks.length && toks[idx] === ',') idx++;
    else break;
  }
  return [idx, cols];
}

function parseOrderBy(
  toks: Toks,
  start: number,
  ctx: Context,
  defaultTables: readonly string[],
): [number, SpiderSql['orderBy']] {
  if (start >= toks.length || toks[start] !== 'order') return [start, []];
  expect(at(toks, start + 1) === 'by', 'expected BY after ORDER');
  let idx = start + 2;
  const keys: ValUnit[] = [];
  let direction = 'asc';
  while (idx < toks.length && !isClauseEnd(toks[idx])) {
    let key: ValUnit;
    [idx, key] = parseValUnit(toks, idx, ctx, defaultTables);
    keys.push(key);
    if (idx < toks.length && ORDER_OPS.includes(toks[idx])) direction = toks[idx++];
    if (idx < toks.length && toks[idx] === ',') idx++;
    else break;
  }
  return [idx, [direction, keys]];
}

const skipSemicolons = (toks: Toks, idx: number): number => {
  while (idx < toks.length && toks[idx] === ';') idx++;
  return idx;
};

function parseQuery(toks: Toks, start: number, ctx: Context): [number, SpiderSql] {
  const block = at(toks, start) === '(';
  // FROM is read first for the tables that bare columns resolve against; it is searched from
  // `start`, and the select list from after the parenthesis, as officially.
  const [fromEnd, from, defaultTables] = parseFrom(toks, start, ctx);
  const select = parseSelect(toks, block ? start + 1 : start, ctx, defaultTables);
  const [afterWhere, where] = parseConditionClause('where', toks, fromEnd, ctx, defaultTables);
  const [afterGroup, groupBy] = parseGroupBy(toks, afterWhere, ctx, defaultTables);
  const [afterHaving, having] = parseConditionClause('having', toks, afterGroup, ctx, defaultTables);
  const [afterOrder, orderBy] = parseOrderBy(toks, afterHaving, ctx, defaultTables);
  let idx = afterOrder;
  let limit: number | null = null;
  if (idx < toks.length && toks[idx] === 'limit') {
    // The count token must exist, but its value is never used: the official check compares a
    // string token with int, so every LIMIT is recorded as 1.
    at(toks, idx + 1);
    idx += 2;
    limit = 1;
  }
  idx = skipSemicolons(toks, idx);
  if (block) {
    expect(at(toks, idx) === ')', 'expected ) to close a subquery');
    idx++;
  }
  idx = skipSemicolons(toks, idx);
  const sql: SpiderSql = {
    select,
    from,
    where,
    groupBy,
    having,
    orderBy,
    limit,
    intersect: null,
    union: null,
    except: null,
  };
  const op = SQL_OPS.find((o) => o === toks[idx]);
  if (op !== undefined) {
    let sub: SpiderSql;
    [idx, sub] = parseQuery(toks, idx + 1, ctx);
    sql[op] = sub;
  }
  return [idx, sql];
}
