/**
 * ggml's own quantizers, from the libggml-base.so that node-llama-cpp's CPU build ships,
 * called through koffi: the reference our block formats are checked against (by
 * test/export-ggml-quants.test.ts and bench/quant-quality.ts).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';

export const GGML_BASE = join(
  import.meta.dirname,
  '..',
  'node_modules',
  '@node-llama-cpp',
  'linux-x64',
  'bins',
  'linux-x64',
  'libggml-base.so',
);
export const haveGgml = process.platform === 'linux' && process.arch === 'x64' && existsSync(GGML_BASE);

type QuantizeChunk = (
  type: number,
  src: Float32Array,
  dst: Uint8Array,
  start: number,
  nrows: number,
  nPerRow: number,
  imatrix: null,
) => number;

let chunk: QuantizeChunk | undefined;

/** ggml_quantize_chunk(type, rows of n values) into `bytes` bytes. */
export function ggmlQuantize(type: number, x: Float32Array, nPerRow: number, bytes: number): Uint8Array {
  chunk ??= koffi
    .load(GGML_BASE)
    .func(
      'size_t ggml_quantize_chunk(int type, const float *src, _Out_ uint8_t *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)',
    ) as QuantizeChunk;
  const out = new Uint8Array(bytes);
  const written = chunk(type, x, out, 0, x.length / nPerRow, nPerRow, null);
  if (written !== bytes) throw new Error(`ggml_quantize_chunk wrote ${written} bytes, expected ${bytes}`);
  return out;
}
