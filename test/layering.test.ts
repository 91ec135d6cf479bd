/**
 * The layering of DESIGN.md: each folder under src/ imports only from itself and the folders
 * before it in LAYERS (the lower layers, util at the bottom, cli at the top). Two places differ from DESIGN's numbering because today's code
 * depends that way: quant sits below model (model/qwen2-weights builds NF4 weights with
 * quant/nf4), and eval below data (prepare reports Spider hardness and reads schemas through
 * eval). sql, shared by evaluation, the sandbox and constrained decoding, sits below all of
 * them; api (the typed library calls src/index.ts exports: load, generate, train) sits above every
 * layer it composes; report, publish (the Hub folder and card, built from reports and exports), demo and doctor are
 * library code that only the CLI calls.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const LAYERS = [
  'util',
  'tensor',
  'sql',
  'backend',
  'quant',
  'model',
  'lora',
  'train',
  'eval',
  'data',
  'hub',
  'export',
  'serve',
  'api',
  'report',
  'publish',
  'demo',
  'doctor',
  'cli',
] as const;

const SRC = resolve(import.meta.dirname, '../src');

/** Relative import specifiers of a module's source: static, re-exports, side-effect and dynamic imports. */
function importsOf(source: string): string[] {
  const re =
    /(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;
  return [...source.matchAll(re)].map((m) => m[1] ?? m[2] ?? m[3]).filter((s) => s.startsWith('.'));
}

/** The layer of a path under src/: its first folder; a file directly in src/ (the package entry) is the top. */
function layerOf(path: string): string {
  const parts = relative(SRC, path).split(sep);
  return parts.length === 1 ? 'cli' : parts[0];
}

function rank(layer: string): number {
  return (LAYERS as readonly string[]).indexOf(layer);
}

/** "file -> target (a imports b, a higher layer)" for each import against the layering. */
function violations(file: string, source: string): string[] {
  const from = layerOf(file);
  return importsOf(source).flatMap((spec) => {
    const to = layerOf(resolve(dirname(file), spec));
    return rank(to) > rank(from) ? [`${relative(SRC, file)} -> ${spec} (${from} imports ${to}, a higher layer)`] : [];
  });
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : /\.[cm]?ts$/.test(name) ? [p] : [];
  });
}

describe('layering', () => {
  it('places every folder under src/ in LAYERS', () => {
    const folders = readdirSync(SRC).filter((n) => statSync(join(SRC, n)).isDirectory());
    expect(folders.filter((f) => rank(f) < 0)).toEqual([]);
  });

  it('has no import from a lower layer to a higher one', () => {
    const found = sourceFiles(SRC).flatMap((f) => violations(f, readFileSync(f, 'utf8')));
    expect(found).toEqual([]);
  });

  it('finds static, type-only, re-exported and dynamic imports of higher layers', () => {
    const file = join(SRC, 'model', 'x.ts');
    const source = [
      "import { a } from '../util/errors.js';",
      "import type { B } from '../train/sft.js';",
      "export { c } from '../cli/main.js';",
      "const d = await import('../data/spider.js');",
      "import { e } from './qwen2.js';",
      "import { f } from 'node:fs';",
    ].join('\n');
    expect(violations(file, source)).toEqual([
      'model/x.ts -> ../train/sft.js (model imports train, a higher layer)',
      'model/x.ts -> ../cli/main.js (model imports cli, a higher layer)',
      'model/x.ts -> ../data/spider.js (model imports data, a higher layer)',
    ]);
  });
});
