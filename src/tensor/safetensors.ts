/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__"?: {string: string}}`, then the tensor bytes, offsets relative to 8 + N.
 *
 * Reading goes through a file descriptor with positioned reads, one tensor at a time, so a
 * multi-gigabyte checkpoint is never held twice in memory. Writing lays the file out exactly
 * as the reference library does (tensors sorted by descending dtype alignment, then by name;
 * compact JSON; header padded with spaces to a multiple of 8), so our files are byte-identical
 * to Python's `safetensors.torch.save_file` for the same tensors and metadata.
 */
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { UserError, describeError } from '../util/errors.js';
import { bf16ToF32, f16ToF32, isDType, type DType } from './dtype.js';
import { byteLengthOf, formatShape, numel, tensorBytes, type HostTensor } from './tensor.js';

/** The reference library refuses headers above 100 MB; so do we (a corrupt length field). */
const MAX_HEADER_BYTES = 100_000_000;
/** Node's single read() limit is 2 GiB; reads and conversions go in chunks well below it. */
const CHUNK_BYTES = 16 << 20;

export interface SafetensorsTensorInfo {
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Absolute offset of the first byte in the file. */
  fileOffset: number;
}

export interface SafetensorsHeader {
  path: string;
  /** Tensors in file order (ascending offset). */
  tensors: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string>;
  /** Bytes before the data section (8 + N). */
  dataStart: number;
}

