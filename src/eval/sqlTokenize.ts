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

type Rule = readonly [RegExp, string];

const rule = (source: string, replacement: string, flags = ''): Rule => [new RegExp(source, `gu${flags}`), replacement];

/** NLTKWordTokenizer's substitutions, in the order it applies them. */
const BEFORE_PADDING: readonly Rule[] = [
  // Opening quotes.
  rule('([«“‘„]|`+)', ' $1 '),
  rule('^"', '``'),
  rule('(``)', ' $1 '),
  rule('([ (\\[{<])("|\'{2})', '$1 `` '),
  rule(`(')(?!re|ve|ll|m|t|s|d|n)([${PY_WORD}])${NOT_WORD_AFTER}`, '$1 $2', 'i'),
  // Punctuation.
  rule(`([^.])(\\.)([\\])}>"'»”’ ]*)[${PY_SPACE}]*$`, '$1 $2 $3 '),
  rule('([:,])([^\\p{Nd}])', ' $1 $2'),
  rule(`([:,])${PY_END}`, ' $1 '),
  rule('\\.{2,}', ' $& '),
  rule('[;@#$%&]', ' $& '),
  rule(`([^.])(\\.)([\\])}>"']*)[${PY_SPACE}]*$`, '$1 $2$3 '),
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
  for (const [re, to] of BEFORE_PADDING) s = s.replace(re, to);
  s = ` ${s} `;
  for (const [re, to] of AFTER_PADDING) s = s.replace(re, to);
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

  const values = new Map<string, string>();
  let text = chars;
  for (let i = quotes.length - 1; i > 0; i -= 2) {
    const [open, close] = [quotes[i - 1], quotes[i]];
    const key = `__val_${open}_${close}__`;
    values.set(key, text.slice(open, close + 1).join(''));
    text = [...text.slice(0, open), key, ...text.slice(close + 1)];
  }

  let toks = nltkWordTokenize(text.join('')).map((t) => {
    const lower = t.toLowerCase();
    return values.get(lower) ?? lower;
  });

  // Glue comparison operators that the word tokenizer split, scanning right to left.
  const eqPositions = toks.flatMap((t, i) => (t === '=' ? [i] : [])).reverse();
  for (const i of eqPositions) {
    // Python's toks[i - 1] wraps to the last token when i is 0; kept for identical results.
    const prev = i > 0 ? toks[i - 1] : toks[toks.length - 1];
    if (prev === '!' || prev === '>' || prev === '<') {
      const head = i > 0 ? toks.slice(0, i - 1) : toks.slice(0, -1);
      toks = [...head, `${prev}=`, ...toks.slice(i + 1)];
    }
  }
  return toks;
}
