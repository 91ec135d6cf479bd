/**
 * PostgreSQL values (text format) as the JSON-safe cells QueryResult promises: numbers where
 * JavaScript holds them exactly, booleans as true/false, bytea as hex (as SQLite blobs are), and
 * everything else (dates, json, arrays, intervals) as PostgreSQL prints it, untouched by pg's own
 * parsers (which make Dates in the local zone and objects that are not cells).
 */
import type { CustomTypesConfig } from 'pg';

const INTEGERS = new Set([20, 21, 23, 26]); // int8, int2, int4, oid
const FLOATS = new Set([700, 701, 1700]); // float4, float8, numeric

function exactNumber(text: string): string | number {
  const n = Number(text);
  // Only a value that prints back the same is shown as a number (no rounding of numerics, no Infinity).
  return Number.isFinite(n) && (String(n) === text || (Number.isInteger(n) && Number.isSafeInteger(n))) ? n : text;
}

function parser(oid: number): (text: string) => string | number {
  if (INTEGERS.has(oid)) return (t) => (Number.isSafeInteger(Number(t)) ? Number(t) : t);
  if (FLOATS.has(oid)) return exactNumber;
  if (oid === 16) return (t) => (t === 't' ? 'true' : 'false');
  if (oid === 17) return (t) => (t.startsWith('\\x') ? t.slice(2) : t);
  return (t) => t;
}

export const cellTypes = { getTypeParser: parser } as unknown as CustomTypesConfig;
