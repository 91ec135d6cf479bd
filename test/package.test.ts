/**
 * The package as a user gets it: `npm pack` of the built package, the tarball installed into a
 * fresh project (its dependencies linked from this checkout's node_modules, so no network is
 * needed), and the README's library example type-checked and run there against `import 'sqlora'`.
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-pack-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('npm pack -> install -> import', () => {
  it('exports a typed API that the README example uses', async () => {
    // Stage what "files" ships, build dist there (never in the checkout: bin/ would run it), pack.
    const stage = join(tmp, 'stage');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[]; version: string };
    for (const f of [...pkg.files.filter((f) => f !== 'dist'), 'package.json'])
      cpSync(join(ROOT, f), join(stage, f), { recursive: true });
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    await run(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')]);
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], {
      cwd: stage,
    });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    expect(packed.filename).toBe(`sqlora-${pkg.version}.tgz`);
    const shipped = packed.files.map((f) => f.path);
    expect(shipped).toEqual(
      expect.arrayContaining(['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'bin/sqlora.js']),
    );
    expect(shipped.some((p) => p.startsWith('src/'))).toBe(false);

    // A fresh project: the tarball unpacked as node_modules/sqlora, the dependencies linked.
    const proj = join(tmp, 'proj');
    const modules = join(proj, 'node_modules');
    mkdirSync(join(modules, 'sqlora'), { recursive: true });
    await run('tar', ['-xzf', join(tmp, packed.filename), '-C', join(modules, 'sqlora'), '--strip-components=1']);
    const deps = realpathSync(join(ROOT, 'node_modules'));
    for (const name of readdirSync(deps))
      if (name !== 'sqlora' && name !== '.bin') symlinkSync(join(deps, name), join(modules, name));
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }));
    writeFileSync(
      join(proj, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          types: ['node'],
          skipLibCheck: false,
        },
      }),
    );
    cpSync(join(ROOT, 'test/fixtures/package/example.ts'), join(proj, 'example.ts'));

    await run(process.execPath, [tsc, '-p', proj]); // the declarations type-check the example
    const r = await run(process.execPath, ['--import', 'tsx', 'example.ts'], { cwd: proj });
    expect(JSON.parse(r.stdout)).toEqual({ eval: 3, replies: 3, scored: 3, singers: 6 });
  }, 180_000);
});
