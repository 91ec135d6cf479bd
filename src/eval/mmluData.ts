/**
 * MMLU questions from the layouts people have: the original release (`{subject}_test.csv` and
 * `{subject}_dev.csv` under `test/` and `dev/`, or under `data/test/` and `data/dev/`; no header;
 * question, A, B, C, D, answer letter), the Hugging Face `cais/mmlu` parquet layout (columns
 * question, subject, choices, answer 0-3; a folder per subject or `all/`), and the selection
 * shipped with sqlora (assets/mmlu/, see its README.md).
 *
 * Subjects come sorted by name and each subject's questions in file order, which is the order
 * of results: `index` is the row in the subject's test file (0-based), so a question keeps its
 * identity in any subset.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { UserError, describeError } from '../util/errors.js';
import { readJsonl, readTextFile } from '../util/jsonl.js';
import { parseCsv } from '../util/csv.js';

export const MMLU_CATEGORIES = ['stem', 'humanities', 'social_sciences', 'other'] as const;
export type MmluCategory = (typeof MMLU_CATEGORIES)[number];

/** The 57 subjects and their categories, as lm-evaluation-harness groups them (mmlu_stem, ...). */
export const MMLU_SUBJECTS: Readonly<Record<string, MmluCategory>> = {
  abstract_algebra: 'stem',
  anatomy: 'stem',
  astronomy: 'stem',
  business_ethics: 'other',
  clinical_knowledge: 'other',
  college_biology: 'stem',
  college_chemistry: 'stem',
  college_computer_science: 'stem',
  college_mathematics: 'stem',
  college_medicine: 'other',
  college_physics: 'stem',
  computer_security: 'stem',
  conceptual_physics: 'stem',
  econometrics: 'social_sciences',
  electrical_engineering: 'stem',
  elementary_mathematics: 'stem',
  formal_logic: 'humanities',
  global_facts: 'other',
  high_school_biology: 'stem',
  high_school_chemistry: 'stem',
  high_school_computer_science: 'stem',
  high_school_european_history: 'humanities',
  high_school_geography: 'social_sciences',
  high_school_government_and_politics: 'social_sciences',
  high_school_macroeconomics: 'social_sciences',
  high_school_mathematics: 'stem',
  high_school_microeconomics: 'social_sciences',
  high_school_physics: 'stem',
  high_school_psychology: 'social_sciences',
  high_school_statistics: 'stem',
  high_school_us_history: 'humanities',
  high_school_world_history: 'humanities',
  human_aging: 'other',
  human_sexuality: 'social_sciences',
  international_law: 'humanities',
  jurisprudence: 'humanities',
  logical_fallacies: 'humanities',
  machine_learning: 'stem',
  management: 'other',
  marketing: 'other',
  medical_genetics: 'other',
  miscellaneous: 'other',
  moral_disputes: 'humanities',
  moral_scenarios: 'humanities',
  nutrition: 'other',
  philosophy: 'humanities',
  prehistory: 'humanities',
  professional_accounting: 'other',
  professional_law: 'humanities',
  professional_medicine: 'other',
  professional_psychology: 'social_sciences',
  public_relations: 'social_sciences',
  security_studies: 'social_sciences',
  sociology: 'social_sciences',
  us_foreign_policy: 'social_sciences',
  virology: 'other',
  world_religions: 'humanities',
};

export const LETTERS = ['A', 'B', 'C', 'D'] as const;

export interface MmluQuestion {
  subject: string;
  /** Row in the subject's file of its split (0-based). */
  index: number;
  question: string;
  choices: [string, string, string, string];
  /** 0-3 (A-D). */
  answer: number;
}

export interface MmluSet {
  /** What was read, for the output: "embedded selection (...)", "original CSV layout in DIR", ... */
  description: string;
  /** Test questions per subject, in file order. */
  test: Map<string, MmluQuestion[]>;
  /** Dev (few-shot) questions per subject, in file order. */
  dev: Map<string, MmluQuestion[]>;
}

/** The selection shipped with sqlora; the path is the same from src/eval/ and the compiled dist/eval/. */
export const EMBEDDED_MMLU_DIR = fileURLToPath(new URL('../../assets/mmlu/', import.meta.url));

