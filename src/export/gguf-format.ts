/**
 * GGUF v3 (ggml's docs/gguf.md): "GGUF", u32 version 3, u64 tensor count, u64 metadata count;
 * metadata as (string key, u32 value type, value); tensor infos as (string name, u32 n_dims,
 * u64 ne[n_dims] with ne0 the contiguous dimension, u32 ggml type, u64 offset into the data);
 * then padding to `general.alignment` (32) and the data, each tensor aligned the same way.
 * Strings are u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements.
 */
import {
  dequantizeQ4_K,
  dequantizeQ5_0,
  dequantizeQ6_K,
  dequantizeQ8_0,
  Q4_K_BYTES,
  Q5_0_BYTES,
  Q6_K_BYTES,
  Q8_0_BYTES,
  QK5_0,
  QK8_0,
  QK_K,
  quantizeQ4_K,
  quantizeQ5_0,
  quantizeQ6_K,
  quantizeQ8_0,
} from './ggml-quants.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../tensor/dtype.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** A typed metadata value (GGUF needs the wire type; JS numbers alone do not say it). */
export type GgufValue =
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.BOOL; value: boolean }
  | {
      type:
        | GgufValueType.UINT8
        | GgufValueType.INT8
        | GgufValueType.UINT16
        | GgufValueType.INT16
        | GgufValueType.UINT32
        | GgufValueType.INT32
        | GgufValueType.FLOAT32
        | GgufValueType.FLOAT64;
      value: number;
    }
  | { type: GgufValueType.UINT64 | GgufValueType.INT64; value: bigint }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; value: (string | number | boolean | bigint)[] };

export const gguf = {
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  strs: (value: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
  i32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value }),
};

/** The ggml tensor types sqlora writes and reads (ggml.h's enum ggml_type numbers). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q5_0 = 6,
  Q8_0 = 8,
  Q4_K = 12,
  Q6_K = 14,
  BF16 = 30,
}

interface TypeTraits {
  name: string;
  /** Values per block and bytes per block. */
  block: number;
  bytes: number;
  /** x's values in this type, into `out` when given (exactly the bytes needed). */
  quantize(x: Float32Array, out?: Uint8Array): Uint8Array;
  dequantize(src: Uint8Array, out: Float32Array): Float32Array;
}

const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
/** A u16 view of an (aligned) output buffer. */
const u16Out = (b: Uint8Array | undefined): Uint16Array<ArrayBuffer> | undefined =>
  b && new Uint16Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / 2);
const u16Of = (b: Uint8Array): Uint16Array =>
  b.byteOffset % 2 === 0
    ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2)
    : new Uint16Array(b.slice().buffer);

export const GGML_TYPES: Readonly<Record<GgmlType, TypeTraits>> = {
  [GgmlType.F32]: {
    name: 'F32',
    block: 1,
    bytes: 4,
    quantize: (x) => bytesOf(x),
    dequantize: (src, out) => {
      out.set(new Float32Array(src.slice().buffer));
      return out;
    },
  },
  [GgmlType.F16]: {
    name: 'F16',
    block: 1,
    bytes: 2,
    quantize: (x, out) => bytesOf(f32ToF16(x, u16Out(out))),
    dequantize: (src, out) => f16ToF32(u16Of(src), out),
  },
  [GgmlType.BF16]: {
    name: 'BF16',
    block: 1,
    bytes: 2,
    quantize: (x, out) => bytesOf(f32ToBf16(x, u16Out(out))),
    dequantize: (src, out) => bf16ToF32(u16Of(src), out),
  },
  [GgmlType.Q8_0]: {
    name: 'Q8_0',
    block: QK8_0,
    bytes: Q8_0_BYTES,
    quantize: (x, out) => quantizeQ8_0(x, out),
    dequantize: dequantizeQ8_0,
  },
  [GgmlType.Q5_0]: {
    name: 'Q5_0',
    block: QK5_0,
    bytes: Q5_0_BYTES,
    quantize: (x, out) => quantizeQ5_0(x, out),
    dequantize: dequantizeQ5_0,
  },
  [GgmlType.Q4_K]: {
    name: 'Q4_K',
    block: QK_K,
    bytes: Q4_K_BYTES,
    quantize: (x, out) => quantizeQ4_K(x, out),
    dequantize: dequantizeQ4_K,
  },
  [GgmlType.Q6_K]: {
    name: 'Q6_K',
    block: QK_K,
    bytes: Q6_K_BYTES,
    quantize: (x, out) => quantizeQ6_K(x, out),
    dequantize: dequantizeQ6_K,
  },
};

export function isGgmlType(t: number): t is GgmlType {
  return Object.prototype.hasOwnProperty.call(GGML_TYPES, t);
}

/** Bytes of a tensor with `ne` (ne0 first) stored as `type`. */
export function ggmlTensorBytes(type: GgmlType, ne: readonly number[]): number {
  const t = GGML_TYPES[type];
  const n = ne.reduce((a, b) => a * b, 1);
  if (ne[0] % t.block !== 0)
    throw new RangeError(`${t.name} needs rows of a multiple of ${t.block} values, got ${ne[0]}`);
  return (n / t.block) * t.bytes;
}

/** llama_ftype values for general.file_type (llama.h). */
export const LLAMA_FTYPE = { f32: 0, f16: 1, q8_0: 7, q4_k_m: 15, bf16: 32 } as const;

export const alignUp = (n: number, a = GGUF_ALIGNMENT): number => Math.ceil(n / a) * a;
