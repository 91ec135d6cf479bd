/**
 * Quantization error, measured: relative RMS error (sqrt(sum (q - w)^2 / sum w^2)) of each
 * ggml type sqlora writes, for sqlora's quantizers and ggml's own (libggml-base of
 * node-llama-cpp's CPU build, through koffi), on Gaussian weights and on tensors of a
 * checkpoint (e.g. bench/export.ts's random 1.8B-shape one). Prints a markdown table.
 *
 *   npx tsx bench/quant-quality.ts [--model DIR]
 */
import { parseArgs } from 'node:util';
import { GgmlType, GGML_TYPES, ggmlTensorBytes } from '../src/export/gguf-format.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { ggmlQuantize, haveGgml } from './ggml-lib.js';
import { gaussian, relRms } from './quant-error.js';

const { values } = parseArgs({ options: { model: { type: 'string' } } });
const TYPES = [GgmlType.Q8_0, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.Q4_K];

function row(label: string, x: Float32Array, ne0: number): string {
  const cells = TYPES.map((type) => {
    const t = GGML_TYPES[type];
    if (ne0 % t.block !== 0) return 'n/a';
    const ours = relRms(t.dequantize(t.quantize(x), new Float32Array(x.length)), x);
    if (!haveGgml) return `${(100 * ours).toFixed(3)}%`;
    const theirs = ggmlQuantize(type, x, ne0, ggmlTensorBytes(type, [ne0, x.length / ne0]));
    const ref = relRms(t.dequantize(theirs, new Float32Array(x.length)), x);
    return `${(100 * ours).toFixed(3)}% / ${(100 * ref).toFixed(3)}%`;
  });
  return `| ${label} | ${cells.join(' | ')} |`;
}

const lines = [
  `| tensor | ${TYPES.map((t) => GGML_TYPES[t].name).join(' | ')} |`,
  `|---|${TYPES.map(() => '---').join('|')}|`,
  row('Gaussian N(0, 1), 4096 x 256', gaussian(4096 * 256, 1), 4096),
];
if (values.model) {
  const ckpt = openCheckpoint(values.model);
  for (const name of [
    'model.layers.0.self_attn.q_proj.weight',
    'model.layers.0.self_attn.v_proj.weight',
    'model.layers.0.mlp.down_proj.weight',
    'model.layers.0.mlp.up_proj.weight',
  ]) {
    const info = ckpt.info(name);
    // The first 256 rows keep the run short; every row is quantized on its own.
    const rows = Math.min(256, info.shape[0]);
    const x = ckpt.readF32(name).subarray(0, rows * info.shape[1]);
    lines.push(row(`${name} (${rows} x ${info.shape[1]})`, x, info.shape[1]));
  }
  ckpt.close();
}
process.stdout.write(
  `relative RMS error, sqlora${haveGgml ? ' / ggml' : ''} (lower is better)\n\n${lines.join('\n')}\n`,
);
