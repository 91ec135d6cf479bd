/**
 * The Hugging Face cache layout, shared with Python's huggingface_hub so a model downloaded by
 * either is reused by the other:
 *
 *   <cache>/models--<owner>--<name>/blobs/<etag>               file contents (etag = LFS sha256 or git oid)
 *   <cache>/models--<owner>--<name>/snapshots/<commit>/<path>  relative symlink to the blob
 *   <cache>/models--<owner>--<name>/refs/<revision>            the commit a branch/tag resolved to
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  copyFileSync,
  lstatSync,
  writeFileSync,
  rmSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  return join(hfHome(env), 'hub');
}

export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
}

export function repoCacheDir(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.split('/').join('--')}`);
}

/** The commit a revision points to in the cache (a commit hash is its own answer), if known. */
export function cachedCommit(repoDir: string, revision: string): string | undefined {
  if (COMMIT_HASH.test(revision)) return revision;
  const ref = join(repoDir, 'refs', revision);
  if (!existsSync(ref)) return undefined;
  const commit = readFileSync(ref, 'utf8').trim();
  return COMMIT_HASH.test(commit) ? commit : undefined;
}

export function writeRef(repoDir: string, revision: string, commit: string): void {
  if (revision === commit) return;
  const ref = join(repoDir, 'refs', revision);
  mkdirSync(dirname(ref), { recursive: true });
  writeFileSync(ref, commit);
}

/**
 * Points snapshots/<commit>/<path> at the blob with a relative symlink, as huggingface_hub does;
 * where symlinks are not allowed (Windows without developer mode), the blob is moved there.
 */
export function linkSnapshotFile(blob: string, pointer: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  if (lstatExists(pointer)) rmSync(pointer);
  try {
    symlinkSync(relative(dirname(pointer), blob), pointer);
  } catch {
    try {
      renameSync(blob, pointer);
    } catch {
      copyFileSync(blob, pointer);
    }
  }
}

function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
