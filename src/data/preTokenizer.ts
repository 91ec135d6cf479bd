import { UserError } from '../util/errors.js';

/**
 * The `pre_tokenizer` section of tokenizer.json: cuts text into words before BPE.
 * Supported: Split (behavior Isolated, not inverted) steps, optionally in a Sequence, ending with
 * ByteLevel without its own regex — the layout of the Qwen2 family (Qwen1.5, Qwen2, Qwen2.5, Qwen3).
 */
export class PreTokenizer {
  private constructor(private readonly patterns: readonly RegExp[]) {}

  /** `where` names the file in error messages. */
  static fromJson(config: unknown, where: string): PreTokenizer {
    const steps = flattenSequence(config, where);
    const last = steps[steps.length - 1];
    if (last === undefined || last.type !== 'ByteLevel') {
      throw unsupported(where, 'it must end with a ByteLevel step');
    }
    if (last.use_regex === true)
      throw unsupported(where, 'ByteLevel with use_regex=true (GPT-2 style) is not supported');
    if (last.add_prefix_space === true)
      throw unsupported(where, 'ByteLevel with add_prefix_space=true is not supported');
    const patterns = steps.slice(0, -1).map((step) => splitStepPattern(step, where));
    return new PreTokenizer(patterns);
  }

  /** The words of `text`, in order; their concatenation is `text`. */
  split(text: string): string[] {
    let pieces = [text];
    for (const re of this.patterns) {
      const next: string[] = [];
      for (const piece of pieces) splitIsolated(piece, re, next);
      pieces = next;
    }
    return pieces;
  }
}

type Step = Record<string, unknown> & { type?: unknown };

function flattenSequence(config: unknown, where: string): Step[] {
  if (config === null || typeof config !== 'object') throw unsupported(where, 'pre_tokenizer is missing');
  const step = config as Step;
  if (step.type !== 'Sequence') return [step];
  if (!Array.isArray(step.pretokenizers)) throw unsupported(where, 'Sequence without a pretokenizers list');
  return step.pretokenizers.flatMap((s: unknown) => flattenSequence(s, where));
}

function splitStepPattern(step: Step, where: string): RegExp {
  if (step.type !== 'Split') throw unsupported(where, `step type ${JSON.stringify(step.type)} is not supported`);
  if (step.behavior !== 'Isolated')
    throw unsupported(where, `Split behavior ${JSON.stringify(step.behavior)} is not supported (only Isolated)`);
  if (step.invert === true) throw unsupported(where, 'Split with invert=true is not supported');
  const pattern = step.pattern as { Regex?: unknown; String?: unknown } | undefined;
  if (typeof pattern?.Regex === 'string') return compileOnigurumaPattern(pattern.Regex, where);
  if (typeof pattern?.String === 'string') return new RegExp(escapeLiteral(pattern.String), 'gu');
  throw unsupported(where, 'Split pattern must be {"Regex": ...} or {"String": ...}');
}

function unsupported(where: string, detail: string): UserError {
  return new UserError(`unsupported pre_tokenizer in ${where}: ${detail}`);
}

/** Appends the matches of `re` in `text` and the non-empty gaps between them. */
function splitIsolated(text: string, re: RegExp, out: string[]): void {
  re.lastIndex = 0;
  let prev = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      // An empty match splits nothing; step over one code point as Oniguruma's iterator does.
      re.lastIndex = end + ((text.codePointAt(end) ?? 0) > 0xffff ? 2 : 1);
      continue;
    }
    if (start > prev) out.push(text.slice(prev, start));
    out.push(m[0]);
    prev = end;
  }
  if (prev < text.length) out.push(text.slice(prev));
}

// Oniguruma (what HF tokenizers compiles Split regexes with) gives \s, \d, \w their Unicode
// meanings; in a JavaScript regex they are ASCII-only (\d, \w) or a different set (\s includes
// U+FEFF and lacks U+0085). These are the Oniguruma sets written as Unicode properties.
const WORD = '\\p{L}\\p{M}\\p{Nd}\\p{Pc}';
const ESCAPES_ANYWHERE: Record<string, string> = {
  s: '\\p{White_Space}',
  S: '\\P{White_Space}',
  d: '\\p{Nd}',
  D: '\\P{Nd}',
};