export function categoryOf(subject: string): MmluCategory {
  return MMLU_SUBJECTS[subject] ?? 'other';
}

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/** Where the CSV layout's split folders are: DIR/test or DIR/data/test. */
function csvRoot(dir: string): string | null {
  for (const base of [dir, join(dir, 'data')]) {
    if (isDir(join(base, 'test')) && readdirSync(join(base, 'test')).some((f) => f.endsWith('_test.csv'))) return base;
  }
  return null;
}

function readCsvSplit(root: string, split: 'test' | 'dev'): Map<string, MmluQuestion[]> {
  const out = new Map<string, MmluQuestion[]>();
  const folder = join(root, split);
  if (!isDir(folder)) return out;
  const suffix = `_${split}.csv`;
  for (const f of readdirSync(folder)
    .filter((n) => n.endsWith(suffix))
    .sort()) {
    const subject = f.slice(0, -suffix.length);
    const path = join(folder, f);
    const rows = parseCsv(readTextFile(path, 'MMLU file'), path);
    out.set(
      subject,
      rows.map((r, index) => {
        const where = `${path}:${r.line}`;
        if (r.fields.length !== 6) {
          throw new UserError(
            `${where}: expected 6 columns (question, A, B, C, D, answer letter), found ${r.fields.length}`,
          );
        }
        const [question, a, b, c, d, letter] = r.fields;
        const answer = LETTERS.indexOf(letter.trim() as (typeof LETTERS)[number]);
        if (answer < 0) throw new UserError(`${where}: answer ${JSON.stringify(letter)} is not one of A, B, C, D`);
        return { subject, index, question, choices: [a, b, c, d], answer };
      }),
    );
  }
  return out;
}

/** Parquet shards of one split under a folder: `{split}-*.parquet`, `{split}.parquet` or `{split}/*.parquet`. */
function splitShards(folder: string, split: string): string[] {
  const flat = readdirSync(folder)
    .filter((f) => f.endsWith('.parquet') && (f === `${split}.parquet` || f.startsWith(`${split}-`)))
    .sort()
    .map((f) => join(folder, f));
  if (flat.length > 0 || !isDir(join(folder, split))) return flat;
  return readdirSync(join(folder, split))
    .filter((f) => f.endsWith('.parquet'))
    .sort()
    .map((f) => join(folder, split, f));
}

function parquetRoot(dir: string): { folders: string[] } | null {
  if (isDir(join(dir, 'all')) && splitShards(join(dir, 'all'), 'test').length > 0)
    return { folders: [join(dir, 'all')] };
  if (splitShards(dir, 'test').length > 0) return { folders: [dir] };
  const folders = readdirSync(dir)
    .filter((f) => f in MMLU_SUBJECTS && isDir(join(dir, f)) && splitShards(join(dir, f), 'test').length > 0)
    .sort()
    .map((f) => join(dir, f));
  return folders.length > 0 ? { folders } : null;
}

function toAnswer(v: unknown): number {
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && LETTERS.includes(v as (typeof LETTERS)[number]))
    return LETTERS.indexOf(v as (typeof LETTERS)[number]);
  return NaN;
}

