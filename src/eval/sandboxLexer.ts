/**
 * A loose SQL lexer for rewriting query text without touching what is quoted or commented:
 * it splits text into pieces that join back to the exact input.
 */
export type SqlPieceKind = 'string' | 'quoted' | 'comment' | 'word' | 'other';

export interface SqlPiece {
  kind: SqlPieceKind;
  text: string;
}

/** 'string' is '...'; 'quoted' is "...", `...` or [...]; 'word' is a keyword or bare name. */
export function sqlPieces(sql: string): SqlPiece[] {
  const out: SqlPiece[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    let end = i + 1;
    let kind: SqlPieceKind = 'other';
    if (c === "'" || c === '"' || c === '`') {
      end = closingQuote(sql, i, c);
      kind = c === "'" ? 'string' : 'quoted';
    } else if (c === '[') {
      end = indexOrEnd(sql, ']', i + 1) + 1;
      kind = 'quoted';
    } else if (c === '-' && sql[i + 1] === '-') {
      end = indexOrEnd(sql, '\n', i);
      kind = 'comment';
    } else if (c === '/' && sql[i + 1] === '*') {
      end = Math.min(sql.length, indexOrEnd(sql, '*/', i + 2) + 2);
      kind = 'comment';
    } else if (/[A-Za-z_]/.test(c)) {
      while (end < sql.length && /[A-Za-z0-9_$]/.test(sql[end])) end++;
      kind = 'word';
    }
    out.push({ kind, text: sql.slice(i, end) });
    i = end;
  }
  return out;
}

/** The statement without trailing semicolons, whitespace and comments, so it can sit in a CTE. */
export function statementBody(sql: string): string {
  const pieces = sqlPieces(sql);
  while (pieces.length > 0) {
    const last = pieces[pieces.length - 1];
    if (last.kind === 'comment' || (last.kind === 'other' && /^[\s;]$/.test(last.text))) pieces.pop();
    else break;
  }
  return pieces.map((p) => p.text).join('');
}

function closingQuote(sql: string, start: number, q: string): number {
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] !== q) i++;
    else if (sql[i + 1] === q)
      i += 2; // a doubled quote is an escaped one
    else return i + 1;
  }
  return sql.length;
}

function indexOrEnd(s: string, needle: string, from: number): number {
  const at = s.indexOf(needle, from);
  return at < 0 ? s.length : at;
}

/**
 * Rewrites every double-quoted token whose content is `content` as a single-quoted string:
 * what SQLite does by itself when built with double-quoted strings allowed (as Python's sqlite3
 * is, which the official evaluator and Spider's gold queries rely on; better-sqlite3 is not).
 */
export function doubleQuotedToString(sql: string, content: string): string {
  return sqlPieces(sql)
    .map((p) =>
      p.kind === 'quoted' &&
      p.text.startsWith('"') &&
      p.text.endsWith('"') &&
      p.text.length >= 2 &&
      p.text.slice(1, -1).replaceAll('""', '"') === content
        ? `'${content.replaceAll("'", "''")}'`
        : p.text,
    )
    .join('');
}
