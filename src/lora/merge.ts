/**
 * Merging a LoRA adapter into a base weight: W' = W + scale * B @ A. The exporters (src/export)
 * stream a whole checkpoint through it.
 */

/** w[out, in] += scale * b[out, r] @ a[r, in], in place. */
export function mergeLoraWeight(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inp: number,
  r: number,
  scale: number,
): void {
  const row = new Float64Array(inp);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    // Four ranks per pass over the row: a quarter of the row's loads and stores (this loop is
    // most of a 1.8B model's merge time).
    let k = 0;
    for (; k + 4 <= r; k += 4) {
      const b0 = b[o * r + k],
        b1 = b[o * r + k + 1],
        b2 = b[o * r + k + 2],
        b3 = b[o * r + k + 3];
      const a0 = k * inp,
        a1 = a0 + inp,
        a2 = a1 + inp,
        a3 = a2 + inp;
      for (let i = 0; i < inp; i++) row[i] += b0 * a[a0 + i] + b1 * a[a1 + i] + b2 * a[a2 + i] + b3 * a[a3 + i];
    }
    for (; k < r; k++) {
      const bk = b[o * r + k];
      const ak = k * inp;
      for (let i = 0; i < inp; i++) row[i] += bk * a[ak + i];
    }
    const wo = o * inp;
    for (let i = 0; i < inp; i++) w[wo + i] += scale * row[i];
  }
}
