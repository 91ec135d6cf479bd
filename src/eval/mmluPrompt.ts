/**
 * lm-evaluation-harness's `mmlu` task as strings and tokens (its default template):
 *
 *   description  "The following are multiple choice questions (with answers) about {subject, _ -> space}.\n\n"
 *   doc_to_text  "{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:"
 *   continuation target_delimiter " " + the letter
 *   few-shot     the subject's first n dev questions (sampler first_n), each as doc_to_text + " " +
 *                its letter, each followed by "\n\n" (fewshot_delimiter), after the description
 *
 * and its loglikelihood request tokenization (TemplateLM._encode_pair): trailing whitespace of
 * the context moves to the continuation; the context is encoded alone, the whole string is
 * encoded, and the continuation's tokens are the whole string's after the context's count. The
 * model reads context + continuation, cut to the last max_length + 1 tokens, minus the last.
 */
import { LETTERS, type MmluQuestion } from './mmluData.js';

export function mmluDescription(subject: string): string {
  return `The following are multiple choice questions (with answers) about ${subject.split('_').join(' ')}.\n\n`;
}

/** Python's str.isspace() characters (JS's \s differs: it has U+FEFF, lacks U+001C-U+001F and U+0085). */
const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'gu');
const PY_RSTRIP = new RegExp(`${PY_SPACE}+$`, 'u');

/** Python's str.strip() (the harness's template calls it on the question). */
export function pythonStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

export function mmluDocText(q: MmluQuestion): string {
  const [a, b, c, d] = q.choices;
  return `${pythonStrip(q.question)}\nA. ${a}\nB. ${b}\nC. ${c}\nD. ${d}\nAnswer:`;
}

/** The context of one question: description, the few-shot examples with answers, the question. */
export function mmluContext(q: MmluQuestion, fewShot: readonly MmluQuestion[]): string {
  const shots = fewShot.map((ex) => `${mmluDocText(ex)} ${LETTERS[ex.answer]}\n\n`).join('');
  return mmluDescription(q.subject) + shots + mmluDocText(q);
}

const MMLU_CONTINUATIONS = LETTERS.map((l) => ` ${l}`);

export interface EncodedPair {
  context: number[];
  continuation: number[];
}

/** What scoring needs of a tokenizer (the data layer's Tokenizer fits; eval sits below data). */
export interface MmluTokenizer {
  encode(text: string): number[];
}

/** The harness's _encode_pair for a decoder-only model (no special tokens added). */
export function encodePair(tokenizer: MmluTokenizer, context: string, continuation: string): EncodedPair {
  const trimmed = context.replace(PY_RSTRIP, '');
  const spaces = context.length - trimmed.length;
  if (spaces > 0) {
    continuation = context.slice(trimmed.length) + continuation;
    context = trimmed;
  }
  const whole = tokenizer.encode(context + continuation);
  const ctx = tokenizer.encode(context);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/** What the model reads for one request and which positions score its continuation. */
export interface ScoredSequence {
  /** Tokens fed to the model: (context + continuation)[-(maxLength + 1):][:-1]. */
  input: number[];
  /** The continuation's tokens, predicted at the last continuation.length positions of input. */
  continuation: number[];
}

export function scoredSequence(pair: EncodedPair, maxLength: number): ScoredSequence {
  const all = [...pair.context, ...pair.continuation];
  const input = all.slice(-(maxLength + 1)).slice(0, -1);
  return { input, continuation: pair.continuation };
}

/** A question's four requests, encoded. */
export interface EncodedQuestion {
  context: string;
  pairs: EncodedPair[];
  /** Every continuation is one token: one pass over the context scores all four. */
  singleToken: boolean;
}

export function encodeQuestion(
  tokenizer: MmluTokenizer,
  q: MmluQuestion,
  fewShot: readonly MmluQuestion[],
): EncodedQuestion {
  const context = mmluContext(q, fewShot);
  const pairs = MMLU_CONTINUATIONS.map((c) => encodePair(tokenizer, context, c));
  return { context, pairs, singleToken: pairs.every((p) => p.continuation.length === 1) };
}
