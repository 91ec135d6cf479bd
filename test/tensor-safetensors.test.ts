import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsFile, readSafetensorsHeader, writeSafetensors } from '../src/tensor/safetensors.js';
import { hostTensor, toF32, type HostTensor } from '../src/tensor/tensor.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';

const FIXTURE = 'test/fixtures/checkpoints/dtypes.safetensors';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-st-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The tensors of the fixture, as bytes written out by hand (not by our dtype code). */
function fixtureTensors(): Record<string, HostTensor> {
  return {
    f32: hostTensor('F32', [2, 3], Float32Array.of(1, -2, 0.5, 3.25, 0, -0.125)),
    bf16: hostTensor('BF16', [3], Uint16Array.of(0x3f80, 0xc020, 0x4049)),
    f16: hostTensor('F16', [1, 2], Uint16Array.of(0x2e66, 0x7bff)),
    u8: hostTensor('U8', [3], Uint8Array.of(0, 7, 255)),
    i64: hostTensor('I64', [2], BigInt64Array.of(-1n, 151645n)),
  };
}

describe('safetensors reading', () => {
  it('reads the spec-built fixture: names in file order, dtypes, shapes, metadata', () => {
    const f = SafetensorsFile.open(FIXTURE);
    try {
      expect(f.names()).toEqual(['i64', 'f32', 'bf16', 'f16', 'u8']);
      expect(f.metadata()).toEqual({ format: 'pt' });
      expect(f.info('f16')).toMatchObject({ dtype: 'F16', shape: [1, 2], byteLength: 4 });
      expect(Array.from(f.readF32('f32'))).toEqual([1, -2, 0.5, 3.25, 0, -0.125]);
      expect(Array.from(f.readF32('bf16'))).toEqual([1, -2.5, 3.140625]);
      expect(Array.from(f.readF32('f16'))).toEqual([0.0999755859375, 65504]);
      expect(Array.from(f.readRaw('u8'))).toEqual([0, 7, 255]);
      expect(Array.from(new BigInt64Array(f.readRaw('i64').buffer))).toEqual([-1n, 151645n]);
      expect(() => f.readF32('u8')).toThrow(/U8, not a float type/);
      expect(() => f.info('nope')).toThrow(/tensor nope not found in .*dtypes\.safetensors/);
    } finally {
      f.close();
    }
  });

  it('converts bf16 in chunks without changing the result', () => {
    const n = 1000;
    const values = new Float32Array(n).map((_, i) => Math.sin(i) * 100);
    const path = join(tmp, 'chunks.safetensors');
    writeSafetensors(path, { w: hostTensor('BF16', [10, 100], f32ToBf16(values)) });
    const f = SafetensorsFile.open(path);
    const whole = f.readF32('w');
    expect(Array.from(f.readF32('w', 7))).toEqual(Array.from(whole));
    expect(Array.from(f.readF32('w', 1))).toEqual(Array.from(whole));
    f.close();
    // Each value is within bf16's half-ulp (2^-9 relative) of the original.
    for (let i = 0; i < n; i++)
      expect(Math.abs(whole[i] - values[i])).toBeLessThanOrEqual(Math.abs(values[i]) * 2 ** -8);
  });
});

