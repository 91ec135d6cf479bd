/**
 * Deterministic perturbations of Spider gold queries, each a plausible model mistake or a
 * harmless rewrite, to compare our evaluator's decisions with the official script's on.
 * Every kind either returns a changed query or null where it does not apply.
 */
import { mulberry32 } from '../../src/util/random.js';

export interface Perturbation {
  kind: string;
  pred: string;
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

interface Piece {
  text: string;
  kind: 'string' | 'space' | 'word' | 'number' | 'op' | 'punct';
  depth: number;
}

const PIECE = /'[^']*'|"[^"]*"|\s+|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_*]+)?|\d+(?:\.\d+)?|>=|<=|!=|<>|[^\s]/g;

function lex(sql: string): Piece[] {
  let depth = 0;
  return [...sql.matchAll(PIECE)].map(([text]) => {
    const c = text[0];
    const kind: Piece['kind'] =
      c === "'" || c === '"'
        ? 'string'
        : /\s/.test(c)
          ? 'space'
          : /[A-Za-z_]/.test(c)
            ? 'word'
            : /\d/.test(c)
              ? 'number'
              : /^(>=|<=|!=|<>|[=<>])$/.test(text)
                ? 'op'
                : 'punct';
    if (text === ')') depth--;
    const piece = { text, kind, depth };
    if (text === '(') depth++;
    return piece;
  });
}

const join = (pieces: readonly Piece[]) => pieces.map((p) => p.text).join('');
const lower = (p: Piece) => p.text.toLowerCase();
const isWord = (p: Piece | undefined, ...words: string[]) =>
  p !== undefined && p.kind === 'word' && words.includes(lower(p));

const KEYWORDS = new Set(
  'select from where group by order having limit join on as and or not in like between distinct desc asc intersect union except count sum avg min max is null exists'.split(
    ' ',
  ),
);
const CLAUSE_END = ['group', 'order', 'having', 'limit', 'intersect', 'union', 'except'];

function pick<T>(xs: readonly T[], r: () => number): T {
  return xs[Math.floor(r() * xs.length)];
}

/** Indices of pieces matching a test. */
const where = (pieces: readonly Piece[], test: (p: Piece) => boolean) => pieces.flatMap((p, i) => (test(p) ? [i] : []));

/** End (exclusive) of the clause starting at piece i: next clause keyword at the same depth, a closing parenthesis, or the end. */
function clauseEnd(pieces: readonly Piece[], i: number, stops = CLAUSE_END): number {
  const d = pieces[i].depth;
  for (let j = i + 1; j < pieces.length; j++) {
    if (pieces[j].depth < d || (pieces[j].depth === d && pieces[j].text === ')')) return j;
    if (pieces[j].depth === d && pieces[j].kind === 'word' && stops.includes(lower(pieces[j]))) return j;
  }
  return pieces.length;
}

function replaceAt(pieces: readonly Piece[], i: number, text: string): string {
  return join(pieces.map((p, j) => (j === i ? { ...p, text } : p)));
}

type Rewrite = (sql: string, r: () => number, columns: ReadonlySet<string>) => string | string[] | null;

