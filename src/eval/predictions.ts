/**
 * Reads what is to be evaluated as (gold, prediction, database) items, from the formats in use:
 * - predictions as JSONL `{id, sql}` lines, matched by `id` to `eval.jsonl` from `sqlora prepare`
 *   (or by position to a gold file without ids);
 * - the official evaluation script's files: a gold file of `SQL<TAB>db_id` lines and a prediction
 *   file of one SQL per line (anything after a tab ignored, as that script does);
 * - the reference workflow's results JSON (`detailed_results[]` with `generated_sql`,
 *   `expected_sql`, `db_id`), which carries its own gold.
 * Gold may also be a Spider split file (dev.json: an array of `{db_id, query}`).
 */
import { extname } from 'node:path';
import { UserError, describeError } from '../util/errors.js';
import { parseJsonl, readTextFile } from '../util/jsonl.js';
import { BIRD_DIFFICULTIES, type BirdDifficulty } from './birdExecution.js';
import { isBirdGoldRow, isBirdPredictions, readBirdPredictions } from './birdFiles.js';
import { HARDNESS_LEVELS, type Hardness } from './hardness.js';

export interface EvalItem {
  /** 0-based position: in the gold file, or in the results JSON. */
  index: number;
  id?: string | number;
  db_id: string;
  gold: string;
  pred: string;
  /** Known from the gold file (eval.jsonl); otherwise computed from the database schema. */
  hardness?: Hardness;
  /** BIRD's difficulty (eval.jsonl of `prepare --bird`): BIRD's execution metric is used. */
  difficulty?: BirdDifficulty;
  /** The SQLite file itself (eval.jsonl of `prepare --pairs`): Spider's hardness and exact-set-match do not apply. */
  db_path?: string;
}

export const PREDICTION_FORMATS = ['auto', 'jsonl', 'sql', 'results', 'bird'] as const;
export type PredictionFormat = (typeof PREDICTION_FORMATS)[number];

export interface LoadOptions {
  predPath: string;
  goldPath?: string;
  format?: PredictionFormat;
  /** Evaluate only the first N gold examples (or results). */
  limit?: number;
}

interface GoldRecord {
  id?: string | number;
  db_id: string;
  query: string;
  hardness?: Hardness;
  difficulty?: BirdDifficulty;
  db_path?: string;
}

interface Prediction {
  id?: string | number;
  sql: string;
  /** Where it came from, for messages: FILE:LINE. */
  where: string;
}

export function loadEvalItems(opts: LoadOptions): EvalItem[] {
  const text = readTextFile(opts.predPath, 'predictions file');
  const format = opts.format && opts.format !== 'auto' ? opts.format : detectFormat(opts.predPath, text);
  if (format === 'results') {
    if (opts.goldPath !== undefined)
      throw new UserError(`--gold is not used with a results JSON (${opts.predPath} holds expected_sql); leave it out`);
    return parseResultsJson(text, opts.predPath).slice(0, opts.limit);
  }
  if (opts.goldPath === undefined)
    throw new UserError(
      `--gold is required with ${format === 'jsonl' ? 'JSONL' : 'one-SQL-per-line'} predictions (${opts.predPath}): eval.jsonl from sqlora prepare, or a gold.sql of SQL<TAB>db_id lines`,
    );
  const gold = readGold(opts.goldPath);
  const preds =
    format === 'bird'
      ? readBirdPredictions(text, opts.predPath)
      : format === 'jsonl'
        ? parsePredictionJsonl(text, opts.predPath)
        : parsePredictionLines(text, opts.predPath);
  const byId = preds.some((p) => p.id !== undefined) && gold.every((g) => g.id !== undefined);
  return byId ? matchById(gold, preds, opts) : matchByPosition(gold, preds, opts);
}

function detectFormat(path: string, text: string): Exclude<PredictionFormat, 'auto'> {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') {
    try {
      if (isBirdPredictions(JSON.parse(text))) return 'bird';
    } catch {
      // parseResultsJson reports the malformed JSON.
    }
    return 'results';
  }
  if (ext === '.jsonl') return 'jsonl';
  const head = text.trimStart();
  if (head.startsWith('{')) {
    try {
      const whole = JSON.parse(text) as unknown;
      if (whole !== null && typeof whole === 'object' && 'detailed_results' in whole) return 'results';
    } catch {
      // Not one JSON document: JSON Lines.
    }
    return 'jsonl';
  }
  if (head.startsWith('['))
    throw new UserError(
      `${path}: cannot tell the predictions format (a JSON array); expected JSONL {"id","sql"} lines, a results JSON with "detailed_results", or one SQL per line (see --pred-format)`,
    );
  return 'sql';
}

