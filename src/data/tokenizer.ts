import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { AddedTokenMatcher, parseAddedTokens, type AddedToken, type Segment } from './addedTokens.js';
import { BpeModel } from './bpe.js';
import { symbolsToBytes } from './byteLevel.js';
import { readTokenizerConfig, requireModelFile } from './modelFiles.js';
import { PreTokenizer } from './preTokenizer.js';

export interface EncodeOptions {
  /** Match special added tokens (`<|im_start|>`, ...) in the text; default true. Non-special added tokens always match. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Leave out special added tokens; default false. */
  skipSpecial?: boolean;
}

/** Ids of the named special tokens from tokenizer_config.json (absent where not configured). */
export interface SpecialTokenIds {
  bos?: number;
  eos?: number;
  pad?: number;
  unk?: number;
}

type Normalize = (text: string) => string;

/**
 * A Hugging Face tokenizer.json of the Qwen2 family (byte-level BPE), reimplemented to give the
 * same ids as HF `tokenizers` with `add_special_tokens=False`: added tokens are found in the
 * raw text first, the rest is normalized (NFC), split by the pre-tokenizer regex, and
 * each word is merged by BPE.
 */
export class Tokenizer {
  /** Ids of added tokens flagged special. */
  readonly specialIds: ReadonlySet<number>;
  private size: number | undefined;
  private readonly addedById = new Map<number, AddedToken>();
  private readonly addedByContent = new Map<string, number>();
  private readonly rawMatcher: AddedTokenMatcher;
  private readonly normalizedMatcher: AddedTokenMatcher;
  private readonly bytesById = new Map<number, Uint8Array>();

  private constructor(
    private readonly model: BpeModel,
    private readonly preTokenizer: PreTokenizer,
    private readonly normalize: Normalize | null,
    readonly addedTokens: readonly AddedToken[],
    /** Filled by `fromModelDir` from tokenizer_config.json. */
    readonly special: SpecialTokenIds,
  ) {
    for (const t of addedTokens) {
      this.addedById.set(t.id, t);
      this.addedByContent.set(t.content, t.id);
    }
    this.specialIds = new Set(addedTokens.filter((t) => t.special).map((t) => t.id));
    this.rawMatcher = new AddedTokenMatcher(
      addedTokens.filter((t) => !t.normalized),
      (t) => t.content,
    );
    this.normalizedMatcher = new AddedTokenMatcher(
      addedTokens.filter((t) => t.normalized),
      (t) => (normalize ? normalize(t.content) : t.content),
    );
  }

  /** Size an embedding table needs: one past the largest id. */
  get vocabSize(): number {
    this.size ??= Math.max(this.model.size(), ...this.addedTokens.map((t) => t.id + 1));
    return this.size;
  }

  /** Loads a tokenizer.json; special-token ids stay unknown (use `fromModelDir` for those). */
  static fromFile(path: string): Tokenizer {
    return Tokenizer.fromJson(readJsonFile(path, 'tokenizer file'), path);
  }

  /** Loads tokenizer.json and, when present, the special tokens of tokenizer_config.json. */
  static fromModelDir(dir: string): Tokenizer {
    const base = Tokenizer.fromFile(requireModelFile(dir, 'tokenizer'));
    const config = readTokenizerConfig(dir);
    if (config === undefined) return base;
    const idOf = (name: string | undefined, key: string) => {
      if (name === undefined) return undefined;
      const id = base.tokenId(name);
      if (id === undefined)
        throw new UserError(
          `${config.path}: ${key} ${JSON.stringify(name)} is not in the vocabulary of tokenizer.json`,
        );
      return id;
    };
    const special: SpecialTokenIds = {
      bos: idOf(config.bosToken, 'bos_token'),
      eos: idOf(config.eosToken, 'eos_token'),
      pad: idOf(config.padToken, 'pad_token'),
      unk: idOf(config.unkToken, 'unk_token'),
    };
    return new Tokenizer(base.model, base.preTokenizer, base.normalize, base.addedTokens, special);
  }