const REWRITES: Record<string, Rewrite> = {
  'keyword-case': (sql, r) => {
    const mode = pick(['lower', 'upper', 'mixed', 'all-lower'], r);
    if (mode === 'all-lower') return sql.toLowerCase();
    return join(
      lex(sql).map((p) => {
        if (p.kind !== 'word' || !KEYWORDS.has(lower(p))) return p;
        const text =
          mode === 'lower'
            ? lower(p)
            : mode === 'upper'
              ? p.text.toUpperCase()
              : [...p.text].map((c) => (r() < 0.5 ? c.toUpperCase() : c.toLowerCase())).join('');
        return { ...p, text };
      }),
    );
  },
  whitespace: (sql, r) => {
    const pieces = lex(sql);
    switch (pick(['double', 'newlines', 'tight-commas', 'spaced-parens', 'tight-ops', 'tabs'], r)) {
      case 'double':
        return join(pieces.map((p) => (p.kind === 'space' ? { ...p, text: '  ' } : p)));
      case 'newlines':
        return join(
          pieces.map((p, i) =>
            p.kind === 'space' &&
            pieces[i + 1] &&
            isWord(pieces[i + 1], 'from', 'where', 'group', 'order', 'join', 'having', 'limit')
              ? { ...p, text: '\n  ' }
              : p,
          ),
        );
      case 'tight-commas':
        return join(pieces.filter((p, i) => !(p.kind === 'space' && pieces[i - 1]?.text === ',')));
      case 'spaced-parens':
        return join(pieces.map((p) => (p.text === '(' || p.text === ')' ? { ...p, text: ` ${p.text} ` } : p)));
      case 'tight-ops':
        return join(
          pieces.filter(
            (p, i) => !(p.kind === 'space' && (pieces[i - 1]?.kind === 'op' || pieces[i + 1]?.kind === 'op')),
          ),
        );
      default:
        return join(pieces.map((p) => (p.kind === 'space' ? { ...p, text: '\t' } : p)));
    }
  },
  semicolon: (sql, r) => sql.replace(/\s*;?\s*$/, '') + pick([';', ' ;', ';;', '; '], r),
  'alias-add': (sql, r) => {
    if (/\bas\b/i.test(sql)) return null;
    const pieces = lex(sql);
    const withAs = r() < 0.7;
    let n = 0;
    const out = pieces.map((p, i) => {
      const prev = pieces[i - 2];
      if (p.kind === 'word' && !KEYWORDS.has(lower(p)) && prev && isWord(prev, 'from', 'join'))
        return { ...p, text: `${p.text}${withAs ? ' AS' : ''} a${++n}` };
      return p;
    });
    return n === 0 ? null : join(out);
  },
  'alias-remove': (sql) => {
    const pieces = lex(sql);
    const aliases = new Map<string, string>();
    pieces.forEach((p, i) => {
      if (isWord(p, 'as') && pieces[i + 2]?.kind === 'word' && pieces[i - 2]?.kind === 'word')
        aliases.set(lower(pieces[i + 2]), pieces[i - 2].text);
    });
    if (aliases.size === 0) return null;
    const out: Piece[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      if (isWord(p, 'as') && pieces[i + 2] && aliases.has(lower(pieces[i + 2]))) {
        out.pop(); // the space before AS
        i += 2;
        continue;
      }
      const dot = p.kind === 'word' ? p.text.indexOf('.') : -1;
      const table = dot > 0 ? aliases.get(p.text.slice(0, dot).toLowerCase()) : undefined;
      out.push(table ? { ...p, text: table + p.text.slice(dot) } : p);
    }
    return join(out);
  },
  'value-change': (sql, r) => {
    const pieces = lex(sql);
    const out = pieces.map((p, i) => {
      if (p.kind === 'string') return { ...p, text: pick(["'zzz'", '"Other value"', "'%x%'"], r) };
      if (p.kind === 'number' && !isWord(pieces[i - 2], 'limit'))
        return { ...p, text: String(Number(p.text) + 1 + Math.floor(r() * 50)) };
      return p;
    });
    const changed = join(out);
    return changed === sql ? null : changed;
  },
  'value-placeholder': (sql) => {
    const pieces = lex(sql);
    const i = pieces.findIndex(
      (p, j) => p.kind === 'string' || (p.kind === 'number' && !isWord(pieces[j - 2], 'limit')),
    );
    return i < 0 ? null : replaceAt(pieces, i, 'value');
  },
  'aggregate-change': (sql, r) => {
    const pieces = lex(sql);
    const aggs = where(pieces, (p) => isWord(p, 'count', 'sum', 'avg', 'min', 'max'));
    if (aggs.length > 0) {
      const i = pick(aggs, r);
      const others = ['count', 'sum', 'avg', 'min', 'max', ''].filter((a) => a !== lower(pieces[i]));
      return replaceAt(pieces, i, pick(others, r));
    }
    const sel = pieces.findIndex((p) => isWord(p, 'select'));
    const col = pieces.findIndex((p, i) => i > sel && p.kind === 'word' && !KEYWORDS.has(lower(p)));
    return col < 0 ? null : replaceAt(pieces, col, `${pick(['count', 'max', 'avg'], r)}(${pieces[col].text})`);
  },
  'order-flip': (sql) => {
    const pieces = lex(sql);
    const dir = where(pieces, (p) => isWord(p, 'asc', 'desc'));
    if (dir.length > 0) return replaceAt(pieces, dir[0], isWord(pieces[dir[0]], 'asc') ? 'DESC' : 'ASC');
    const order = pieces.findIndex((p) => isWord(p, 'order'));
    if (order < 0) return null;
    let last = clauseEnd(pieces, order, ['limit', 'intersect', 'union', 'except']) - 1;
    while (pieces[last].kind === 'space') last--;
    return join(pieces.slice(0, last + 1)) + ' DESC' + join(pieces.slice(last + 1));
  },
  'distinct-toggle': (sql) => {
    if (/\bselect\s+distinct\b/i.test(sql)) return sql.replace(/\b(select)\s+distinct\b/i, '$1');
    return sql.replace(/\bselect\b/i, (m) => `${m} DISTINCT`);
  },
  'limit-change': (sql, r) => {
    const m = /\blimit\s+(\d+)/i.exec(sql);
    if (!m) return r() < 0.5 ? null : `${sql.replace(/\s*;\s*$/, '')} LIMIT 1`;
    return r() < 0.5 ? sql.replace(m[0], `LIMIT ${Number(m[1]) + 2}`) : sql.replace(new RegExp(`\\s*${m[0]}`), '');
  },
  'where-change': (sql, r) => {
    const pieces = lex(sql);
    const w = pieces.findIndex((p) => isWord(p, 'where'));
    if (w < 0) return null;
    const end = clauseEnd(pieces, w);
    const mode = pick(['op', 'drop-cond', 'drop-where', 'not'], r);
    if (mode === 'op') {
      const ops = where(pieces, (p) => p.kind === 'op').filter((i) => i > w && i < end);
      if (ops.length === 0) return null;
      const i = pick(ops, r);
      const swap: Record<string, string> = {
        '=': '!=',
        '!=': '=',
        '>': '<',
        '<': '>',
        '>=': '<=',
        '<=': '>=',
        '<>': '=',
      };
      return replaceAt(pieces, i, swap[pieces[i].text]);
    }
    if (mode === 'drop-cond') {
      const conj = where(pieces, (p) => isWord(p, 'and', 'or')).filter(
        (i) => i > w && i < end && pieces[i].depth === pieces[w].depth && !isWord(pieces[i - 4], 'between'),
      );
      if (conj.length === 0) return null;
      const i = conj[conj.length - 1];
      return join([...pieces.slice(0, i - 1), ...pieces.slice(clauseEnd(pieces, i, [...CLAUSE_END, 'and', 'or']))]);
    }
    if (mode === 'not') return replaceAt(pieces, w, `${pieces[w].text} NOT`);
    return join([...pieces.slice(0, w), ...pieces.slice(end)]).replace(/\s+$/, '');
  },
  'unknown-column': (sql, r, columns) => {
    const pieces = lex(sql);
    const cols = where(pieces, (p) => p.kind === 'word' && columns.has(lower(p).split('.').pop() ?? ''));
    if (cols.length === 0) return null;
    const i = pick(cols, r);
    const dot = pieces[i].text.indexOf('.');
    return replaceAt(pieces, i, `${dot >= 0 ? pieces[i].text.slice(0, dot + 1) : ''}no_such_column`);
  },
  'invalid-sql': (sql, r) => {
    switch (pick(['truncate', 'no-from', 'quote', 'prose', 'paren', 'in-list', 'backticks'], r)) {
      case 'truncate':
        return sql.slice(0, Math.max(1, Math.floor(sql.length * (0.3 + 0.6 * r()))));
      case 'no-from':
        return sql.replace(/\bfrom\b/i, '');
      case 'quote':
        return `${sql} '`;
      case 'prose':
        return `Here is the SQL query: ${sql}`;
      case 'paren':
        return sql.includes('(') ? sql.replace('(', '') : `${sql})`;
      case 'in-list':
        return /=\s*('[^']*'|"[^"]*"|\d+)/.test(sql) ? sql.replace(/=\s*('[^']*'|"[^"]*"|\d+)/, 'IN ($1, $1)') : null;
      default:
        return sql.replace(/\b(from|join)\s+([A-Za-z_]\w*)/gi, '$1 `$2`');
    }
  },
  'select-reorder': (sql) => {
    const m = /^(\s*select\s+(?:distinct\s+)?)(.*?)(\s+from\b.*)$/is.exec(sql);
    if (!m || m[2].includes('(')) return null;
    const cols = m[2].split(',').map((c) => c.trim());
    if (cols.length < 2) return null;
    return m[1] + cols.reverse().join(', ') + m[3];
  },
  'select-drop': (sql) => {
    const m = /^(\s*select\s+(?:distinct\s+)?)(.*?)(\s+from\b.*)$/is.exec(sql);
    if (!m || m[2].includes('(')) return null;
    const cols = m[2].split(',').map((c) => c.trim());
    return cols.length < 2 ? null : m[1] + cols.slice(0, -1).join(', ') + m[3];
  },
  'group-change': (sql, r) => {
    const pieces = lex(sql);
    const g = pieces.findIndex((p) => isWord(p, 'group'));
    if (g < 0) return null;
    if (r() < 0.5)
      return join([
        ...pieces.slice(0, g),
        ...pieces.slice(clauseEnd(pieces, g, ['order', 'limit', 'intersect', 'union', 'except'])),
      ]);
    return join([...pieces.slice(0, g), ...pieces.slice(clauseEnd(pieces, g))]);
  },
};

