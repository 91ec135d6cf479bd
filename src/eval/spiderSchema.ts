/**
 * The schema view and foreign-key map that Spider's official evaluator works with
 * (taoyds/test-suite-sql-eval, process_sql.get_schema and evaluation.build_foreign_key_map).
 * Both are read the way the official script reads them, so that column ids such as
 * `__singer.name__` and the unification of foreign-key columns agree with it exactly.
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { UserError, describeError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

export interface SpiderSchema {
  /** Lower-cased table name -> lower-cased column names, in the database's own order. */
  readonly tables: ReadonlyMap<string, readonly string[]>;
  /**
   * `*` -> `__all__`, `table.column` -> `__table.column__`, `table` -> `__table__`
   * (columns first, then tables, as the official Schema builds it).
   */
  readonly idMap: ReadonlyMap<string, string>;
}

/** Column id (`__table.column__`) -> the id of the column its foreign-key group is unified to. */
export type ForeignKeyMap = ReadonlyMap<string, string>;

const schemaCache = new Map<string, SpiderSchema>();

/**
 * Reads table and column names from a SQLite file: every `type='table'` row of sqlite_master
 * (sqlite_sequence included, as the official code does) and `PRAGMA table_info` of each.
 */
export function loadSpiderSchema(sqlitePath: string): SpiderSchema {
  const cached = schemaCache.get(sqlitePath);
  if (cached) return cached;
  if (!existsSync(sqlitePath)) throw new UserError(`Spider database not found: ${sqlitePath}`);
  let db: Database.Database;
  try {
    db = new Database(sqlitePath, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new UserError(`cannot open Spider database ${sqlitePath}: ${describeError(err)}`);
  }
  const tables = new Map<string, string[]>();
  try {
    const names = db.prepare("SELECT name FROM sqlite_master WHERE type='table'").pluck().all() as string[];
    for (const name of names.map((n) => n.toLowerCase())) {
      // Unquoted, like the official `PRAGMA table_info({})`: a name it cannot read fails here too.
      const cols = db.prepare(`PRAGMA table_info(${name})`).all() as { name: string }[];
      tables.set(
        name,
        cols.map((c) => c.name.toLowerCase()),
      );
    }
  } catch (err) {
    throw new UserError(`cannot read the schema of ${sqlitePath}: ${describeError(err)}`);
  } finally {
    db.close();
  }
  const schema: SpiderSchema = { tables, idMap: buildIdMap(tables) };
  schemaCache.set(sqlitePath, schema);
  return schema;
}

function buildIdMap(tables: ReadonlyMap<string, readonly string[]>): Map<string, string> {
  const idMap = new Map<string, string>([['*', '__all__']]);
  for (const [table, cols] of tables) {
    for (const col of cols) idMap.set(`${table}.${col}`, `__${table}.${col}__`);
  }
  for (const table of tables.keys()) idMap.set(table, `__${table}__`);
  return idMap;
}

interface TablesJsonEntry {
  db_id: string;
  table_names_original: string[];
  column_names_original: [number, string][];
  foreign_keys: [number, number][];
}

/** Foreign-key maps of every database in a Spider tables.json, keyed by db_id. */
export function loadForeignKeyMaps(tablesJsonPath: string): Map<string, ForeignKeyMap> {
  const entries = readJsonFile<TablesJsonEntry[]>(tablesJsonPath, 'Spider tables.json');
  if (!Array.isArray(entries)) throw new UserError(`${tablesJsonPath}: expected a JSON array of database schemas`);
  const maps = new Map<string, ForeignKeyMap>();
  for (const [i, entry] of entries.entries()) {
    for (const field of ['db_id', 'table_names_original', 'column_names_original', 'foreign_keys'] as const) {
      if (entry?.[field] === undefined) throw new UserError(`${tablesJsonPath}: entry ${i} has no "${field}"`);
    }
    maps.set(entry.db_id, foreignKeyMap(entry));
  }
  return maps;
}

/**
 * Groups foreign-key pairs and maps every column of a group to its lowest-indexed member.
 * The grouping is the official one, which is not a full union-find: a pair joins the first
 * group holding either of its columns, and a later group overwrites an earlier one's entries.
 */
function foreignKeyMap(entry: TablesJsonEntry): ForeignKeyMap {
  const ids = entry.column_names_original.map(([table, col]) =>
    table >= 0 ? `__${entry.table_names_original[table].toLowerCase()}.${col.toLowerCase()}__` : '__all__',
  );
  const groups: Set<number>[] = [];
  for (const [a, b] of entry.foreign_keys) {
    let group = groups.find((g) => g.has(a) || g.has(b));
    if (!group) {
      group = new Set();
      groups.push(group);
    }
    group.add(a).add(b);
  }
  const map = new Map<string, string>();
  for (const group of groups) {
    for (const idx of group) {
      if (ids[idx] === undefined)
        throw new UserError(
          `tables.json: database ${entry.db_id} has a foreign key to column ${idx}, which does not exist`,
        );
    }
    const members = [...group].sort((x, y) => x - y);
    for (const idx of members) map.set(ids[idx], ids[members[0]]);
  }
  return map;
}
