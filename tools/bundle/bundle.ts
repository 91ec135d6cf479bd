/**
 * npm run bundle -- --out DIR [--compress] [--no-check]
 *
 * Builds a folder that runs sqlora on a linux-x64 machine with no Node.js and no network (a GPU
 * host): this Node binary, the compiled CLI and benchmark, and the runtime npm packages pruned to
 * linux-x64 (see deps.ts). Copy the folder anywhere and run `DIR/sqlora ...` or `DIR/bench ...`.
 * --compress stores Node xz-compressed (about 22 MB instead of 86 MB); it is unpacked once on
 * first use. Afterwards the bundle checks itself: every dependency loads with the bundled node,
 * and `sqlora --help` runs with a PATH that has no node.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PACKAGE_RULES, packageFiles, runtimePackages } from './deps.js';
import { nodeLauncher, scriptLauncher, writeNodeRuntime } from './runtime.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Compiled into app/ with their relative layout (bench imports ../src/...). */
const SOURCE_DIRS = ['src', 'bench'];
/** Non-TypeScript files the compiled code reads next to itself. */
// Files the compiled code reads at run time: the HF side of the benchmark, and the Spider subset `sqlora demo` runs on.
const EXTRA_FILES = ['tools/reference/bench_hf.py', 'test/fixtures/spider'];

function fail(msg: string): never {
  process.stderr.write(`bundle: ${msg}\n`);
  process.exit(1);
}

function log(msg: string): void {
  process.stderr.write(`bundle: ${msg}\n`);
}

