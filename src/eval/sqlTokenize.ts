/**
 * Tokenization of SQL exactly as Spider's official evaluator does it (process_sql.tokenize):
 * quoted strings become single value tokens, the rest goes through NLTK's word tokenizer
 * (NLTKWordTokenizer, i.e. word_tokenize with preserve_line=True) and is lower-cased, and
 * `!`/`>`/`<` followed by `=` are glued back into one operator.
 *
 * The NLTK tokenizer is reproduced rule by rule because its quirks decide what the official
 * parser accepts: `a>=1` becomes `a > =1` (a parse failure), `1,2` stays one token, `t1.a=t2.b`
 * stays one token. Python's regex semantics are kept where they differ from JavaScript's:
 * `\s`, `\d` and `\w` are Unicode-aware there, and `$` also matches before a final newline.
 */

/** Thrown where the official tokenizer raises (an odd number of quote characters). */
export class SqlTokenizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SqlTokenizeError';
  }
}

// Python's str.isspace() set, which is also what its re `\s` and str.split() use.
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WORD = '\\p{L}\\p{N}_';
const NOT_WORD_BEFORE = `(?<![${PY_WORD}])`;
const NOT_WORD_AFTER = `(?![${PY_WORD}])`;
// Python's `$` without MULTILINE: the very end, or just before a newline that ends the text.
const PY_END = '(?=\\n?$)';

type Rule = (s: string) => string;

const rule =
  (source: string, replacement: string, flags = ''): Rule =>
  (s) =>
    s.replace(new RegExp(source, `gu${flags}`), replacement);

const PY_SPACE_RE = new RegExp(`[${PY_SPACE}]`, 'u');

/**
 * NLTK's final-period rule `([^.])(\.)([<closers>]*)\s*$` -> `$1<replacement with $1 = the closers>`,
 * in linear time: a regex engine retries `\s*$` from every position (quadratic on a long run of
 * spaces). No closer or space is a period, so only the last period of the text can match: it must
 * follow a non-period and be followed by closers and then only spaces; the spaces are dropped.
 */
function finalPeriod(closers: string, replacement: string): Rule {
  const closer = new RegExp(`[${closers}]`, 'u');
  return (s) => {
    const dot = s.lastIndexOf('.');
    if (dot < 1 || s[dot - 1] === '.') return s;
    let k = dot + 1;
    while (k < s.length && closer.test(s[k])) k++;
    // Closers may be spaces too: the greedy closer run gives back only what the trailing spaces need.
    let t = s.length;
    while (t > dot + 1 && PY_SPACE_RE.test(s[t - 1])) t--;
    if (t > k) return s;
    return s.slice(0, dot) + replacement.replace('$1', s.slice(dot + 1, k));
  };
}

/** NLTKWordTokenizer's substitutions, in the order it applies them. */
const BEFORE_PADDING: readonly Rule[] = [
  // Opening quotes.
  rule('([«“‘„]|`+)', ' $1 '),
  rule('^"', '``'),
  rule('(``)', ' $1 '),
  rule('([ (\\[{<])("|\'{2})', '$1 `` '),
  rule(`(')(?!re|ve|ll|m|t|s|d|n)([${PY_WORD}])${NOT_WORD_AFTER}`, '$1 $2', 'i'),
  // Punctuation.
  finalPeriod(`\\])}>"'»”’ `, ' . $1 '),
  rule('([:,])([^\\p{Nd}])', ' $1 $2'),
  rule(`([:,])${PY_END}`, ' $1 '),
  rule('\\.{2,}', ' $& '),
  rule('[;@#$%&]', ' $& '),
  finalPeriod(`\\])}>"'`, ' .$1 '),
  rule('[?!]', ' $& '),
  rule("([^'])' ", "$1 ' "),
  rule('[*]', ' $& '),
  // Brackets, then double dashes.
  rule('[\\][(){}<>]', ' $& '),
  rule('--', ' -- '),
];