/**
 * Translates an Oniguruma pattern from tokenizer.json into an equivalent JavaScript regex
 * (flags `gu`). Node 20 has no inline modifier groups, so `(?i:...)` over literal
 * alternatives (the contractions `'s|'t|...`) is expanded into explicit case classes.
 */
export function compileOnigurumaPattern(pattern: string, where: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const e = pattern[i + 1];
      if (e === undefined) throw badPattern(pattern, where, 'trailing backslash');
      i++;
      if (ESCAPES_ANYWHERE[e] !== undefined) out += ESCAPES_ANYWHERE[e];
      else if (e === 'w') out += inClass ? WORD : `[${WORD}]`;
      else if (e === 'W' && !inClass) out += `[^${WORD}]`;
      else if ('WbBAzZGhHRXK'.includes(e)) throw badPattern(pattern, where, `\\${e} has no JavaScript equivalent here`);
      else out += '\\' + e;
    } else if (inClass) {
      if (c === '[') throw badPattern(pattern, where, 'nested character classes are not supported');
      if (c === ']') inClass = false;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal in Oniguruma.
      if (pattern[i + 1] === '^') out += pattern[++i];
      if (pattern[i + 1] === ']') {
        out += '\\]';
        i++;
      }
    } else if (pattern.startsWith('(?i:', i)) {
      const close = findGroupEnd(pattern, i + 4, where);
      out += '(?:' + caseless(pattern.slice(i + 4, close), pattern, where) + ')';
      i = close;
    } else if (c === '(' && pattern[i + 1] === '?' && !/^\(\?(?::|=|!|<=|<!|<[A-Za-z])/.test(pattern.slice(i, i + 4))) {
      throw badPattern(pattern, where, `inline flags at "${pattern.slice(i, i + 5)}" are not supported`);
    } else {
      out += c;
    }
  }
  if (inClass) throw badPattern(pattern, where, 'unterminated character class');
  try {
    return new RegExp(out, 'gu');
  } catch (err) {
    throw badPattern(pattern, where, (err as Error).message);
  }
}

function badPattern(pattern: string, where: string, detail: string): UserError {
  return new UserError(`unsupported pre_tokenizer regex in ${where}: ${detail} (pattern ${JSON.stringify(pattern)})`);
}

function findGroupEnd(pattern: string, from: number, where: string): number {
  for (let i = from; i < pattern.length; i++) {
    if (pattern[i] === '\\') i++;
    else if (pattern[i] === ')') return i;
  }
  throw badPattern(pattern, where, 'unterminated (?i: group');
}

// Non-ASCII characters whose Unicode simple case folding is an ASCII letter; Oniguruma's
// caseless matching accepts them (e.g. "'ſ" matches (?i:'s)).
const EXTRA_FOLDS: Record<string, string> = { s: '\u017f', k: '\u212a' };

/** Expands a caseless group body made of literal alternatives. */
function caseless(body: string, pattern: string, where: string): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    let c = body[i];
    if (c === '|') {
      out += '|';
      continue;
    }
    if (c === '\\') c = body[++i];
    else if ('()[]{}.*+?^$'.includes(c))
      throw badPattern(pattern, where, '(?i: groups may only hold literal alternatives');
    const lower = c.toLowerCase();
    const upper = c.toUpperCase();
    if (lower === upper) out += escapeLiteral(c);
    else if (/^[a-z]$/.test(lower)) out += `[${lower}${upper}${EXTRA_FOLDS[lower] ?? ''}]`;
    else throw badPattern(pattern, where, `caseless non-ASCII letter ${JSON.stringify(c)} is not supported`);
  }
  return out;
}

function escapeLiteral(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}
