/**
 * Text out of the scheduler's tokens, as an OpenAI-style server gives it: decoded incrementally
 * (no half characters), ended by the model's stop ids (left out of the text) or by the first of
 * the request's stop strings (cut there, itself left out). Streamed text holds back any tail
 * that could still become a stop string, so a stop never shows in a chunk.
 */
import { StreamDecoder, type Tokenizer } from '../data/tokenizer.js';
import type { FinishReason, RequestSampling, Scheduler } from './scheduler.js';

export interface TextRequest {
  promptIds: readonly number[];
  maxTokens: number;
  sampling: RequestSampling;
  seed?: number;
  stop: readonly string[];
  signal?: AbortSignal;
  /** Called with each piece of text as it becomes final. */
  onText?(delta: string): void;
}

export interface TextResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function pendingStopLength(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
      if (text.endsWith(s.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}

/** Submits at once (the scheduler's QueueFullError and others throw here, synchronously), then resolves with the text. */
export function generateText(
  scheduler: Scheduler,
  tokenizer: Tokenizer,
  stopIds: ReadonlySet<number>,
  req: TextRequest,
): Promise<TextResult> {
  const decoder = new StreamDecoder(tokenizer);
  const stops = req.stop.filter((s) => s.length > 0);
  let text = '';
  let emitted = 0;
  let cut = -1;
  const emit = (upTo: number): void => {
    if (upTo > emitted) {
      req.onText?.(text.slice(emitted, upTo));
      emitted = upTo;
    }
  };
  /** Appends decoded text; true when a stop string now occurs (text is cut before it). */
  const append = (piece: string): boolean => {
    if (piece === '') return false;
    const from = Math.max(0, text.length - Math.max(0, ...stops.map((s) => s.length - 1)));
    text += piece;
    let at = -1;
    for (const s of stops) {
      const i = text.indexOf(s, from);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      cut = at;
      text = text.slice(0, at);
      emit(at);
      return true;
    }
    emit(text.length - pendingStopLength(text, stops));
    return false;
  };
  const submitted = scheduler.submit({
    promptIds: req.promptIds,
    maxTokens: req.maxTokens,
    sampling: req.sampling,
    seed: req.seed,
    signal: req.signal,
    onToken: (id) => (stopIds.has(id) ? false : append(decoder.push(id))),
  });
  return submitted.then((result) => {
    let finishReason = result.finishReason;
    if (cut < 0 && finishReason !== 'cancelled') {
      if (append(decoder.flush())) finishReason = 'stop';
      else emit(text.length);
    }
    return { text, finishReason, promptTokens: req.promptIds.length, completionTokens: result.newIds.length };
  });
}
