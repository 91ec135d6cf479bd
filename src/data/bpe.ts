import { UserError } from '../util/errors.js';
import { BYTE_TO_CHAR } from './byteLevel.js';

/** Heap entries pack (rank, position): lower rank first, then leftmost, as HF's BPE does. */
const POS_BASE = 2 ** 26;
/** Words cached at most; a long generation or dataset run must not grow memory without bound. */
const CACHE_LIMIT = 200_000;

/**
 * The `model` section of a byte-level BPE tokenizer.json: vocabulary, ranked merges, and the
 * merge loop that turns one pre-tokenized word into ids.
 *
 * Merges are looked up by their "a b" spelling, which is how tokenizer.json stores them: building
 * id-pair tables for 150k merges would dominate load time, while encoding is cached per word.
 */
export class BpeModel {
  private readonly cache = new Map<string, readonly number[]>();
  private readonly encoder = new TextEncoder();
  private tokens: string[] | undefined;

  private constructor(
    /** Token -> id, a prototype-less object straight from JSON.parse (no copy of 150k entries). */
    private readonly vocab: Record<string, number | undefined>,
    /** Rank by "a b". */
    private readonly ranks: ReadonlyMap<string, number>,
    private readonly where: string,
  ) {}

  static fromJson(model: unknown, where: string): BpeModel {
    const m = (model ?? {}) as Record<string, unknown>;
    const bad = (detail: string) => new UserError(`unsupported tokenizer model in ${where}: ${detail}`);
    if (m.type !== 'BPE') throw bad(`type ${JSON.stringify(m.type)} (sqlora supports byte-level BPE only)`);
    if (m.dropout !== undefined && m.dropout !== null && m.dropout !== 0) throw bad('BPE dropout is not supported');
    if (m.byte_fallback === true) throw bad('byte_fallback=true is not supported');
    if (m.continuing_subword_prefix || m.end_of_word_suffix) throw bad('subword prefixes/suffixes are not supported');
    if (m.ignore_merges === true) throw bad('ignore_merges=true is not supported');
    if (m.vocab === null || typeof m.vocab !== 'object' || Array.isArray(m.vocab))
      throw bad('model.vocab must be an object');
    if (!Array.isArray(m.merges)) throw bad('model.merges must be a list');

    const vocab = Object.setPrototypeOf(m.vocab, null) as Record<string, number | undefined>;
    // With an unknown token HF would emit it for a missing byte; without one it drops the byte.
    if (m.unk_token && BYTE_TO_CHAR.some((c) => vocab[c] === undefined)) {
      throw bad('an unk_token with bytes missing from the vocabulary is not supported');
    }
    const ranks = new Map<string, number>();
    const merges = m.merges as unknown[];
    for (let rank = 0; rank < merges.length; rank++) {
      const merge = merges[rank];
      let key: string | undefined;
      if (typeof merge === 'string') {
        const space = merge.indexOf(' ');
        if (space > 0 && space < merge.length - 1 && merge.indexOf(' ', space + 1) < 0) key = merge;
      } else if (
        Array.isArray(merge) &&
        merge.length === 2 &&
        typeof merge[0] === 'string' &&
        typeof merge[1] === 'string'
      ) {
        key = `${merge[0]} ${merge[1]}`;
      }
      if (key === undefined) throw bad(`merge #${rank} ${JSON.stringify(merge)} is not "a b" or ["a", "b"]`);
      // A repeated pair keeps its first (best) rank.
      if (!ranks.has(key)) ranks.set(key, rank);
    }
    return new BpeModel(vocab, ranks, where);
  }

  /** Id of a vocabulary entry. */
  tokenId(token: string): number | undefined {
    return this.vocab[token];
  }

  /** Vocabulary entry of an id (the table is built on first use: encoding never needs it). */
  idToToken(id: number): string | undefined {
    if (this.tokens === undefined) {
      this.tokens = [];
      for (const token of Object.keys(this.vocab)) this.tokens[this.vocab[token] as number] = token;
    }
    return this.tokens[id];
  }

  /** One past the largest id. */
  size(): number {
    let max = -1;
    for (const token in this.vocab) max = Math.max(max, this.vocab[token] as number);
    return max + 1;
  }

  /** Ids of one pre-tokenized word (cached: prompts repeat most of their words). */
  encodeWord(word: string): readonly number[] {
    let ids = this.cache.get(word);
    if (ids === undefined) {
      ids = this.mergeWord(this.encoder.encode(word));
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  private rank(a: string, b: string): number {
    return this.ranks.get(a + ' ' + b) ?? -1;
  }

  private mergeWord(bytes: Uint8Array): number[] {
    const syms: string[] = [];
    for (const b of bytes) if (this.vocab[BYTE_TO_CHAR[b]] !== undefined) syms.push(BYTE_TO_CHAR[b]);
    const n = syms.length;

    // Symbols form a linked list; a merge keeps the left symbol and unlinks the right one.
    const next = new Int32Array(n).map((_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = new Int32Array(n).map((_, i) => i - 1);
    const alive = new Uint8Array(n).fill(1);
    const heap = new MinHeap();
    for (let i = 0; i + 1 < n; i++) {
      const r = this.rank(syms[i], syms[i + 1]);
      if (r >= 0) heap.push(r * POS_BASE + i);
    }
    while (heap.size > 0) {
      const top = heap.pop();
      const r = Math.floor(top / POS_BASE);
      const pos = top - r * POS_BASE;
      const right = next[pos];
      // Skip entries made stale by an earlier merge of either symbol.
      if (!alive[pos] || right < 0 || this.rank(syms[pos], syms[right]) !== r) continue;
      syms[pos] += syms[right];
      alive[right] = 0;
      next[pos] = next[right];
      if (next[pos] >= 0) prev[next[pos]] = pos;
      if (prev[pos] >= 0) {
        const rl = this.rank(syms[prev[pos]], syms[pos]);
        if (rl >= 0) heap.push(rl * POS_BASE + prev[pos]);
      }
      if (next[pos] >= 0) {
        const rr = this.rank(syms[pos], syms[next[pos]]);
        if (rr >= 0) heap.push(rr * POS_BASE + pos);
      }
    }
    const ids: number[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]) {
      const id = this.tokenId(syms[i]);
      if (id === undefined)
        throw new UserError(
          `malformed ${this.where}: a merge produces ${JSON.stringify(syms[i])}, which is not in the vocabulary`,
        );
      ids.push(id);
    }
    return ids;
  }
}

/** Binary min-heap of numbers. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(x: number): void {
    const a = this.items;
    let i = a.push(x) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= x) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = x;
  }

  pop(): number {
    const a = this.items;
    const top = a[0];
    const last = a.pop() as number;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const c = l + 1 < a.length && a[l + 1] < a[l] ? l + 1 : l;
        if (a[c] >= last) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}
