/**
 * GPT-2's byte-level alphabet, as used by the HF `ByteLevel` pre-tokenizer and decoder: every
 * byte maps to one printable character, so a BPE vocabulary over those characters can spell
 * any UTF-8 text without an unknown token. Printable Latin-1 bytes map to themselves; the
 * other 68 bytes (controls, space, NBSP, soft hyphen, ...) map to U+0100 onward, in byte order.
 */

function buildByteToChar(): string[] {
  const table: string[] = new Array<string>(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

/** Character standing for each byte value. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/**
 * Raw bytes of a token string. As in HF's ByteLevel decoder, a token containing any character
 * outside the byte alphabet (e.g. an added token with CJK text) stands for its own UTF-8 bytes.
 */
export function symbolsToBytes(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]);
    if (b === undefined) return new TextEncoder().encode(token);
    out[i] = b;
  }
  return out;
}
