import { UserError } from '../util/errors.js';

/** An entry of tokenizer.json's `added_tokens` (control tokens like `<|im_start|>`). */
export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens are dropped by `decode(..., {skipSpecial: true})` and by `parseSpecial: false`. */
  special: boolean;
  /** Matched on the normalized text (true) or on the raw input (false). */
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

export function parseAddedTokens(list: unknown, where: string): AddedToken[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new UserError(`malformed added_tokens in ${where}: expected a list`);
  return list.map((entry: unknown, i: number) => {
    const t = (entry ?? {}) as Record<string, unknown>;
    if (!Number.isInteger(t.id) || typeof t.content !== 'string' || t.content === '') {
      throw new UserError(`malformed added_tokens[${i}] in ${where}: needs an integer "id" and a non-empty "content"`);
    }
    return {
      id: t.id as number,
      content: t.content,
      special: t.special === true,
      // HF's default when the flag is absent: special tokens match the raw text.
      normalized: typeof t.normalized === 'boolean' ? t.normalized : t.special !== true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      singleWord: t.single_word === true,
    };
  });
}

/** A piece of input: either an added token or plain text for the model. */
export interface Segment {
  text: string;
  id?: number;
}

// The Rust `regex` crate's Unicode \w and \s, which HF uses for these checks.
const WORD_AT_END = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u;
const WORD_AT_START = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const SPACE_AT_END = /\p{White_Space}*$/u;
const SPACE_AT_START = /^\p{White_Space}*/u;

/**
 * Finds added tokens in text the way HF's AddedVocabulary does: leftmost-longest,
 * non-overlapping matches, with the single_word / lstrip / rstrip rules.
 */
export class AddedTokenMatcher {
  private readonly pattern: RegExp | null;
  private readonly byContent = new Map<string, AddedToken>();

  /** `spell` gives the text a token is matched as (its content, normalized where it applies). */
  constructor(tokens: readonly AddedToken[], spell: (t: AddedToken) => string) {
    for (const t of tokens) if (!this.byContent.has(spell(t))) this.byContent.set(spell(t), t);
    // A regex alternation tries alternatives in order, so longest first gives leftmost-longest.
    const alternatives = [...this.byContent.keys()]
      .sort((a, b) => b.length - a.length)
      .map((s) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&'));
    this.pattern = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : null;
  }

  /** Appends the segments of `text`; with `skipSpecial`, special tokens stay plain text. */
  split(text: string, skipSpecial: boolean, out: Segment[]): void {
    const re = this.pattern;
    if (re === null || text === '') {
      if (text !== '') out.push({ text });
      return;
    }
    re.lastIndex = 0;
    let done = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const token = this.byContent.get(m[0]) as AddedToken;
      let start = m.index;
      let stop = start + m[0].length;
      if (skipSpecial && token.special) continue;
      if (token.singleWord && (WORD_AT_END.test(text.slice(0, start)) || WORD_AT_START.test(text.slice(stop))))
        continue;
      if (token.lstrip)
        start = Math.max(start - (SPACE_AT_END.exec(text.slice(0, start)) as RegExpExecArray)[0].length, done);
      if (token.rstrip) stop += (SPACE_AT_START.exec(text.slice(stop)) as RegExpExecArray)[0].length;
      if (start < done) continue; // only reachable through a previous token's rstrip
      if (start > done) out.push({ text: text.slice(done, start) });
      out.push({ text: text.slice(start, stop), id: token.id });
      done = stop;
    }
    if (done < text.length) out.push({ text: text.slice(done) });
  }
}
