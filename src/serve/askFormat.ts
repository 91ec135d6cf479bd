/** `sqlora ask`'s output: the SQL and a psql-style table for people, one JSON object for programs. */
import type { AskAnswer } from './ask.js';

/** Widest a column is printed; longer values are cut with `…`. */
export const CELL_CHARS = 60;

function cellText(v: string | number | null): string {
  if (v === null) return 'NULL';
  const s = String(v).replace(/[\r\n\t]+/g, ' ');
  return s.length > CELL_CHARS ? s.slice(0, CELL_CHARS - 1) + '…' : s;
}

/** The rows as a table: ` a | b ` headers, a rule, numbers right-aligned. */
export function formatTable(columns: string[], rows: (string | number | null)[][]): string {
  const head = columns.map((c) => cellText(c));
  const body = rows.map((r) => r.map(cellText));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[], right: boolean[]) =>
    ' ' + cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ') + ' ';
  const numeric = columns.map(
    (_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || r[i] === null),
  );
  return [
    line(
      head,
      head.map(() => false),
    ).trimEnd(),
    widths.map((w) => '-'.repeat(w + 2)).join('+'),
    ...body.map((r) => line(r, numeric).trimEnd()),
  ].join('\n');
}

const plural = (n: number, word: string) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;

/** The SQL, then the table and its row count; a failed query's reason goes to `error` instead. */
export function formatAnswerText(a: AskAnswer): { out: string; error: string | null } {
  const lines = [a.sql === '' ? '(no SQL)' : a.sql];
  if (a.result) {
    const r = a.result;
    lines.push('', formatTable(r.columns, r.rows), '');
    lines.push(
      r.truncated
        ? `(${plural(r.rows.length, 'row')} of ${r.rowCount.toLocaleString('en-US')}; --max-rows shows more)`
        : `(${plural(r.rowCount, 'row')})`,
    );
  }
  return { out: lines.join('\n') + '\n', error: a.error ? a.error.message : null };
}

/** As `/v1/sql` answers: `{sql, columns, rows, row_count, truncated, elapsed_ms}` or `{sql, error}`, with the question. */
export function answerJson(a: AskAnswer): Record<string, unknown> {
  const base = { question: a.question, sql: a.sql };
  if (a.error) return { ...base, error: a.error.message };
  if (!a.result) return base;
  const r = a.result;
  return {
    ...base,
    columns: r.columns,
    rows: r.rows,
    row_count: r.rowCount,
    truncated: r.truncated,
    elapsed_ms: r.elapsedMs,
  };
}