  /** Builds from parsed tokenizer.json content; `where` names the file in errors. */
  static fromJson(json: unknown, where: string): Tokenizer {
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new UserError(`malformed ${where}: expected a JSON object`);
    const j = json as Record<string, unknown>;
    const decoder = j.decoder as { type?: unknown } | null | undefined;
    if (decoder?.type !== 'ByteLevel') {
      throw new UserError(
        `unsupported decoder in ${where}: ${JSON.stringify(decoder?.type ?? null)} (sqlora supports ByteLevel)`,
      );
    }
    const model = BpeModel.fromJson(j.model, where);
    const added = parseAddedTokens(j.added_tokens, where);
    for (const t of added) {
      // HF would silently give such a token its vocabulary id; a consistent file never needs that.
      const vocabId = model.tokenId(t.content);
      if (vocabId !== undefined && vocabId !== t.id) {
        throw new UserError(
          `malformed ${where}: added token ${JSON.stringify(t.content)} has id ${t.id} but the vocabulary gives it ${vocabId}`,
        );
      }
    }
    return new Tokenizer(
      model,
      PreTokenizer.fromJson(j.pre_tokenizer, where),
      normalizerFromJson(j.normalizer, where),
      added,
      {},
    );
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const skipSpecial = opts.parseSpecial === false;
    const ids: number[] = [];
    const raw: Segment[] = [];
    this.rawMatcher.split(text, skipSpecial, raw);
    for (const seg of raw) {
      if (seg.id !== undefined) {
        ids.push(seg.id);
        continue;
      }
      const normalized: Segment[] = [];
      this.normalizedMatcher.split(this.normalize ? this.normalize(seg.text) : seg.text, skipSpecial, normalized);
      for (const piece of normalized) {
        if (piece.id !== undefined) ids.push(piece.id);
        else
          for (const word of this.preTokenizer.split(piece.text))
            for (const id of this.model.encodeWord(word)) ids.push(id);
      }
    }
    return ids;
  }

  /** Text of `ids`; invalid UTF-8 (e.g. half a character) becomes U+FFFD, as in HF. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      const bytes = this.tokenBytes(id, opts.skipSpecial === true);
      if (bytes === undefined) continue;
      parts.push(bytes);
      length += bytes.length;
    }
    const all = new Uint8Array(length);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return newUtf8Decoder().decode(all);
  }

  /** Id of a vocabulary entry or added token, spelled as in tokenizer.json. */
  tokenId(token: string): number | undefined {
    return this.addedByContent.get(token) ?? this.model.tokenId(token);
  }

  /** The tokenizer.json spelling of an id (byte-level symbols for vocabulary entries). */
  idToTokenString(id: number): string | undefined {
    return this.addedById.get(id)?.content ?? this.model.idToToken(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /**
   * Bytes that `id` contributes to decoded text, or undefined when it contributes none
   * (skipped special token, or an id with no token, which HF also skips).
   */
  tokenBytes(id: number, skipSpecial = false): Uint8Array | undefined {
    if (skipSpecial && this.specialIds.has(id)) return undefined;
    let bytes = this.bytesById.get(id);
    if (bytes === undefined) {
      const added = this.addedById.get(id);
      // HF stores a normalized added token in its normalized (NFC) form and decodes it through
      // the byte-level decoder like any token (so a lone "é" becomes byte 0xE9, i.e. U+FFFD).
      const token = added
        ? added.normalized && this.normalize
          ? this.normalize(added.content)
          : added.content
        : this.model.idToToken(id);
      if (token === undefined) return undefined;
      bytes = symbolsToBytes(token);
      this.bytesById.set(id, bytes);
    }
    return bytes;
  }
}

/**
 * Decodes ids one at a time for streaming generation: bytes of a character split across tokens
 * are held back until it is complete, so no chunk shows a spurious U+FFFD. The concatenated
 * chunks plus `flush()` equal `tokenizer.decode(allIds)`.
 */
export class StreamDecoder {
  private readonly utf8 = newUtf8Decoder();

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly opts: DecodeOptions = {},
  ) {}

  /** The text completed by this id (often empty mid-character). */
  push(id: number): string {
    const bytes = this.tokenizer.tokenBytes(id, this.opts.skipSpecial === true);
    return bytes === undefined ? '' : this.utf8.decode(bytes, { stream: true });
  }

  /** Whatever is held back, with U+FFFD for an incomplete character; resets the decoder. */
  flush(): string {
    return this.utf8.decode();
  }
}

/** Lossy UTF-8 like Rust's from_utf8_lossy; a leading U+FEFF is text, not a byte-order mark. */
function newUtf8Decoder() {
  return new TextDecoder('utf-8', { ignoreBOM: true });
}

const NORMAL_FORMS = new Set(['NFC', 'NFD', 'NFKC', 'NFKD']);

function normalizerFromJson(config: unknown, where: string): Normalize | null {
  if (config === undefined || config === null) return null;
  const c = config as { type?: unknown; normalizers?: unknown };
  if (c.type === 'Sequence' && Array.isArray(c.normalizers)) {
    const steps = c.normalizers
      .map((n: unknown) => normalizerFromJson(n, where))
      .filter((f): f is Normalize => f !== null);
    return steps.length === 0 ? null : (text) => steps.reduce((t, f) => f(t), text);
  }
  if (typeof c.type === 'string' && NORMAL_FORMS.has(c.type)) {
    const form = c.type;
    return (text) => text.normalize(form);
  }
  throw new UserError(
    `unsupported normalizer in ${where}: ${JSON.stringify(c.type)} (sqlora supports Unicode normal forms NFC/NFD/NFKC/NFKD)`,
  );
}