const AFTER_PADDING: readonly Rule[] = [
  // Closing quotes.
  rule('([»”’])', ' $1 '),
  rule("''", " '' "),
  rule('"', " '' "),
  rule("([^' ])('[sS]|'[mM]|'[dD]|') ", '$1 $2 '),
  rule("([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", '$1 $2 '),
  // Contractions split in two (MacIntyre's list).
  ...[
    ['can', 'not'],
    ['d', "'ye"],
    ['gim', 'me'],
    ['gon', 'na'],
    ['got', 'ta'],
    ['lem', 'me'],
    ['more', "'n"],
  ].map(([a, b]) => rule(`${NOT_WORD_BEFORE}(${a})(${b})${NOT_WORD_AFTER}`, ' $1 $2 ', 'i')),
  rule(`${NOT_WORD_BEFORE}(wan)(na)(?=[${PY_SPACE}])`, ' $1 $2 ', 'i'),
  rule(` ('t)(is)${NOT_WORD_AFTER}`, ' $1 $2 ', 'i'),
  rule(` ('t)(was)${NOT_WORD_AFTER}`, ' $1 $2 ', 'i'),
];

const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`, 'u');

/** NLTK's word_tokenize(text, preserve_line=True). */
export function nltkWordTokenize(text: string): string[] {
  let s = text;
  for (const apply of BEFORE_PADDING) s = apply(s);
  s = ` ${s} `;
  for (const apply of AFTER_PADDING) s = apply(s);
  return s.split(PY_SPLIT).filter((t) => t !== '');
}

/**
 * Spider's tokenization of a query: single quotes become double quotes, each quoted span
 * (paired left to right) is one token keeping its quotes and case, everything else is
 * lower-cased NLTK tokens, and `! =`, `> =`, `< =` are merged.
 */
export function spiderTokenize(sql: string): string[] {
  // Indices are counted in code points, as Python does, so the placeholder names match its own.
  const chars = Array.from(sql.replace(/'/g, '"'));
  const quotes: number[] = [];
  chars.forEach((c, i) => {
    if (c === '"') quotes.push(i);
  });
  if (quotes.length % 2 !== 0) throw new SqlTokenizeError('unbalanced quotes in the query');

  // Each quoted span becomes a placeholder named by its code point offsets (built in one pass).
  const values = new Map<string, string>();
  const pieces: string[] = [];
  let from = 0;
  for (let i = 0; i < quotes.length; i += 2) {
    const [open, close] = [quotes[i], quotes[i + 1]];
    const key = `__val_${open}_${close}__`;
    values.set(key, chars.slice(open, close + 1).join(''));
    pieces.push(chars.slice(from, open).join(''), key);
    from = close + 1;
  }
  pieces.push(chars.slice(from).join(''));
  const text = pieces;

  let toks = nltkWordTokenize(text.join('')).map((t) => {
    const lower = t.toLowerCase();
    return values.get(lower) ?? lower;
  });

  // Glue comparison operators that the word tokenizer split, scanning right to left as the official
  // code does. A merge at i consumes toks[i - 1], which is never an "=", so later (smaller)
  // positions see the original tokens: one pass marks the merges, one pass builds the result.
  const merged = new Array<boolean>(toks.length).fill(false);
  let wrapAtZero = false;
  for (let i = toks.length - 1; i >= 0; i--) {
    if (toks[i] !== '=') continue;
    if (i === 0) {
      wrapAtZero = true;
      continue;
    }
    const prev = toks[i - 1];
    if (prev === '!' || prev === '>' || prev === '<') {
      merged[i] = true;
      i--; // toks[i - 1] is consumed by this merge
    }
  }
  let glued: string[] = [];
  for (let i = 0; i < toks.length; i++) {
    if (i + 1 < toks.length && merged[i + 1]) {
      glued.push(`${toks[i]}=`);
      i++;
    } else glued.push(toks[i]);
  }
  if (wrapAtZero) {
    // Python's toks[i - 1] at i = 0 is the last token: toks[:-1] + [last + "="] + toks[1:].
    const prev = glued[glued.length - 1];
    if (prev === '!' || prev === '>' || prev === '<') glued = [...glued.slice(0, -1), `${prev}=`, ...glued.slice(1)];
  }
  toks = glued;
  return toks;
}