/** Compiles src/ and bench/ with the project's tsconfig into `outDir` (JavaScript only). */
function compile(outDir: string): void {
  const work = mkdtempSync(join(tmpdir(), 'sqlora-tsc-'));
  try {
    const include = SOURCE_DIRS.filter((d) => existsSync(join(ROOT, d))).map((d) => join(ROOT, d));
    const config = {
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: {
        rootDir: ROOT,
        outDir: join(work, 'out'),
        declaration: false,
        sourceMap: false,
        incremental: false,
        typeRoots: [join(ROOT, 'node_modules', '@types')],
      },
      include,
    };
    writeFileSync(join(work, 'tsconfig.json'), JSON.stringify(config));
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(work, 'tsconfig.json')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
    if (r.status !== 0)
      fail(`TypeScript errors (fix them first; the bundle holds what tsc compiles):\n${r.stdout}${r.stderr}`);
    cpSync(join(work, 'out'), outDir, {
      recursive: true,
      filter: (src) => statSync(src).isDirectory() || src.endsWith('.js'),
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function copyDependencies(appDir: string): { count: number; bytes: number } {
  let bytes = 0;
  const packages = runtimePackages(ROOT);
  for (const p of packages) {
    for (const file of packageFiles(p)) {
      const dst = join(appDir, p.relDir, file);
      mkdirSync(dirname(dst), { recursive: true });
      cpSync(join(p.dir, file), dst, { dereference: true });
      bytes += statSync(dst).size;
    }
  }
  log(`${packages.length} runtime packages: ${packages.map((p) => `${p.name}@${p.version}`).join(', ')}`);
  return { count: packages.length, bytes };
}

function writePackageJson(appDir: string): void {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  // type: module makes the compiled .js files ES modules; main.ts reads the version from here.
  const out = {
    name: pkg.name,
    version: pkg.version,
    description: pkg.description,
    license: pkg.license,
    type: 'module',
    private: true,
    dependencies: pkg.dependencies,
  };
  writeFileSync(join(appDir, 'package.json'), JSON.stringify(out, null, 2) + '\n');
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return n;
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

/**
 * Loads every dependency the way sqlora does, with the bundled node and from inside app/ (so
 * packages resolve from the pruned node_modules): a pruning rule that removed a needed file
 * fails here rather than on the GPU machine.
 */
function selfCheck(outDir: string): void {
  const appDir = join(outDir, 'app');
  const probe = join(appDir, '.bundle-check.mjs');
  const deps = Object.keys(
    (JSON.parse(readFileSync(join(appDir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> })
      .dependencies,
  );
  const lines = [
    "import { createRequire } from 'node:module';",
    'const require = createRequire(import.meta.url);',
    ...deps.map((d) => {
      const data = PACKAGE_RULES[d]?.dataOnly;
      return data ? `require.resolve(${JSON.stringify(`${d}/${data}`)});` : `await import(${JSON.stringify(d)});`;
    }),
    "const Database = (await import('better-sqlite3')).default;",
    "if (new Database(':memory:').prepare('select 41 + 1 as x').get().x !== 42) throw new Error('better-sqlite3 gave a wrong answer');",
    "const koffi = (await import('koffi')).default;",
    "koffi.load('libc.so.6').func('int getpid()')();",
  ];
  writeFileSync(probe, lines.join('\n') + '\n');
  const env = { PATH: '/usr/bin:/bin' };
  try {
    const r = spawnSync(join(outDir, 'node'), [probe], { cwd: tmpdir(), env, encoding: 'utf8' });
    if (r.status !== 0) fail(`self-check: a dependency does not load from the bundle:\n${r.stderr}`);
  } finally {
    rmSync(probe, { force: true });
  }
  const help = spawnSync(join(outDir, 'sqlora'), ['--help'], { cwd: tmpdir(), env, encoding: 'utf8' });
  if (help.status !== 0 || !help.stdout.includes('usage: sqlora'))
    fail(`self-check: sqlora --help failed:\n${help.stdout}${help.stderr}`);
  log('self-check passed: dependencies load and sqlora --help runs without node on PATH');
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      compress: { type: 'boolean', default: false },
      'no-check': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help || !values.out) {
    process.stdout.write('usage: npm run bundle -- --out DIR [--compress] [--no-check]\n');
    process.exit(values.help ? 0 : 2);
  }
  if (process.platform !== 'linux' || process.arch !== 'x64')
    fail(`bundles are for linux-x64 and take this Node binary; this is ${process.platform}-${process.arch}`);
  const outDir = resolve(values.out);
  if (existsSync(outDir) && readdirSync(outDir).length > 0) {
    if (!existsSync(join(outDir, 'runtime')) || !existsSync(join(outDir, 'app')))
      fail(`${outDir} exists and is not a bundle; give an empty or new folder`);
    rmSync(outDir, { recursive: true });
  }
  const appDir = join(outDir, 'app');
  mkdirSync(join(outDir, 'runtime'), { recursive: true });
  log('compiling TypeScript');
  compile(appDir);
  for (const f of EXTRA_FILES) cpSync(join(ROOT, f), join(appDir, f), { recursive: true });
  writePackageJson(appDir);
  const deps = copyDependencies(appDir);
  const rt = writeNodeRuntime(
    process.execPath,
    join(outDir, 'runtime'),
    values.compress,
    join(ROOT, 'node_modules', '.cache', 'sqlora-bundle'),
    log,
  );
  const launchers: Record<string, string> = {
    node: nodeLauncher(rt),
    sqlora: scriptLauncher('sqlora command line (see ./sqlora --help)', 'app/src/cli/main.js'),
    bench: scriptLauncher('sqlora benchmark against HF transformers + PEFT (see ./bench --help)', 'app/bench/bench.js'),
  };
  for (const [name, text] of Object.entries(launchers)) {
    writeFileSync(join(outDir, name), text);
    chmodSync(join(outDir, name), 0o755);
  }
  const total = dirBytes(outDir);
  log(
    `wrote ${relative(process.cwd(), outDir) || '.'}: ${mb(total)} (node ${mb(rt.bytes)}${rt.file.endsWith('.xz') ? ' xz' : ''}, packages ${mb(deps.bytes)}, sqlora ${mb(total - rt.bytes - deps.bytes)})`,
  );
  if (!values['no-check']) selfCheck(outDir);
}

main();