describe('safetensors writing', () => {
  it('writes byte-for-byte what the spec (and the Python library) produces', () => {
    const path = join(tmp, 'dtypes.safetensors');
    writeSafetensors(path, fixtureTensors(), { format: 'pt' });
    expect(Buffer.compare(readFileSync(path), readFileSync(FIXTURE))).toBe(0);
  });

  it('matches the reference implementation test vectors (padding to 8 bytes with spaces)', () => {
    // From huggingface/safetensors tensor.rs tests: one F32 tensor 0..5, no metadata.
    const data = Float32Array.of(0, 1, 2, 3, 4, 5);
    const cases: Array<[string, number[], string]> = [
      ['attn.0', [1, 2, 3], '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'],
      ['attn0', [1, 1, 2, 3], '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       '],
    ];
    for (const [name, shape, header] of cases) {
      const path = join(tmp, `${name}.safetensors`);
      writeSafetensors(path, { [name]: hostTensor('F32', shape, data) });
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length));
      const expected = Buffer.concat([len, Buffer.from(header), Buffer.from(data.buffer)]);
      expect(readFileSync(path).toString('hex')).toBe(expected.toString('hex'));
    }
    const empty = join(tmp, 'empty.safetensors');
    writeSafetensors(empty, {}, { framework: 'pt' });
    expect(Array.from(readFileSync(empty))).toEqual([
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102, 114,
      97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
    ]);
  });

  it('round-trips each float dtype, including unusual names', () => {
    const values = Float32Array.of(1.5, -0.25, 1024, 0.0078125);
    const tensors: Record<string, HostTensor> = {
      'a.f32': hostTensor('F32', [2, 2], values),
      'b "quoted" é': hostTensor('BF16', [4], f32ToBf16(values)),
      ['__proto__']: hostTensor('F16', [4, 1], Uint16Array.of(0x3e00, 0xb400, 0x6400, 0x2000)),
      scalar: hostTensor('F32', [], Float32Array.of(7)),
    };
    const path = join(tmp, 'roundtrip.safetensors');
    writeSafetensors(path, tensors);
    const f = SafetensorsFile.open(path);
    expect(f.names().sort()).toEqual(Object.keys(tensors).sort());
    for (const name of f.names()) {
      const t = f.read(name);
      expect(t.shape).toEqual(tensors[name].shape);
      expect(Array.from(toF32(t))).toEqual(Array.from(toF32(tensors[name])));
    }
    expect(Array.from(f.readF32('__proto__'))).toEqual([1.5, -0.25, 1024, 0.0078125]);
    f.close();
  });

  it('refuses data that does not match the shape', () => {
    expect(() =>
      writeSafetensors(join(tmp, 'bad.safetensors'), { x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
    ).toThrow(/needs 12 bytes, data has 8/);
  });
});

describe('safetensors validation', () => {
  const good = readFileSync(FIXTURE);
  const write = (name: string, bytes: Uint8Array): string => {
    const p = join(tmp, name);
    writeFileSync(p, bytes);
    return p;
  };

  it('reports a truncated file', () => {
    const p = write('trunc.safetensors', good.subarray(0, good.length - 1));
    expect(() => readSafetensorsHeader(p)).toThrow(
      /trunc\.safetensors is not a valid safetensors file: data section is 52 bytes but the tensors cover 53/,
    );
  });

  it('reports a header length beyond the file', () => {
    const bytes = Buffer.from(good);
    bytes.writeBigUInt64LE(10_000n, 0);
    expect(() => readSafetensorsHeader(write('len.safetensors', bytes))).toThrow(
      /header length 10000 exceeds the file/,
    );
  });

  it('reports overlapping offsets and a wrong byte count', () => {
    const make = (header: string, dataBytes: number): Uint8Array => {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length));
      return Buffer.concat([len, Buffer.from(header), Buffer.alloc(dataBytes)]);
    };
    const overlap =
      '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}';
    expect(() => readSafetensorsHeader(write('ov.safetensors', make(overlap, 6)))).toThrow(
      /tensor b starts at 2, expected 4/,
    );
    const count = '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,4]}}';
    expect(() => readSafetensorsHeader(write('cnt.safetensors', make(count, 4)))).toThrow(
      /needs 16 bytes but data_offsets span 4/,
    );
    const dtype = '{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}';
    expect(() => readSafetensorsHeader(write('dt.safetensors', make(dtype, 4)))).toThrow(/unsupported dtype "F8_E4M3"/);
    expect(() => readSafetensorsHeader(write('json.safetensors', make('{"a":', 0)))).toThrow(
      /header is not UTF-8 JSON/,
    );
  });

  it('reports a missing file with its path', () => {
    expect(() => SafetensorsFile.open(join(tmp, 'absent.safetensors'))).toThrow(
      /cannot open safetensors file .*absent\.safetensors/,
    );
  });
});
