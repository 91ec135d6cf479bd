/**
 * Reads the HF reference fixtures written by tools/reference/tiny_model.py and committed to
 * test/fixtures/tiny/ (see that script for the layout). Tests that need them skip, saying why,
 * until the fixtures exist.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/tensor/safetensors.js';

export const TINY_DIR = join(import.meta.dirname, '..', 'fixtures', 'tiny');
export const VARIANTS = ['gqa', 'tied'] as const;
export type Variant = (typeof VARIANTS)[number];

export const haveTinyFixtures = existsSync(join(TINY_DIR, 'manifest.json'));
export const MISSING_FIXTURES = 'test/fixtures/tiny/ is missing: run tools/reference/tiny_model.py (see its docstring)';

export interface Reference {
  floats(name: string): Float32Array;
  ints(name: string): Int32Array;
  shape(name: string): number[];
  names(): string[];
}

export function modelDir(v: Variant): string {
  return join(TINY_DIR, v, 'model');
}

export function adapterDir(v: Variant): string {
  return join(TINY_DIR, v, 'adapter');
}

export function readReference(v: Variant): Reference {
  const file = SafetensorsFile.open(join(TINY_DIR, v, 'reference.safetensors'));
  const cache = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
  for (const name of file.names()) {
    const t = file.read(name);
    const bytes = t.data as Uint8Array;
    const data =
      t.dtype === 'I32' ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) : file.readF32(name);
    cache.set(name, { shape: t.shape, data });
  }
  file.close();
  const get = (name: string): { shape: number[]; data: Float32Array | Int32Array } => {
    const t = cache.get(name);
    if (!t) throw new Error(`reference has no tensor ${name}`);
    return t;
  };
  return {
    floats: (name) => get(name).data as Float32Array,
    ints: (name) => get(name).data as Int32Array,
    shape: (name) => get(name).shape,
    names: () => [...cache.keys()],
  };
}

/** max |a - b| over the entries where `keep` is true (all when omitted). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, keep?: (i: number) => boolean): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) if (!keep || keep(i)) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** max |a - b| / max |b|: the error relative to the tensor's scale. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  return maxAbsDiff(a, b) / scale;
}

/** sqrt(sum (a - b)^2 / sum b^2) over the entries where `keep` is true. */
export function relativeRms(a: ArrayLike<number>, b: ArrayLike<number>, keep: (i: number) => boolean): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!keep(i)) continue;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}
