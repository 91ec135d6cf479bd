/**
 * BIRD's own files as evaluate's inputs: its dev.json as gold (SQL, db_id, difficulty) and the
 * predictions file its evaluation script reads (predict_dev.json: {"0": "SQL\t----- bird -----\tdb_id", ...},
 * keyed by the question's position in dev.json).
 */
import { UserError, describeError } from '../util/errors.js';

/** The separator BIRD's scripts put between a predicted SQL and its db_id. */
export const BIRD_SEPARATOR = '\t----- bird -----\t';

/** Whether a parsed JSON document is BIRD's predictions object. */
export function isBirdPredictions(doc: unknown): doc is Record<string, string> {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return false;
  const values = Object.values(doc);
  return values.length > 0 && values.every((v) => typeof v === 'string' && v.includes(BIRD_SEPARATOR));
}

/** The predicted SQL of each question, in dev.json order; the keys must be 0..n-1. */
export function birdPredictionSqls(
  doc: Record<string, string>,
  path: string,
): { id?: undefined; sql: string; where: string }[] {
  const keys = Object.keys(doc);
  return keys.map((_, i) => {
    const v = doc[String(i)];
    if (v === undefined)
      throw new UserError(
        `${path}: no prediction for question ${i} (BIRD's predictions are keyed "0".."${keys.length - 1}")`,
      );
    return { sql: v.slice(0, v.lastIndexOf(BIRD_SEPARATOR)).trim(), where: `${path}: "${i}"` };
  });
}

/** Whether a gold row is BIRD's (SQL) rather than Spider's (query). */
export function isBirdGoldRow(r: unknown): boolean {
  const o = r as { SQL?: unknown; query?: unknown } | null;
  return o !== null && typeof o === 'object' && typeof o.SQL === 'string' && o.query === undefined;
}

/** BIRD's predictions file, checked. */
export function readBirdPredictions(text: string, path: string): { id?: undefined; sql: string; where: string }[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UserError(`malformed JSON in ${path}: ${describeError(err)}`);
  }
  if (!isBirdPredictions(doc))
    throw new UserError(`${path}: expected BIRD's predictions, {"0": "SQL\\t----- bird -----\\tdb_id", ...}`);
  return birdPredictionSqls(doc, path);
}
