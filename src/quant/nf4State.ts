/**
 * NF4 weights as bitsandbytes' Linear4bit writes them into a state dict (and so into a
 * transformers safetensors checkpoint), for a weight named `<m>.weight`:
 *
 *   <m>.weight                                   U8  [ceil(n/2), 1]  packed nibbles
 *   <m>.weight.absmax                            U8  [blocks]        (F32 without double quant)
 *   <m>.weight.quant_map                         F32 [16]            NF4 code book
 *   <m>.weight.nested_absmax                     F32 [ceil(blocks/256)]
 *   <m>.weight.nested_quant_map                  F32 [256]           dynamic 8-bit map
 *   <m>.weight.quant_state.bitsandbytes__nf4     U8  [len]           JSON of the rest
 *
 * The JSON is Python's json.dumps of {quant_type, blocksize, dtype, shape, nested_blocksize,
 * nested_dtype, nested_offset} in that order, which we reproduce byte for byte.
 */
import { UserError } from '../util/errors.js';
import { hostTensor, formatShape, type HostTensor } from '../tensor/tensor.js';
import type { Nf4SourceDType, Nf4Tensor } from './nf4.js';

export const NF4_STATE_SUFFIX = '.quant_state.bitsandbytes__nf4';

/** Python's repr() of a float, which json.dumps uses: shortest round-trip digits. */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  const sign = mant.startsWith('-') ? '-' : '';
  const digits = mant.replace('-', '').replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${int}.${frac || '0'}`;
}

/** The state-dict tensors of one NF4 weight; `weightName` ends in `.weight`. */
export function nf4ToStateDict(weightName: string, q: Nf4Tensor): Record<string, HostTensor> {
  const p = weightName;
  const out: Record<string, HostTensor> = {
    [p]: hostTensor('U8', [q.packed.length, 1], q.packed),
    [`${p}.quant_map`]: hostTensor('F32', [q.code.length], q.code),
  };
  let state = `{"quant_type": "nf4", "blocksize": ${q.blocksize}, "dtype": "${q.dtype}", "shape": [${q.shape.join(', ')}]`;
  if (q.absmax instanceof Float32Array) {
    out[`${p}.absmax`] = hostTensor('F32', [q.absmax.length], q.absmax);
  } else {
    const a = q.absmax;
    out[`${p}.absmax`] = hostTensor('U8', [a.codes.length], a.codes);
    out[`${p}.nested_absmax`] = hostTensor('F32', [a.nestedAbsmax.length], a.nestedAbsmax);
    out[`${p}.nested_quant_map`] = hostTensor('F32', [a.nestedCode.length], a.nestedCode);
    state += `, "nested_blocksize": ${a.nestedBlocksize}, "nested_dtype": "float32", "nested_offset": ${pythonFloatRepr(a.offset)}`;
  }
  const json = new TextEncoder().encode(state + '}');
  out[p + NF4_STATE_SUFFIX] = hostTensor('U8', [json.length], json);
  return out;
}

/**
 * Reads one NF4 weight back from its state-dict tensors. `read` returns a stored tensor or
 * undefined; `source` names the file in error messages.
 */
export function nf4FromStateDict(
  weightName: string,
  read: (name: string) => HostTensor | undefined,
  source: string,
): Nf4Tensor {
  const need = (suffix: string, dtype: HostTensor['dtype']): HostTensor => {
    const t = read(weightName + suffix);
    if (!t) throw new UserError(`${source}: NF4 weight ${weightName} lacks ${weightName}${suffix}`);
    if (t.dtype !== dtype) throw new UserError(`${source}: ${weightName}${suffix} is ${t.dtype}, expected ${dtype}`);
    return t;
  };
  const bytes = (t: HostTensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const floats = (t: HostTensor): Float32Array => new Float32Array(bytes(t).slice().buffer);

  let state: Record<string, unknown>;
  try {
    state = JSON.parse(new TextDecoder().decode(bytes(need(NF4_STATE_SUFFIX, 'U8'))));
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${source}: ${weightName}${NF4_STATE_SUFFIX} does not hold valid JSON`);
  }
  const bad = (field: string): UserError =>
    new UserError(
      `${source}: ${weightName}${NF4_STATE_SUFFIX} has unsupported ${field} ${JSON.stringify(state[field])}`,
    );
  if (state.quant_type !== 'nf4') throw bad('quant_type');
  const blocksize = state.blocksize;
  if (!Number.isSafeInteger(blocksize) || (blocksize as number) <= 0 || (blocksize as number) % 2)
    throw bad('blocksize');
  const shape = state.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) throw bad('shape');
  const dtype = state.dtype;
  if (dtype !== 'bfloat16' && dtype !== 'float16' && dtype !== 'float32') throw bad('dtype');

  const n = (shape as number[]).reduce((a, b) => a * b, 1);
  const blocks = Math.ceil(n / (blocksize as number));
  const packedT = read(weightName);
  if (!packedT || packedT.dtype !== 'U8') {
    throw new UserError(
      `${source}: NF4 weight ${weightName} must be stored as U8 (other quant_storage dtypes are not supported)`,
    );
  }
  const packed = bytes(packedT);
  if (packed.length !== Math.ceil(n / 2)) {
    throw new UserError(
      `${source}: ${weightName} holds ${packed.length} bytes, expected ${Math.ceil(n / 2)} for shape ${formatShape(shape)}`,
    );
  }
  const code = floats(need('.quant_map', 'F32'));
  if (code.length !== 16)
    throw new UserError(`${source}: ${weightName}.quant_map has ${code.length} values, expected 16`);

  let absmax: Nf4Tensor['absmax'];
  if (state.nested_offset === undefined) {
    absmax = floats(need('.absmax', 'F32'));
  } else {
    const offset = state.nested_offset;
    const nestedBlocksize = state.nested_blocksize;
    if (typeof offset !== 'number') throw bad('nested_offset');
    if (!Number.isSafeInteger(nestedBlocksize) || (nestedBlocksize as number) <= 0) throw bad('nested_blocksize');
    const nestedAbsmax = floats(need('.nested_absmax', 'F32'));
    const nestedCode = floats(need('.nested_quant_map', 'F32'));
    const codes = bytes(need('.absmax', 'U8'));
    if (nestedCode.length !== 256)
      throw new UserError(`${source}: ${weightName}.nested_quant_map has ${nestedCode.length} values, expected 256`);
    if (nestedAbsmax.length !== Math.ceil(blocks / (nestedBlocksize as number))) {
      throw new UserError(
        `${source}: ${weightName}.nested_absmax has ${nestedAbsmax.length} values, expected ${Math.ceil(blocks / (nestedBlocksize as number))}`,
      );
    }
    absmax = {
      codes: codes.slice(),
      offset: Math.fround(offset),
      nestedAbsmax,
      nestedBlocksize: nestedBlocksize as number,
      nestedCode,
    };
  }
  const count = absmax instanceof Float32Array ? absmax.length : absmax.codes.length;
  if (count !== blocks) throw new UserError(`${source}: ${weightName}.absmax has ${count} values, expected ${blocks}`);
  return {
    shape: shape as number[],
    dtype: dtype as Nf4SourceDType,
    blocksize: blocksize as number,
    packed: packed.slice(),
    code,
    absmax,
  };
}
