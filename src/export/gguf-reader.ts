/**
 * Reads a GGUF v3 file: metadata into plain values, tensor infos, and any tensor's values
 * as f32 (dequantizing the block formats of ggml-quants.ts). Tensors are read on demand
 * with positioned reads, so a multi-gigabyte file is never held in memory.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { UserError, describeError } from '../util/errors.js';
import {
  alignUp,
  GGML_TYPES,
  ggmlTensorBytes,
  GGUF_ALIGNMENT,
  GGUF_MAGIC,
  GgufValueType,
  isGgmlType,
  type GgmlType,
} from './gguf-format.js';

export type GgufPlain = string | number | boolean | bigint | GgufPlain[];

export interface GgufTensorEntry {
  name: string;
  ne: number[];
  type: GgmlType;
  /** Absolute file offset. */
  fileOffset: number;
  byteLength: number;
}

export class GgufFile {
  private fd: number | undefined;

  /** Use GgufFile.open. */
  constructor(
    readonly path: string,
    fd: number,
    readonly version: number,
    readonly metadata: Map<string, { type: GgufValueType; value: GgufPlain }>,
    readonly tensors: Map<string, GgufTensorEntry>,
  ) {
    this.fd = fd;
  }

  static open(path: string): GgufFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new UserError(`cannot open GGUF file ${path}: ${describeError(err)}`);
    }
    try {
      return parse(path, fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** A metadata value (undefined when absent). */
  get(key: string): GgufPlain | undefined {
    return this.metadata.get(key)?.value;
  }

  /** The tensor's values as f32, row-major with ne0 fastest (a torch [out, in] weight's layout). */
  readF32(name: string): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new UserError(`${this.path} has no tensor ${name}`);
    const raw = this.readBytes(t.fileOffset, t.byteLength);
    const n = t.ne.reduce((a, b) => a * b, 1);
    return GGML_TYPES[t.type].dequantize(raw, new Float32Array(n));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private readBytes(position: number, length: number): Uint8Array {
    if (this.fd === undefined) throw new Error(`GGUF file ${this.path} is closed`);
    const out = new Uint8Array(length);
    for (let done = 0; done < length;) {
      const n = readSync(this.fd, out, done, Math.min(length - done, 1 << 28), position + done);
      if (n === 0) throw new UserError(`${this.path} is truncated at offset ${position + done}`);
      done += n;
    }
    return out;
  }
}

/** A cursor over the header, reading more of the file as it goes. */
class Cursor {
  private buf = new Uint8Array(0);
  private start = 0;
  pos = 0;
  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly path: string,
  ) {}

  private need(n: number): DataView {
    if (this.pos + n > this.size)
      throw new UserError(`${this.path} is not a valid GGUF file: header runs past the end`);
    if (this.pos < this.start || this.pos + n > this.start + this.buf.length) {
      this.start = this.pos;
      this.buf = new Uint8Array(Math.min(this.size - this.pos, Math.max(n, 1 << 20)));
      readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
    }
    const dv = new DataView(this.buf.buffer, this.pos - this.start, n);
    this.pos += n;
    return dv;
  }
  u8 = (): number => this.need(1).getUint8(0);
  u32 = (): number => this.need(4).getUint32(0, true);
  u64(): number {
    const v = this.need(8).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new UserError(`${this.path}: a 64-bit count or size is out of range`);
    return Number(v);
  }
  str(): string {
    const n = this.u64();
    const dv = this.need(n);
    return Buffer.from(dv.buffer, dv.byteOffset, n).toString('utf8');
  }
  value(type: GgufValueType): GgufPlain {
    switch (type) {
      case GgufValueType.UINT8:
        return this.u8();
      case GgufValueType.INT8:
        return this.need(1).getInt8(0);
      case GgufValueType.UINT16:
        return this.need(2).getUint16(0, true);
      case GgufValueType.INT16:
        return this.need(2).getInt16(0, true);
      case GgufValueType.UINT32:
        return this.u32();
      case GgufValueType.INT32:
        return this.need(4).getInt32(0, true);
      case GgufValueType.FLOAT32:
        return this.need(4).getFloat32(0, true);
      case GgufValueType.FLOAT64:
        return this.need(8).getFloat64(0, true);
      case GgufValueType.BOOL:
        return this.u8() !== 0;
      case GgufValueType.STRING:
        return this.str();
      case GgufValueType.UINT64:
        return this.need(8).getBigUint64(0, true);
      case GgufValueType.INT64:
        return this.need(8).getBigInt64(0, true);
      case GgufValueType.ARRAY: {
        const itemType = this.u32();
        const n = this.u64();
        const out: GgufPlain[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(itemType);
        return out;
      }
      default:
        throw new UserError(`${this.path} is not a valid GGUF file: unknown value type ${type}`);
    }
  }
}

function parse(path: string, fd: number): GgufFile {
  const size = fstatSync(fd).size;
  const c = new Cursor(fd, size, path);
  if (size < 24 || c.u32() !== GGUF_MAGIC) throw new UserError(`${path} is not a GGUF file (no GGUF magic)`);
  const version = c.u32();
  if (version !== 3) throw new UserError(`${path} is GGUF version ${version}; only version 3 is read`);
  const nTensors = c.u64();
  const nKv = c.u64();
  const metadata = new Map<string, { type: GgufValueType; value: GgufPlain }>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str();
    const type = c.u32() as GgufValueType;
    metadata.set(key, { type, value: c.value(type) });
  }
  const align = metadata.get('general.alignment')?.value ?? GGUF_ALIGNMENT;
  if (typeof align !== 'number' || align <= 0) throw new UserError(`${path}: general.alignment is invalid`);
  const infos: Array<Omit<GgufTensorEntry, 'fileOffset'> & { offset: number }> = [];
  for (let i = 0; i < nTensors; i++) {
    const name = c.str();
    const nDims = c.u32();
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(c.u64());
    const type = c.u32();
    const offset = c.u64();
    if (!isGgmlType(type))
      throw new UserError(`${path}: tensor ${name} has ggml type ${type}, which sqlora does not read`);
    infos.push({ name, ne, type, offset, byteLength: ggmlTensorBytes(type, ne) });
  }
  const dataStart = alignUp(c.pos, align);
  const tensors = new Map<string, GgufTensorEntry>();
  for (const t of infos) {
    const fileOffset = dataStart + t.offset;
    if (fileOffset + t.byteLength > size)
      throw new UserError(`${path} is truncated: tensor ${t.name} runs past the end`);
    tensors.set(t.name, { name: t.name, ne: t.ne, type: t.type, byteLength: t.byteLength, fileOffset });
  }
  return new GgufFile(path, fd, version, metadata, tensors);
}