function parseResultsJson(text: string, path: string): EvalItem[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UserError(`malformed JSON in ${path}: ${describeError(err)}`);
  }
  const rows = (doc as { detailed_results?: unknown } | null)?.detailed_results;
  if (!Array.isArray(rows))
    throw new UserError(
      `${path}: expected a results JSON object with a "detailed_results" array (the reference workflow's format)`,
    );
  if (rows.length === 0) throw new UserError(`${path}: "detailed_results" is empty; nothing to evaluate`);
  return rows.map((r: unknown, i) => {
    const where = `${path}: detailed_results[${i}]`;
    const rec = asObject(r, where);
    return {
      index: i,
      ...(isId(rec.id) ? { id: rec.id } : {}),
      db_id: stringField(rec, 'db_id', where),
      gold: stringField(rec, 'expected_sql', where),
      pred: stringField(rec, 'generated_sql', where),
    };
  });
}

function readGold(path: string): GoldRecord[] {
  const text = readTextFile(path, 'gold file');
  const head = text.trimStart();
  if (head === '') throw new UserError(`gold file ${path} is empty`);
  if (head.startsWith('[')) {
    let rows: unknown;
    try {
      rows = JSON.parse(text);
    } catch (err) {
      throw new UserError(`malformed JSON in ${path}: ${describeError(err)}`);
    }
    if (!Array.isArray(rows) || rows.length === 0)
      throw new UserError(`${path}: expected a non-empty array of {"db_id", "query"} (a Spider split file)`);
    // BIRD's dev.json names the gold SQL "SQL"; its records keep their difficulty.
    return rows.map((r: unknown, i) =>
      goldRecord(isBirdGoldRow(r) ? { ...(r as object), query: (r as { SQL: string }).SQL } : r, `${path}: [${i}]`),
    );
  }
  if (head.startsWith('{')) {
    const lines = nonBlankLineNumbers(text);
    return parseJsonl(text, path).map((r, i) => goldRecord(r, `${path}:${lines[i]}`));
  }
  const out: GoldRecord[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const fields = line.split('\t');
    if (fields.length !== 2 || fields[1].trim() === '')
      throw new UserError(`${path}:${i + 1}: expected "SQL<TAB>db_id" (the official gold file format)`);
    out.push({ query: fields[0], db_id: fields[1].trim() });
  });
  return out;
}

function goldRecord(r: unknown, where: string): GoldRecord {
  const rec = asObject(r, where);
  const hardness = rec.hardness ?? undefined;
  if (hardness !== undefined && !HARDNESS_LEVELS.includes(hardness as Hardness)) {
    throw new UserError(
      `${where}: "hardness" must be one of ${HARDNESS_LEVELS.join(', ')}; got ${JSON.stringify(hardness)}`,
    );
  }
  const difficulty = rec.difficulty ?? undefined;
  if (difficulty !== undefined && !BIRD_DIFFICULTIES.includes(difficulty as BirdDifficulty)) {
    throw new UserError(
      `${where}: "difficulty" must be one of ${BIRD_DIFFICULTIES.join(', ')}; got ${JSON.stringify(difficulty)}`,
    );
  }
  return {
    ...(isId(rec.id) ? { id: rec.id } : {}),
    db_id: stringField(rec, 'db_id', where),
    query: stringField(rec, 'query', where),
    ...(hardness !== undefined ? { hardness: hardness as Hardness } : {}),
    ...(difficulty !== undefined ? { difficulty: difficulty as BirdDifficulty } : {}),
    ...(typeof rec.db_path === 'string' ? { db_path: rec.db_path } : {}),
  };
}