async function readParquetSplit(folders: string[], split: 'test' | 'dev'): Promise<Map<string, MmluQuestion[]>> {
  const out = new Map<string, MmluQuestion[]>();
  for (const folder of folders) {
    for (const path of splitShards(folder, split)) {
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({
          file: await asyncBufferFromFile(path),
          columns: ['question', 'subject', 'choices', 'answer'],
        });
      } catch (err) {
        throw new UserError(
          `cannot read parquet file ${path}: ${describeError(err)} (expected columns question, subject, choices, answer)`,
        );
      }
      rows.forEach((r, i) => {
        const where = `${path} row ${i + 1}`;
        const subject = String(r.subject ?? '');
        if (subject === '') throw new UserError(`${where}: empty subject`);
        const choices = r.choices;
        if (!Array.isArray(choices) || choices.length !== 4 || !choices.every((c) => typeof c === 'string')) {
          throw new UserError(`${where}: choices must be a list of 4 strings`);
        }
        const answer = toAnswer(r.answer);
        if (!Number.isInteger(answer) || answer < 0 || answer > 3) {
          throw new UserError(`${where}: answer ${String(r.answer)} is not 0-3 (A-D)`);
        }
        if (typeof r.question !== 'string') throw new UserError(`${where}: question is not a string`);
        const list = out.get(subject) ?? [];
        if (list.length === 0) out.set(subject, list);
        list.push({
          subject,
          index: list.length,
          question: r.question,
          choices: choices as MmluQuestion['choices'],
          answer,
        });
      });
    }
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The shipped selection: JSON Lines of {split, subject, index, question, choices, answer}. */
function readEmbedded(dir: string): MmluSet {
  const path = join(dir, 'questions.jsonl');
  const test = new Map<string, MmluQuestion[]>();
  const dev = new Map<string, MmluQuestion[]>();
  readJsonl<MmluQuestion & { split: 'test' | 'dev' }>(path, 'embedded MMLU set').forEach((r, i) => {
    if (!Number.isInteger(r.answer) || r.answer < 0 || r.answer > 3) {
      throw new UserError(`${path}: record ${i + 1} has answer ${String(r.answer)}, not 0-3`);
    }
    const map = r.split === 'dev' ? dev : test;
    const list = map.get(r.subject) ?? [];
    if (list.length === 0) map.set(r.subject, list);
    list.push({ subject: r.subject, index: r.index, question: r.question, choices: r.choices, answer: r.answer });
  });
  const n = [...test.values()].reduce((s, l) => s + l.length, 0);
  // The bundled copy is named, not located: results and reports are shared, the install path is not theirs.
  const where = dir === EMBEDDED_MMLU_DIR ? "sqlora's assets/mmlu" : dir;
  return { description: `the embedded selection (${n} test questions, ${test.size} subjects; ${where})`, test, dev };
}

/** Reads MMLU from DIR (either layout), or the embedded selection when dir is undefined. */
export async function readMmlu(dir: string | undefined): Promise<MmluSet> {
  if (dir === undefined) return readEmbedded(EMBEDDED_MMLU_DIR);
  if (!isDir(dir)) throw new UserError(`--data ${dir}: no such folder`);
  const root = csvRoot(dir);
  if (root !== null) {
    const test = readCsvSplit(root, 'test');
    const n = [...test.values()].reduce((s, l) => s + l.length, 0);
    return {
      description: `the original CSV layout in ${dir} (${n} test questions, ${test.size} subjects)`,
      test,
      dev: readCsvSplit(root, 'dev'),
    };
  }
  const pq = parquetRoot(dir);
  if (pq !== null) {
    const test = await readParquetSplit(pq.folders, 'test');
    const n = [...test.values()].reduce((s, l) => s + l.length, 0);
    return {
      description: `the cais/mmlu parquet layout in ${dir} (${n} test questions, ${test.size} subjects)`,
      test,
      dev: await readParquetSplit(pq.folders, 'dev'),
    };
  }
  if (existsSync(join(dir, 'questions.jsonl'))) return readEmbedded(dir);
  throw new UserError(
    `--data ${dir}: found neither test/{subject}_test.csv (or data/test/) nor cais/mmlu parquet files (all/test-*.parquet or {subject}/test-*.parquet)`,
  );
}

export interface Selection {
  /** Subjects (sorted) to score. */
  subjects?: string[];
  /** At most this many test questions per subject (the first in file order). */
  limit?: number;
  shots: number;
}

/**
 * The questions to score, in result order, and each subject's few-shot examples. Checks that
 * every --subjects entry exists and that each subject has the dev questions 5-shot needs.
 */
export function selectQuestions(
  set: MmluSet,
  sel: Selection,
): { questions: MmluQuestion[]; fewShot: Map<string, MmluQuestion[]> } {
  const known = [...set.test.keys()].sort();
  let subjects = known;
  if (sel.subjects !== undefined) {
    for (const s of sel.subjects) {
      if (!set.test.has(s)) {
        throw new UserError(
          `--subjects: unknown subject "${s}" in ${set.description}; subjects are named like ${known.slice(0, 3).join(', ')} (${known.length} in all)`,
        );
      }
    }
    subjects = [...new Set(sel.subjects)].sort();
  }
  const questions: MmluQuestion[] = [];
  const fewShot = new Map<string, MmluQuestion[]>();
  for (const s of subjects) {
    const rows = set.test.get(s) ?? [];
    questions.push(...(sel.limit !== undefined ? rows.slice(0, sel.limit) : rows));
    if (sel.shots > 0) {
      const dev = set.dev.get(s) ?? [];
      if (dev.length < sel.shots) {
        throw new UserError(
          `subject ${s} has ${dev.length} dev question${dev.length === 1 ? '' : 's'}; --shots ${sel.shots} needs ${sel.shots} (${set.description})`,
        );
      }
      fewShot.set(s, dev.slice(0, sel.shots));
    }
  }
  return { questions, fewShot };
}
