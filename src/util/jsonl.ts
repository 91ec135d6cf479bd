import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { UserError, describeError } from './errors.js';

/** Reads a whole file, turning a missing or unreadable file into a UserError naming it. */
export function readTextFile(path: string, what = 'file'): string {
  if (!existsSync(path)) throw new UserError(`${what} not found: ${path}`);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${what} ${path}: ${describeError(err)}`);
  }
}

/** Parses a JSON file; a syntax error names the file. */
export function readJsonFile<T = unknown>(path: string, what = 'JSON file'): T {
  const text = readTextFile(path, what);
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new UserError(`malformed JSON in ${path}: ${describeError(err)}`);
  }
}

/** Parses JSON Lines; blank lines are skipped, a bad line is reported as file:line. */
export function parseJsonl<T = unknown>(text: string, path: string): T[] {
  const out: T[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch (err) {
      throw new UserError(`malformed JSON in ${path}:${i + 1}: ${describeError(err)}`);
    }
  }
  return out;
}

export function readJsonl<T = unknown>(path: string, what = 'JSONL file'): T[] {
  return parseJsonl<T>(readTextFile(path, what), path);
}

export function writeJsonl(path: string, rows: readonly unknown[]): void {
  writeFileSync(path, rows.map((r) => JSON.stringify(r) + '\n').join(''));
}

/** Appends one record and returns at once: an interrupted run keeps every line written so far. */
export function appendJsonl(path: string, row: unknown): void {
  appendFileSync(path, JSON.stringify(row) + '\n');
}

/**
 * Reads the complete records of a JSONL file that another run appended to. A last line cut off
 * by an interruption is dropped (and trimmed from the file) so the run can resume after it.
 */
export function readAppendedJsonl<T = unknown>(path: string): T[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const complete = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1);
  if (complete.length !== text.length) writeFileSync(path, complete);
  return parseJsonl<T>(complete, path);
}
