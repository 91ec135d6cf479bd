/**
 * The Node.js runtime of a bundle: the binary running the bundler (stripped of debug symbols
 * when `strip` exists, optionally xz-compressed), and the bash launchers that put the GPU
 * libraries on LD_LIBRARY_PATH, unpack a compressed binary once into a cache folder, and exec it.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd: string, args: string[], what: string, stdoutFile?: string): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0) throw new Error(`${what} failed: ${r.error?.message ?? r.stderr.toString().trim()}`);
  if (stdoutFile) writeFileSync(stdoutFile, r.stdout);
}

export interface NodeRuntime {
  /** File name inside runtime/: `node` or `node.xz`. */
  file: string;
  /** sha256 of the (uncompressed, stripped) binary: names its unpacked copy in the cache. */
  sha256: string;
  bytes: number;
}

/**
 * Writes `nodeBin` into `runtimeDir` as `node` or, with `compress`, as `node.xz`. Compressing
 * takes minutes, so compressed binaries are kept in `cacheDir` by the hash of the original.
 */
export function writeNodeRuntime(
  nodeBin: string,
  runtimeDir: string,
  compress: boolean,
  cacheDir: string,
  log: (s: string) => void,
): NodeRuntime {
  mkdirSync(cacheDir, { recursive: true });
  const key = sha256(nodeBin).slice(0, 16);
  const stripped = join(cacheDir, `node-${key}`);
  if (!existsSync(stripped)) {
    const tmp = `${stripped}.tmp`;
    if (hasCommand('strip')) run('strip', ['-o', tmp, nodeBin], 'strip');
    else copyFileSync(nodeBin, tmp);
    chmodSync(tmp, 0o755);
    renameSync(tmp, stripped);
  }
  const hash = sha256(stripped);
  if (!compress) {
    const out = join(runtimeDir, 'node');
    copyFileSync(stripped, out);
    chmodSync(out, 0o755);
    return { file: 'node', sha256: hash, bytes: statSync(out).size };
  }
  const xz = `${stripped}.xz`;
  if (!existsSync(xz)) {
    if (!hasCommand('xz')) throw new Error('--compress needs the xz command (apt-get install xz-utils)');
    log(`compressing ${nodeBin} with xz -9 (a few minutes, once per Node binary; cached in ${cacheDir})`);
    run('xz', ['-9', '-T0', '-c', stripped], 'xz', `${xz}.tmp`);
    renameSync(`${xz}.tmp`, xz);
  }
  const out = join(runtimeDir, 'node.xz');
  copyFileSync(xz, out);
  return { file: 'node.xz', sha256: hash, bytes: statSync(out).size };
}

/**
 * `node`: runs the bundled binary with any arguments. A compressed binary is unpacked on first
 * use (xz, else Python's lzma) into $SQLORA_CACHE_DIR, $XDG_CACHE_HOME/sqlora, ~/.cache/sqlora
 * or /tmp/sqlora-<uid>, under its hash, through a temporary file so concurrent first runs are safe.
 * process.execPath is then the real binary, so child processes (the SQL sandbox) start it directly.
 */
export function nodeLauncher(rt: NodeRuntime): string {
  return `#!/usr/bin/env bash
# Runs this bundle's Node.js ${process.version} with the NVIDIA library folders on LD_LIBRARY_PATH.
set -euo pipefail
here="$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd -P)"
# The caller's value, for child processes that must not see ours (the benchmark's Python and torch).
export SQLORA_CALLER_LD_LIBRARY_PATH="\${SQLORA_CALLER_LD_LIBRARY_PATH-\${LD_LIBRARY_PATH-}}"
for d in /usr/local/cuda/lib64 /usr/local/nvidia/lib64; do
  if [ -d "$d" ]; then
    case ":\${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) LD_LIBRARY_PATH="$d\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  fi
done
export LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:-}"
packed="$here/runtime/${rt.file}"
if [ "${rt.file}" = node ]; then exec "$packed" "$@"; fi
if [ -n "\${SQLORA_CACHE_DIR:-}" ]; then cache="$SQLORA_CACHE_DIR"
elif [ -n "\${XDG_CACHE_HOME:-}" ]; then cache="$XDG_CACHE_HOME/sqlora"
elif [ -n "\${HOME:-}" ] && [ -w "$HOME" ]; then cache="$HOME/.cache/sqlora"
else cache="\${TMPDIR:-/tmp}/sqlora-$(id -u)"
fi
bin="$cache/node-${rt.sha256.slice(0, 16)}"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp "$cache/.node-XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  echo "sqlora: unpacking Node.js into $bin (once)" >&2
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$packed" >"$tmp"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$packed" "$tmp"
  else
    echo "sqlora: cannot unpack $packed: neither xz nor python3 is installed" >&2
    exit 1
  fi
  chmod 755 "$tmp"
  mv -f "$tmp" "$bin"
  trap - EXIT
fi
exec "$bin" "$@"
`;
}

/** A launcher running one script of the bundle with this bundle's node. */
export function scriptLauncher(what: string, script: string): string {
  return `#!/usr/bin/env bash
# ${what}
here="$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd -P)"
exec "$here/node" "$here/${script}" "$@"
`;
}