/** Tokens that steer the official parser into its odd corners. */
const FUZZ_TOKENS = [
  'not',
  'and',
  'or',
  '(',
  ')',
  ',',
  'as',
  'none',
  '=',
  '!',
  '>',
  'join',
  'on',
  'nan',
  '1e5',
  '`',
  '"x"',
  '...',
  '--',
  ':',
  '$',
  'cannot',
  'select',
  'from',
  'where',
  '*',
  '-',
  'distinct',
  'limit',
  'union',
  ';',
  'T1',
  'T2.name',
];

/** Random token-level edits (delete, duplicate, swap, insert) and character-level ones. */
const FUZZ: Record<string, Rewrite> = {
  'token-fuzz': (sql, r) =>
    [0, 1, 2].map(() => {
      const pieces = lex(sql).filter((p) => p.kind !== 'space');
      const edits = 1 + Math.floor(r() * 2);
      for (let e = 0; e < edits; e++) {
        const i = Math.floor(r() * pieces.length);
        const op = pick(['delete', 'duplicate', 'swap', 'insert', 'insert'], r);
        if (op === 'delete') pieces.splice(i, 1);
        else if (op === 'duplicate') pieces.splice(i, 0, pieces[i]);
        else if (op === 'swap' && i + 1 < pieces.length) [pieces[i], pieces[i + 1]] = [pieces[i + 1], pieces[i]];
        else pieces.splice(i, 0, { text: pick(FUZZ_TOKENS, r), kind: 'punct', depth: 0 });
      }
      return pieces.map((p) => p.text).join(r() < 0.8 ? ' ' : '');
    }),
  'char-fuzz': (sql, r) =>
    [0, 1].map(() => {
      const chars = [...sql];
      const i = Math.floor(r() * chars.length);
      if (r() < 0.4) chars.splice(i, 1);
      else chars.splice(i, 0, pick([...'()=<>!,.;\'"` *-_'], r));
      return chars.join('');
    }),
};

/**
 * All applicable perturbations of one gold query (null results and no-op rewrites dropped);
 * `fuzzRounds` repeats the random fuzz kinds with fresh seeds.
 */
export function perturb(gold: string, index: number, columns: ReadonlySet<string>, fuzzRounds = 1): Perturbation[] {
  const out: Perturbation[] = [];
  const seen = new Set([gold]);
  const add = (kind: string, preds: string | string[] | null) => {
    for (const pred of preds === null ? [] : Array.isArray(preds) ? preds : [preds]) {
      if (!seen.has(pred)) out.push({ kind, pred });
      seen.add(pred);
    }
  };
  for (const [kind, rewrite] of Object.entries(REWRITES))
    add(kind, rewrite(gold, mulberry32(hash(`${kind}#${index}`)), columns));
  for (let round = 0; round < fuzzRounds; round++) {
    for (const [kind, rewrite] of Object.entries(FUZZ))
      add(kind, rewrite(gold, mulberry32(hash(`${kind}#${index}#${round}`)), columns));
  }
  return out;
}
