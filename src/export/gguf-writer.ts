/**
 * A streaming GGUF writer: the header (metadata and every tensor's name, shape, type and
 * offset) is known before any data, so it is written first and the tensors follow one at a
 * time, in the declared order; nothing but the tensor being written is in memory. The file
 * is written beside its final name and renamed into place by finish(), so an interrupted
 * export never leaves a complete-looking .gguf.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import {
  alignUp,
  GGML_TYPES,
  ggmlTensorBytes,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  GgmlType,
  type GgufValue,
} from './gguf-format.js';

export interface GgufTensorInfo {
  name: string;
  /** Dimensions with ne0 (the contiguous one) first: a torch [out, in] weight is [in, out]. */
  ne: number[];
  type: GgmlType;
}

/** Encodes header bytes into growing chunks. */
class ByteSink {
  private chunks: Uint8Array[] = [];
  length = 0;
  private readonly scratch = new DataView(new ArrayBuffer(8));

  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  private fixed(n: number, set: (dv: DataView) => void): void {
    set(this.scratch);
    this.bytes(new Uint8Array(this.scratch.buffer.slice(0, n)));
  }
  u8 = (v: number): void => this.fixed(1, (d) => d.setUint8(0, v));
  i8 = (v: number): void => this.fixed(1, (d) => d.setInt8(0, v));
  u16 = (v: number): void => this.fixed(2, (d) => d.setUint16(0, v, true));
  i16 = (v: number): void => this.fixed(2, (d) => d.setInt16(0, v, true));
  u32 = (v: number): void => this.fixed(4, (d) => d.setUint32(0, v, true));
  i32 = (v: number): void => this.fixed(4, (d) => d.setInt32(0, v, true));
  f32 = (v: number): void => this.fixed(4, (d) => d.setFloat32(0, v, true));
  f64 = (v: number): void => this.fixed(8, (d) => d.setFloat64(0, v, true));
  u64 = (v: number | bigint): void => this.fixed(8, (d) => d.setBigUint64(0, BigInt(v), true));
  i64 = (v: bigint): void => this.fixed(8, (d) => d.setBigInt64(0, v, true));
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }
  concat(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

function scalar(sink: ByteSink, type: GgufValueType, v: string | number | boolean | bigint): void {
  switch (type) {
    case GgufValueType.UINT8:
      return sink.u8(v as number);
    case GgufValueType.INT8:
      return sink.i8(v as number);
    case GgufValueType.UINT16:
      return sink.u16(v as number);
    case GgufValueType.INT16:
      return sink.i16(v as number);
    case GgufValueType.UINT32:
      return sink.u32(v as number);
    case GgufValueType.INT32:
      return sink.i32(v as number);
    case GgufValueType.FLOAT32:
      return sink.f32(v as number);
    case GgufValueType.FLOAT64:
      return sink.f64(v as number);
    case GgufValueType.BOOL:
      return sink.u8(v ? 1 : 0);
    case GgufValueType.STRING:
      return sink.str(v as string);
    case GgufValueType.UINT64:
      return sink.u64(v as bigint);
    case GgufValueType.INT64:
      return sink.i64(v as bigint);
    default:
      throw new Error(`GGUF value type ${type} cannot be an array element here`);
  }
}

/** The header bytes (up to the start of the data, padded) and each tensor's data offset. */
export function ggufHeader(
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensorInfo[],
): { header: Uint8Array; offsets: number[]; sizes: number[] } {
  const sink = new ByteSink();
  sink.u32(GGUF_MAGIC);
  sink.u32(GGUF_VERSION);
  sink.u64(tensors.length);
  sink.u64(metadata.size);
  for (const [key, v] of metadata) {
    sink.str(key);
    sink.u32(v.type);
    if (v.type === GgufValueType.ARRAY) {
      sink.u32(v.itemType);
      sink.u64(v.value.length);
      for (const item of v.value) scalar(sink, v.itemType, item);
    } else scalar(sink, v.type, v.value);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`GGUF: tensor ${t.name} declared twice`);
    names.add(t.name);
    sink.str(t.name);
    sink.u32(t.ne.length);
    for (const d of t.ne) sink.u64(d);
    sink.u32(t.type);
    sink.u64(offset);
    const size = ggmlTensorBytes(t.type, t.ne);
    offsets.push(offset);
    sizes.push(size);
    offset = alignUp(offset + size);
  }
  const body = sink.concat();
  const header = new Uint8Array(alignUp(body.length));
  header.set(body);
  return { header, offsets, sizes };
}

export class GgufWriter {
  private fd: number | undefined;
  private readonly tmp: string;
  private next = 0;
  private readonly sizes: number[];
  private readonly dataStart: number;
  private scratch = new Uint8Array(0);
  /** Bytes written so far (header included). */
  written = 0;

  constructor(
    readonly path: string,
    metadata: ReadonlyMap<string, GgufValue>,
    readonly tensors: readonly GgufTensorInfo[],
  ) {
    const { header, sizes } = ggufHeader(metadata, tensors);
    this.sizes = sizes;
    this.dataStart = header.length;
    this.tmp = `${path}.partial-${process.pid}`;
    this.fd = openSync(this.tmp, 'w');
    this.write(header);
  }

  /** Total bytes of the finished file (every tensor padded to the alignment, the last one too, as llama.cpp reads it). */
  get totalBytes(): number {
    return this.sizes.reduce((end, s) => end + alignUp(s), this.dataStart);
  }

  /** Writes the next declared tensor from f32 values, converting to its declared type. */
  writeF32(name: string, values: Float32Array): void {
    const info = this.expect(name);
    const size = this.sizes[this.next];
    // One scratch buffer for every tensor (fresh ones cost page faults); F32 needs none.
    if (info.type !== GgmlType.F32 && this.scratch.length < size) this.scratch = new Uint8Array(size);
    const out = info.type === GgmlType.F32 ? undefined : this.scratch.subarray(0, size);
    this.writeRaw(name, GGML_TYPES[info.type].quantize(values, out));
  }

  /** Writes the next declared tensor's bytes (already in its declared type). */
  writeRaw(name: string, bytes: Uint8Array): void {
    const i = this.next;
    this.expect(name);
    if (bytes.byteLength !== this.sizes[i])
      throw new Error(`GGUF: tensor ${name} needs ${this.sizes[i]} bytes, got ${bytes.byteLength}`);
    this.write(bytes);
    const pad = alignUp(bytes.byteLength) - bytes.byteLength;
    if (pad > 0) this.write(new Uint8Array(pad));
    this.next++;
  }

  finish(): void {
    if (this.next !== this.tensors.length)
      throw new Error(`GGUF: ${this.tensors.length - this.next} declared tensors were not written`);
    closeSync(this.fd as number);
    this.fd = undefined;
    renameSync(this.tmp, this.path);
  }

  /** Removes the partial file (after an error). */
  abort(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    rmSync(this.tmp, { force: true });
  }

  private expect(name: string): GgufTensorInfo {
    const info = this.tensors[this.next];
    if (!info || info.name !== name)
      throw new Error(`GGUF: expected tensor ${info?.name ?? '(none left)'} next, got ${name}`);
    return info;
  }

  private write(bytes: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`GGUF writer for ${this.path} is closed`);
    for (let done = 0; done < bytes.length;)
      done += writeSync(this.fd, bytes, done, Math.min(bytes.length - done, 1 << 28));
    this.written += bytes.length;
  }
}