function parsePredictionJsonl(text: string, path: string): Prediction[] {
  const lines = nonBlankLineNumbers(text);
  const preds = parseJsonl(text, path).map((r, i) => {
    const where = `${path}:${lines[i]}`;
    const rec = asObject(r, where);
    if (rec.id !== undefined && !isId(rec.id)) throw new UserError(`${where}: "id" must be a string or a number`);
    return { ...(isId(rec.id) ? { id: rec.id } : {}), sql: stringField(rec, 'sql', where), where };
  });
  if (preds.length === 0) throw new UserError(`${path} has no predictions`);
  return preds;
}

function parsePredictionLines(text: string, path: string): Prediction[] {
  const lines = text.split('\n').map((l) => l.trim());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new UserError(`${path} has no predictions`);
  // A blank line inside the file is a prediction the model left empty: it keeps its place.
  return lines.map((l, i) => ({ sql: l.split('\t')[0], where: `${path}:${i + 1}` }));
}

function matchById(gold: GoldRecord[], preds: Prediction[], opts: LoadOptions): EvalItem[] {
  const goldIds = new Set(gold.map((g) => String(g.id)));
  const byId = new Map<string, Prediction>();
  for (const p of preds) {
    if (p.id === undefined)
      throw new UserError(
        `${p.where}: "id" is missing (give every prediction an id, or none to match ${opts.goldPath} by position)`,
      );
    const key = String(p.id);
    if (!goldIds.has(key)) throw new UserError(`${p.where}: id ${JSON.stringify(p.id)} is not in ${opts.goldPath}`);
    if (byId.has(key)) throw new UserError(`${p.where}: id ${JSON.stringify(p.id)} repeats ${byId.get(key)!.where}`);
    byId.set(key, p);
  }
  const wanted = gold.slice(0, opts.limit);
  const missing = wanted.filter((g) => !byId.has(String(g.id)));
  if (missing.length > 0) {
    const leading = gold.findIndex((g) => !byId.has(String(g.id)));
    const hint =
      leading === preds.length ? `; they cover the first ${leading}: pass --limit ${leading} to evaluate those` : '';
    throw new UserError(
      `${missing.length} of ${wanted.length} gold examples in ${opts.goldPath} have no prediction in ${opts.predPath} (first: id ${JSON.stringify(missing[0].id)})${hint}`,
    );
  }
  return wanted.map((g, index) => item(index, g, byId.get(String(g.id))!.sql));
}

function matchByPosition(gold: GoldRecord[], preds: Prediction[], opts: LoadOptions): EvalItem[] {
  const g = gold.slice(0, opts.limit);
  const p = preds.slice(0, opts.limit);
  if (g.length !== p.length) {
    const hint =
      opts.limit === undefined
        ? ` (use --limit ${Math.min(g.length, p.length)} to evaluate only the first ${Math.min(g.length, p.length)})`
        : '';
    throw new UserError(
      `${opts.predPath} has ${p.length} predictions but ${opts.goldPath} has ${g.length} gold examples${opts.limit !== undefined ? ` within --limit ${opts.limit}` : ''}; they are matched line by line${hint}`,
    );
  }
  return g.map((rec, index) => item(index, rec, p[index].sql));
}

function item(index: number, g: GoldRecord, pred: string): EvalItem {
  return {
    index,
    ...(g.id !== undefined ? { id: g.id } : {}),
    db_id: g.db_id,
    gold: g.query,
    pred,
    ...(g.hardness ? { hardness: g.hardness } : {}),
    ...(g.difficulty ? { difficulty: g.difficulty } : {}),
    ...(g.db_path ? { db_path: g.db_path } : {}),
  };
}

/** Line numbers (1-based) of the non-blank lines, i.e. of the records parseJsonl returns. */
function nonBlankLineNumbers(text: string): number[] {
  const out: number[] = [];
  text.split('\n').forEach((l, i) => {
    if (l.trim() !== '') out.push(i + 1);
  });
  return out;
}

function asObject(r: unknown, where: string): Record<string, unknown> {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new UserError(`${where}: expected a JSON object`);
  return r as Record<string, unknown>;
}

function stringField(rec: Record<string, unknown>, key: string, where: string): string {
  const v = rec[key];
  if (typeof v !== 'string')
    throw new UserError(`${where}: "${key}" must be a string${v === undefined ? ' (missing)' : ''}`);
  return v;
}

function isId(v: unknown): v is string | number {
  return typeof v === 'string' || typeof v === 'number';
}
