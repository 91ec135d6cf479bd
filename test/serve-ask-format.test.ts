import { describe, expect, it } from 'vitest';
import type { AskAnswer } from '../src/serve/ask.js';
import { answerJson, formatAnswerText, formatTable } from '../src/serve/askFormat.js';

const answer = (over: Partial<AskAnswer>): AskAnswer => ({
  question: 'q',
  sql: 'SELECT name, age FROM singer',
  result: null,
  error: null,
  promptTokens: 10,
  newTokens: 5,
  overBudget: false,
  ...over,
});

describe("ask's output", () => {
  it('tables: text left, numbers right, NULL shown, long and multi-line values cut to one line', () => {
    expect(
      formatTable(
        ['name', 'age', 'note'],
        [
          ['Joe', 52, null],
          ['Timbaland', 7, `line one\nline two ${'x'.repeat(70)}`],
        ],
      ),
    ).toBe(
      [
        ' name      | age | note',
        '-----------+-----+--------------------------------------------------------------',
        ' Joe       |  52 | NULL',
        ` Timbaland |   7 | line one line two ${'x'.repeat(41)}…`,
      ].join('\n'),
    );
  });

  it('says how many rows there were when fewer are shown; errors go apart', () => {
    const result = { columns: ['n'], rows: [[1], [2]], rowCount: 1234, truncated: true, elapsedMs: 3 };
    expect(formatAnswerText(answer({ result }))).toEqual({
      out: 'SELECT name, age FROM singer\n\n n\n---\n 1\n 2\n\n(2 rows of 1,234; --max-rows shows more)\n',
      error: null,
    });
    expect(answerJson(answer({ result }))).toEqual({
      question: 'q',
      sql: 'SELECT name, age FROM singer',
      columns: ['n'],
      rows: [[1], [2]],
      row_count: 1234,
      truncated: true,
      elapsed_ms: 3,
    });
    // --sql-only: the SQL alone.
    expect(formatAnswerText(answer({}))).toEqual({ out: 'SELECT name, age FROM singer\n', error: null });
    expect(answerJson(answer({}))).toEqual({ question: 'q', sql: 'SELECT name, age FROM singer' });
    const failed = answer({ sql: '', error: { failure: 'empty', message: 'the model wrote no SQL' } });
    expect(formatAnswerText(failed)).toEqual({ out: '(no SQL)\n', error: 'the model wrote no SQL' });
    expect(answerJson(failed)).toEqual({ question: 'q', sql: '', error: 'the model wrote no SQL' });
  });
});
