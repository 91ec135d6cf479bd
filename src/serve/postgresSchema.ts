/**
 * A PostgreSQL database's tables as TableInfo, from the catalog: ordinary, partitioned and foreign
 * tables of the given schemas (in the order given, then creation order), columns with their
 * declared types as format_type prints them (`character varying(12)`), primary keys, UNIQUE
 * constraints and foreign keys. With one schema names stay bare (as the search_path resolves
 * them); with several, every table carries its schema so the prompt can qualify it.
 */
import type { ClientBase } from 'pg';
import type { TableInfo } from '../data/sqliteSchema.js';

interface TableRow {
  oid: number;
  schema: string;
  name: string;
}
interface ColumnRow {
  table: number;
  name: string;
  type: string;
}
interface ConstraintRow {
  table: number;
  kind: 'p' | 'u' | 'f';
  columns: string[];
  ref_schema: string | null;
  ref_table: string | null;
  ref_columns: string[] | null;
}

const TABLES = `
SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition AND n.nspname = ANY($1::text[])
ORDER BY array_position($1::text[], n.nspname::text), c.oid`;

const COLUMNS = `
SELECT a.attrelid::int AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum`;

// Column names of a constraint's keys in key order; confrelid's table may lie outside the schemas.
const CONSTRAINTS = `
SELECT con.conrelid::int AS table, con.contype AS kind,
  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i) AS columns,
  fn.nspname AS ref_schema, fc.relname AS ref_table,
  CASE WHEN con.contype = 'f' THEN
    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i) END AS ref_columns
FROM pg_constraint con
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.conrelid = ANY($1::oid[]) AND con.contype IN ('p', 'u', 'f')
ORDER BY con.conrelid, con.oid`;

export async function readPostgresTables(client: ClientBase, schemas: string[]): Promise<TableInfo[]> {
  const tables = (await client.query<TableRow>(TABLES, [schemas])).rows;
  const oids = tables.map((t) => t.oid);
  const columns = (await client.query<ColumnRow>(COLUMNS, [oids])).rows;
  const constraints = (await client.query<ConstraintRow>(CONSTRAINTS, [oids])).rows;
  const qualify = schemas.length > 1;
  return tables.map((t) => {
    const own = constraints.filter((c) => c.table === t.oid);
    const pk = own.find((c) => c.kind === 'p')?.columns ?? [];
    return {
      name: t.name,
      ...(qualify ? { schema: t.schema } : {}),
      columns: columns
        .filter((c) => c.table === t.oid)
        .map((c) => ({ name: c.name, type: c.type, pk: pk.indexOf(c.name) + 1 })),
      unique: own.filter((c) => c.kind === 'u').map((c) => c.columns),
      foreignKeys: own
        .filter((c) => c.kind === 'f')
        .map((c) => ({
          columns: c.columns,
          table: c.ref_table ?? '',
          ...(qualify || c.ref_schema !== t.schema ? { schema: c.ref_schema ?? '' } : {}),
          refColumns: c.ref_columns ?? [],
        })),
    };
  });
}