/** Reads and validates the header of a safetensors file without touching the tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path);
  try {
    return readHeaderFd(fd, path);
  } finally {
    closeSync(fd);
  }
}

function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw new UserError(`cannot open safetensors file ${path}: ${describeError(err)}`);
  }
}

function readExactly(fd: number, into: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(into.length - done, CHUNK_BYTES * 8), position + done);
    if (n === 0)
      throw new UserError(
        `${path} is truncated: expected ${into.length - done} more bytes at offset ${position + done}`,
      );
    done += n;
  }
}

function readHeaderFd(fd: number, path: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  const bad = (why: string): UserError => new UserError(`${path} is not a valid safetensors file: ${why}`);
  if (fileSize < 8) throw bad(`only ${fileSize} bytes`);
  const lenBytes = new Uint8Array(8);
  readExactly(fd, lenBytes, 0, path);
  const n = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES || 8 + n > fileSize) throw bad(`header length ${n} exceeds the file (${fileSize} bytes)`);
  const headerBytes = new Uint8Array(n);
  readExactly(fd, headerBytes, 8, path);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw bad(`header is not UTF-8 JSON (${describeError(err)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('header is not a JSON object');
  const dataStart = 8 + n;
  const metadata: Record<string, string> = {};
  const entries: Array<[string, SafetensorsTensorInfo, number, number]> = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null) throw bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw bad(`__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = (value ?? {}) as Record<string, unknown>;
    if (!isDType(dtype)) throw bad(`tensor ${name} has unsupported dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad(`tensor ${name} has an invalid shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor ${name} has invalid data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    const byteLength = byteLengthOf(dtype, shape);
    if (end - begin !== byteLength) {
      throw bad(
        `tensor ${name} (${dtype} ${formatShape(shape)}) needs ${byteLength} bytes but data_offsets span ${end - begin}`,
      );
    }
    entries.push([name, { dtype, shape, byteLength, fileOffset: dataStart + begin }, begin, end]);
  }
  // The format requires the tensors to tile the data section exactly, in some order.
  entries.sort((a, b) => a[2] - b[2] || a[3] - b[3]);
  let expected = 0;
  for (const [name, , begin, end] of entries) {
    if (begin !== expected) throw bad(`tensor ${name} starts at ${begin}, expected ${expected} (overlap or gap)`);
    expected = end;
  }
  if (dataStart + expected !== fileSize) {
    throw bad(`data section is ${fileSize - dataStart} bytes but the tensors cover ${expected} (truncated download?)`);
  }
  return { path, tensors: new Map(entries.map(([name, info]) => [name, info])), metadata, dataStart };
}

/** An open safetensors file; tensors are read on demand. Call close() when done. */
export class SafetensorsFile {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    private readonly header: SafetensorsHeader,
    fd: number,
  ) {
    this.fd = fd;
  }

  static open(path: string): SafetensorsFile {
    const fd = openForRead(path);
    try {
      return new SafetensorsFile(path, readHeaderFd(fd, path), fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  metadata(): Record<string, string> {
    return { ...this.header.metadata };
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.header.tensors.get(name);
    if (!info) throw new UserError(`tensor ${name} not found in ${this.path}`);
    return info;
  }

  /**
   * The tensor's bytes, in a fresh (hence aligned) buffer, or at the start of `into` (at least
   * as long; the view is returned) so a caller streaming many tensors reuses one buffer.
   */
  readRaw(name: string, into?: Uint8Array): Uint8Array {
    const info = this.info(name);
    if (into && into.length < info.byteLength)
      throw new RangeError(`readRaw: ${name} has ${info.byteLength} bytes, the buffer holds ${into.length}`);
    const out = into ? into.subarray(0, info.byteLength) : new Uint8Array(info.byteLength);
    readExactly(this.openFd(), out, info.fileOffset, this.path);
    return out;
  }

  /** The tensor as a HostTensor with its stored dtype. */
  read(name: string): HostTensor {
    const info = this.info(name);
    return { dtype: info.dtype, shape: [...info.shape], data: this.readRaw(name) };
  }

  /**
   * The tensor's values as f32, converting BF16/F16 chunk by chunk so only the f32 result
   * (plus a scratch buffer of `chunkElements` 16-bit values, 16 MB by default) is allocated.
   * With `into` (at least as long as the tensor) the values go to its start and that view is
   * returned: a loader reusing one buffer skips the page faults of a fresh one per tensor, which
   * cost more than reading and converting.
   */
  readF32(name: string, chunkElements = CHUNK_BYTES / 2, into?: Float32Array): Float32Array {
    const info = this.info(name);
    const count = numel(info.shape);
    if (into && into.length < count)
      throw new RangeError(`readF32: ${name} has ${count} values, the buffer holds ${into.length}`);
    const out = into ? into.subarray(0, count) : new Float32Array(count);
    if (info.dtype === 'F32') {
      readExactly(
        this.openFd(),
        new Uint8Array(out.buffer, out.byteOffset, out.byteLength),
        info.fileOffset,
        this.path,
      );
      return out;
    }
    if (info.dtype !== 'BF16' && info.dtype !== 'F16') {
      throw new UserError(`tensor ${name} in ${this.path} is ${info.dtype}, not a float type`);
    }
    const convert = info.dtype === 'BF16' ? bf16ToF32 : f16ToF32;
    const perChunk = Math.max(1, Math.min(count, chunkElements));
    const scratch = new Uint16Array(perChunk);
    const scratchBytes = new Uint8Array(scratch.buffer);
    for (let start = 0; start < count; start += perChunk) {
      const len = Math.min(perChunk, count - start);
      readExactly(this.openFd(), scratchBytes.subarray(0, len * 2), info.fileOffset + start * 2, this.path);
      convert(scratch.subarray(0, len), out.subarray(start, start + len));
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Every tensor of the file at `path`, by name (the file is closed again). */
  static readAll(path: string): Record<string, HostTensor> {
    const file = SafetensorsFile.open(path);
    try {
      return Object.fromEntries(file.names().map((n) => [n, file.read(n)]));
    } finally {
      file.close();
    }
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error(`safetensors file ${this.path} is closed`);
    return this.fd;
  }
}

/** The reference library's dtype order (ascending alignment); files list larger ones first. */
const DTYPE_RANK: Record<DType, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 3,
  U16: 4,
  F16: 5,
  BF16: 6,
  I32: 7,
  U32: 8,
  F32: 9,
  F64: 10,
  I64: 11,
  U64: 12,
};

function compareNames(a: string, b: string): number {
  // Rust compares strings bytewise; for UTF-8 that is code point order, which differs from
  // JS's UTF-16 order only for astral characters — compare Buffers to be exact.
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A tensor as the header sees it: data may be absent when the bytes are streamed later. */
export type SafetensorsEntry = Pick<HostTensor, 'dtype' | 'shape'> & { data?: ArrayBufferView };

/**
 * Serializes the header the way the reference library does; returns it and the tensor order
 * (the order the data must follow).
 */
export function safetensorsLayout(
  tensors: Record<string, SafetensorsEntry>,
  metadata?: Record<string, string>,
): { header: Uint8Array; order: string[] } {
  const order = Object.keys(tensors).sort(
    (a, b) => DTYPE_RANK[tensors[b].dtype] - DTYPE_RANK[tensors[a].dtype] || compareNames(a, b),
  );
  // Built as text so key order is ours and a tensor named "__proto__" stays an ordinary key.
  // JSON.stringify escapes exactly what serde_json does and, like it, emits no whitespace.
  const parts: string[] = [];
  if (metadata) {
    // Key order inside __metadata__ is unspecified upstream (a hash map); sorted keeps ours stable.
    const keys = Object.keys(metadata).sort(compareNames);
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  let offset = 0;
  for (const name of order) {
    if (name === '__metadata__') throw new Error('"__metadata__" is reserved and cannot name a tensor');
    const t = tensors[name];
    const want = byteLengthOf(t.dtype, t.shape);
    if (t.data && t.data.byteLength !== want) {
      throw new RangeError(
        `tensor ${name}: ${t.dtype} ${formatShape(t.shape)} needs ${want} bytes, data has ${t.data.byteLength}`,
      );
    }
    const info = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + want] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += want;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  return { header: padded, order };
}

/**
 * Writes tensors to a safetensors file, atomically (a temporary file renamed into place), so
 * an interrupted save never leaves a half-written checkpoint under the final name.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): void {
  const { header, order } = safetensorsLayout(tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    try {
      const len = new Uint8Array(8);
      new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
      writeAll(fd, len);
      writeAll(fd, header);
      for (const name of order) writeAll(fd, tensorBytes(tensors[name]));
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Writes all of `bytes` at the descriptor's position. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, CHUNK_BYTES * 8));
  }
}
