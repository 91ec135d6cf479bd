import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCsv } from '../src/util/csv.js';
import { MMLU_SUBJECTS, readMmlu, selectQuestions, type MmluSet } from '../src/eval/mmluData.js';

const FIX = join(import.meta.dirname, 'fixtures', 'mmlu');
const SUBJECTS = ['abstract_algebra', 'anatomy', 'high_school_geography', 'marketing', 'world_religions'];

function temp(): string {
  return mkdtempSync(join(tmpdir(), 'mmlu-data-'));
}

const flat = (m: MmluSet['test']): unknown[] => [...m.values()].flat();

describe('CSV parsing', () => {
  it("reads quoting as Python's csv module does: commas, doubled quotes, newlines, CRLF, text after a closing quote", () => {
    const text = 'a,"b,c","say ""hi""","two\nlines",x"y"z\r\n\nq,"p"tail,,\n';
    expect(parseCsv(text, 'f.csv')).toEqual([
      { line: 1, fields: ['a', 'b,c', 'say "hi"', 'two\nlines', 'x"y"z'] },
      { line: 4, fields: ['q', 'ptail', '', ''] },
    ]);
  });

  it('names the line where an unclosed quote starts', () => {
    expect(() => parseCsv('a,b\n"open,c\nd\n', 'x.csv')).toThrow('x.csv:2: a quoted field is not closed');
  });
});

describe('reading MMLU', () => {
  it('reads the original CSV layout: subjects by name, rows in file order, answers as 0-3', async () => {
    const set = await readMmlu(join(FIX, 'csv'));
    expect([...set.test.keys()]).toEqual(SUBJECTS);
    expect(SUBJECTS.map((s) => set.test.get(s)!.length)).toEqual([50, 50, 50, 50, 50]);
    expect(SUBJECTS.map((s) => set.dev.get(s)!.length)).toEqual([5, 5, 5, 5, 5]);
    // Row 3 of abstract_algebra_test.csv: an unquoted question with a comma-free tail and quoted choices.
    expect(set.test.get('abstract_algebra')![2]).toEqual({
      subject: 'abstract_algebra',
      index: 2,
      question:
        'Find all zeros in the indicated finite field of the given polynomial with coefficients in that field. x^5 + 3x^3 + x^2 + 2x in Z_5',
      choices: ['0', '1', '0,1', '0,4'],
      answer: 3,
    });
    expect(set.description).toContain('original CSV layout');
  });

  it('finds the CSVs under data/ too', async () => {
    const dir = temp();
    cpSync(join(FIX, 'csv'), join(dir, 'data'), { recursive: true });
    expect(flat((await readMmlu(dir)).test)).toEqual(flat((await readMmlu(join(FIX, 'csv'))).test));
  });

  it('reads the cais/mmlu parquet layout (all/ and per-subject folders) as the same questions', async () => {
    const csv = await readMmlu(join(FIX, 'csv'));
    const all = await readMmlu(join(FIX, 'parquet'));
    expect(all.description).toContain('cais/mmlu parquet');
    expect(flat(all.test)).toEqual(flat(csv.test));
    expect(flat(all.dev)).toEqual(flat(csv.dev));
    const per = await readMmlu(join(FIX, 'parquet-subjects'));
    expect([...per.test.keys()]).toEqual(['abstract_algebra', 'anatomy']);
    expect(flat(per.test)).toEqual([...csv.test.get('abstract_algebra')!, ...csv.test.get('anatomy')!]);
  });

  it('ships 20 test questions of every subject and all dev questions, rows identical to the release', async () => {
    const set = await readMmlu(undefined);
    expect(set.description).toBe("the embedded selection (1140 test questions, 57 subjects; sqlora's assets/mmlu)");
    expect([...set.test.keys()]).toEqual(Object.keys(MMLU_SUBJECTS).sort());
    for (const rows of set.test.values()) {
      expect(rows.length).toBe(20);
      expect(rows.map((r) => r.index)).toEqual([...rows.map((r) => r.index)].sort((a, b) => a - b));
    }
    expect([...set.dev.values()].every((d) => d.length === 5)).toBe(true);
    // Where the fixture holds the same rows (the first 50 of five subjects), the questions are equal.
    const csv = await readMmlu(join(FIX, 'csv'));
    let compared = 0;
    for (const s of SUBJECTS) {
      for (const q of set.test.get(s)!.filter((r) => r.index < 50)) {
        expect(q).toEqual(csv.test.get(s)![q.index]);
        compared++;
      }
      expect(set.dev.get(s)).toEqual(csv.dev.get(s));
    }
    expect(compared).toBeGreaterThan(20);
  });
});

describe('bad input', () => {
  function csvDir(testRows: string, devRows?: string): string {
    const dir = temp();
    mkdirSync(join(dir, 'test'));
    mkdirSync(join(dir, 'dev'));
    writeFileSync(join(dir, 'test', 'anatomy_test.csv'), testRows);
    if (devRows !== undefined) writeFileSync(join(dir, 'dev', 'anatomy_dev.csv'), devRows);
    return dir;
  }

  it('names the file and line of a row without six columns', async () => {
    const dir = csvDir('Q1?,a,b,c,d,A\n"Q2,\nstill Q2",a,b,c,D\n');
    await expect(readMmlu(dir)).rejects.toThrow(
      `${join(dir, 'test', 'anatomy_test.csv')}:2: expected 6 columns (question, A, B, C, D, answer letter), found 5`,
    );
  });

  it('names the file and line of an answer letter outside A-D', async () => {
    const dir = csvDir('Q1?,a,b,c,d,A\nQ2?,a,b,c,d,E\n');
    await expect(readMmlu(dir)).rejects.toThrow(
      `${join(dir, 'test', 'anatomy_test.csv')}:2: answer "E" is not one of A, B, C, D`,
    );
  });

  it('refuses 5-shot for a subject with fewer than 5 dev questions', async () => {
    const set = await readMmlu(csvDir('Q1?,a,b,c,d,A\n', 'D1?,a,b,c,d,B\nD2?,a,b,c,d,C\n'));
    expect(selectQuestions(set, { shots: 0 }).questions).toHaveLength(1);
    expect(() => selectQuestions(set, { shots: 5 })).toThrow('subject anatomy has 2 dev questions; --shots 5 needs 5');
  });

  it('names an unknown --subjects entry', async () => {
    const set = await readMmlu(join(FIX, 'csv'));
    expect(() => selectQuestions(set, { shots: 0, subjects: ['anatomy', 'astrology'] })).toThrow(
      '--subjects: unknown subject "astrology"',
    );
  });

  it('says what it looked for in a folder with neither layout', async () => {
    await expect(readMmlu(temp())).rejects.toThrow('found neither test/{subject}_test.csv');
    await expect(readMmlu(join(temp(), 'nope'))).rejects.toThrow('no such folder');
  });

  it('selects subjects in name order, the first N rows each, and the first five dev rows as shots', async () => {
    const set = await readMmlu(join(FIX, 'csv'));
    const { questions, fewShot } = selectQuestions(set, { shots: 5, subjects: ['marketing', 'anatomy'], limit: 3 });
    expect(questions.map((q) => `${q.subject}/${q.index}`)).toEqual([
      'anatomy/0',
      'anatomy/1',
      'anatomy/2',
      'marketing/0',
      'marketing/1',
      'marketing/2',
    ]);
    expect(fewShot.get('anatomy')).toEqual(set.dev.get('anatomy'));
    expect(readFileSync(join(FIX, 'LICENSE'), 'utf8')).toContain('Dan Hendrycks');
  });
});
